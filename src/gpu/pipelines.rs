//! One pipeline cache keyed by (kernel, entry point, reduction path, constants): each variant is
//! compiled once per device and reused for every dispatch.
//!
//! Each variant is created inside a validation error scope, so a shader or pipeline the device
//! rejects becomes [`Error::Pipeline`] naming the kernel and the variant instead of an anonymous
//! validation error at some later submit. Natively the scope's verdict is ready at once and the
//! creation itself fails; in the browser it arrives asynchronously, so it is kept for the next
//! check ([`PipelineCache::take_rejected`], called by `Gpu::check_errors`) and every later
//! request for the variant fails at once.

use super::caps::Reduction;
use super::shader::{assemble, Const, Kernel};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// Variants the device rejected, and the rejections not yet reported by a check.
    rejected: Arc<Mutex<Rejected>>,
    /// Runtime checks of native shader modules.
    checks: super::context::ShaderChecks,
}

#[derive(Debug, Default)]
struct Rejected {
    variants: HashMap<PipelineKey, Error>,
    unreported: Vec<Error>,
}

impl PipelineCache {
    /// An empty cache whose native shader modules keep `checks`.
    pub(crate) fn new(checks: super::context::ShaderChecks) -> PipelineCache {
        PipelineCache {
            checks,
            ..Default::default()
        }
    }

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
        if let Some(e) = self.rejected.lock().ok().and_then(|r| r.variants.get(&key).cloned()) {
            return Err(e);
        }
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
        let variant = format!("{}[{}]", entry, variant.join(" "));
        let label = format!("{}::{}", kernel.name, variant);
        let source = assemble(kernel, reduction, consts);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = match self.checks {
            super::context::ShaderChecks::All => device.create_shader_module(desc),
            checks => {
                let runtime = wgpu::ShaderRuntimeChecks {
                    bounds_checks: checks == super::context::ShaderChecks::NoLoopBounding,
                    force_loop_bounding: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                };
                // SAFETY: every loop of the crate's kernels is bounded and every index checked
                // against the uniform parameters the ops validate on the CPU (see ShaderChecks);
                // only a benchmark or a caller that opts in gets here.
                #[allow(unsafe_code)]
                unsafe {
                    device.create_shader_module_trusted(desc, runtime)
                }
            }
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let verdict = scope.pop();
        let rejection = {
            let kernel = kernel.name;
            move |e: wgpu::Error| Error::Pipeline {
                kernel,
                variant,
                message: e.to_string(),
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            // wgpu-core answers the scope synchronously: the future is ready on its first poll.
            use std::future::Future;
            let mut verdict = std::pin::pin!(verdict);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match verdict.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(None) => {}
                std::task::Poll::Ready(Some(e)) => {
                    let e = rejection(e);
                    if let Ok(mut r) = self.rejected.lock() {
                        r.variants.insert(key, e.clone());
                    }
                    return Err(e);
                }
                std::task::Poll::Pending => {
                    return Err(Error::Internal(format!("{label}: the error scope did not answer")));
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let sink = self.rejected.clone();
            let key = key.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(e) = verdict.await {
                    let e = rejection(e);
                    if let Ok(mut r) = sink.lock() {
                        r.variants.insert(key, e.clone());
                        r.unreported.push(e);
                    }
                }
            });
        }
        map.insert(key, pipeline.clone());
        if let Ok(mut labels) = self.labels.lock() {
            labels.insert(pipeline.clone(), label);
        }
        Ok(pipeline)
    }

    /// The first rejection reported asynchronously (in the browser) since the last call, if any.
    pub(crate) fn take_rejected(&self) -> Option<Error> {
        let mut r = self.rejected.lock().ok()?;
        std::mem::take(&mut r.unreported).into_iter().next()
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
