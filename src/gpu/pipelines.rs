//! One pipeline cache keyed by (kernel, entry point, reduction path, constants): each variant is
//! compiled once per device and reused for every dispatch.

use super::caps::Reduction;
use super::shader::{assemble, Const, Kernel};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// What makes two pipelines the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// Kernel family (file stem).
    pub kernel: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Reduction helpers linked in, if the kernel uses them.
    pub reduction: Option<Reduction>,
    /// Prelude constants, in the order given.
    pub consts: Vec<(&'static str, Const)>,
}

/// Compiled pipelines of one device.
#[derive(Debug, Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    /// Each pipeline's label (`kernel::entry[variant constants]`), for profiles.
    labels: Mutex<HashMap<wgpu::ComputePipeline, String>>,
}

impl PipelineCache {
    /// The pipeline for `key`, compiled on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
        entry: &'static str,
        reduction: Option<Reduction>,
        consts: &[(&'static str, Const)],
    ) -> Result<wgpu::ComputePipeline> {
        let reduction = if kernel.uses_reduction {
            reduction.or(Some(Reduction::SharedMemory))
        } else {
            None
        };
        let key = PipelineKey {
            kernel: kernel.name,
            entry,
            reduction,
            consts: consts.to_vec(),
        };
        let mut map = self
            .map
            .lock()
            .map_err(|_| Error::Internal("pipeline cache lock poisoned".into()))?;
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let variant: Vec<String> = reduction
            .map(|r| r.name().to_string())
            .into_iter()
            .chain(consts.iter().map(|(n, v)| format!("{n}={v:?}")))
            .collect();
        let label = format!("{}::{}[{}]", kernel.name, entry, variant.join(" "));
        let source = assemble(kernel, reduction, consts);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        map.insert(key, pipeline.clone());
        if let Ok(mut labels) = self.labels.lock() {
            labels.insert(pipeline.clone(), label);
        }
        Ok(pipeline)
    }

    /// The label of a pipeline this cache compiled (`kernel::entry[variant constants]`).
    pub fn label(&self, pipeline: &wgpu::ComputePipeline) -> String {
        self.labels
            .lock()
            .ok()
            .and_then(|l| l.get(pipeline).cloned())
            .unwrap_or_else(|| "unlabelled".into())
    }

    /// Number of distinct pipelines compiled so far.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing was compiled yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
