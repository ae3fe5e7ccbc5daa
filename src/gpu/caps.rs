//! What the device can do, probed once at start-up, and the kernel variants chosen from it.
//!
//! Ops ask `Capabilities` which variant to run; they never re-probe or hard-code 16 KiB / 256.

use serde::Serialize;
use std::fmt;

/// How kernels reduce across a workgroup (softmax, norms, GEMV): the same WGSL interface either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Tree reduction in workgroup memory: works everywhere, the fallback and the baseline.
    SharedMemory,
    /// `subgroupAdd` / `subgroupMax`, then one small shared-memory step across subgroups.
    Subgroup,
}

impl Reduction {
    /// Short name used in pipeline keys and reports.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::SharedMemory => "shared",
            Reduction::Subgroup => "subgroup",
        }
    }
}

/// The fused SwiGLU FFN keeps a slice of the hidden state in workgroup memory (x is read once
/// per workgroup for both gate and up), sized by the device's workgroup-storage limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SwigluVariant {
    /// 8192 f32 = 32 KiB of workgroup storage.
    #[serde(rename = "32KiB")]
    Shared32K,
    /// 4096 f32 = 16 KiB: the WebGPU default limit, for devices that offer no more.
    #[serde(rename = "16KiB")]
    Shared16K,
}

impl SwigluVariant {
    /// Bytes of workgroup storage this variant needs.
    pub fn bytes(self) -> u32 {
        match self {
            SwigluVariant::Shared32K => 32 * 1024,
            SwigluVariant::Shared16K => 16 * 1024,
        }
    }
}

/// Kernel variants chosen from the limits and features.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variants {
    /// Reduction path for softmax / norms.
    pub reduction: Reduction,
    /// Invocations per workgroup for row-reduction kernels (power of two, ≤ the device limit).
    pub reduce_workgroup: u32,
    /// Shared-memory size of the fused SwiGLU kernel.
    pub swiglu: SwigluVariant,
    /// Launch shapes for a CPU adapter (SwiftShader, lavapipe; [`is_cpu_adapter`]): the decode
    /// GEMV and SwiGLU give each invocation whole rows (no workgroup barriers), and
    /// `reduce_workgroup` is at most [`CPU_MAX_REDUCE_WORKGROUP`]. On these adapters a workgroup
    /// that reaches a barrier runs as one coroutine per SIMD group: SwiftShader (Dawn) measured
    /// ~0.7 µs per invocation up to 64 invocations and ~3.5 µs at 256, against ~0.08 µs without
    /// barriers (notes/dawn.md, "CPU adapters").
    pub cpu: bool,
    /// Decode GEMVs with an RMSNorm prologue (fused QKV, lm_head, gate/up; dense and quantised)
    /// accumulate x's sum of squares in their dot-product loop and reduce it with the rows (x and
    /// weights loaded in one round trip), the fused SwiGLU reads x directly instead of staging it
    /// in workgroup memory, and the quantised gate/up kernel walks the gate and up rows in one
    /// pass (they were two passes, the second after the first's reduction). `false` ([`crate::GpuOptions::norm_pass`]): the previous kernels, a separate
    /// sum-of-squares pass and reduction before the dot products (the benchmark baseline).
    pub inline_norm: bool,
}

/// Largest `reduce_workgroup` on a CPU adapter (see [`Variants::cpu`]).
pub const CPU_MAX_REDUCE_WORKGROUP: u32 = 64;

/// Which launch shapes the device's kernels use ([`Variants::cpu`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchShapes {
    /// The CPU shapes on a CPU adapter ([`is_cpu_adapter`]), the GPU shapes elsewhere.
    #[default]
    Auto,
    /// The GPU shapes on any adapter (tests keep them covered on CPU adapters).
    Gpu,
    /// The CPU shapes on any adapter.
    Cpu,
}

/// Whether the adapter runs shaders on the CPU: wgpu's device type `Cpu` (natively lavapipe /
/// llvmpipe), or, where the browser gives no device type, an adapter name or driver naming
/// SwiftShader, llvmpipe or lavapipe (Chromium reports SwiftShader's as "swiftshader").
pub fn is_cpu_adapter(info: &wgpu::AdapterInfo) -> bool {
    if info.device_type == wgpu::DeviceType::Cpu {
        return true;
    }
    let text = format!("{} {} {}", info.name, info.driver, info.driver_info).to_ascii_lowercase();
    ["swiftshader", "llvmpipe", "lavapipe"].iter().any(|n| text.contains(n))
}

/// Limits, features and the chosen variants of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    /// Adapter name as reported by the driver / browser.
    pub adapter: String,
    /// Backend (Vulkan, BrowserWebGpu, Metal, ...).
    pub backend: String,
    /// Driver name and version where known.
    pub driver: String,
    /// `maxComputeWorkgroupStorageSize` in bytes.
    pub max_workgroup_storage: u32,
    /// `maxComputeInvocationsPerWorkgroup`.
    pub max_invocations: u32,
    /// `maxComputeWorkgroupSizeX`.
    pub max_workgroup_size_x: u32,
    /// `maxComputeWorkgroupsPerDimension`.
    pub max_workgroups_per_dim: u32,
    /// `maxStorageBufferBindingSize` in bytes.
    pub max_storage_binding: u64,
    /// `maxBufferSize` in bytes.
    pub max_buffer_size: u64,
    /// `maxStorageBuffersPerShaderStage`.
    pub max_storage_buffers_per_stage: u32,
    /// `minUniformBufferOffsetAlignment` in bytes.
    pub min_uniform_alignment: u32,
    /// `maxUniformBufferBindingSize` in bytes.
    pub max_uniform_binding: u64,
    /// The device has the `subgroups` feature.
    pub subgroups: bool,
    /// Smallest subgroup size the adapter reports (0 when unknown).
    pub subgroup_min_size: u32,
    /// Largest subgroup size the adapter reports (0 when unknown).
    pub subgroup_max_size: u32,
    /// The device has `shader-f16`.
    pub f16: bool,
    /// The device has timestamp queries.
    pub timestamps: bool,
    /// Variant choices derived from the above.
    pub variants: Variants,
}

/// The features as probed, before variants are derived.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// `subgroups` granted on the device.
    pub subgroups: bool,
    /// `shader-f16` granted.
    pub f16: bool,
    /// `timestamp-query` granted.
    pub timestamps: bool,
}

impl Capabilities {
    /// Derive capabilities and variant choices from the device's limits and granted features.
    pub fn new(info: &wgpu::AdapterInfo, limits: &wgpu::Limits, features: Features) -> Self {
        Self::with_shapes(info, limits, features, LaunchShapes::Auto)
    }

    /// [`Capabilities::new`] with the launch shapes chosen by `shapes` instead of by the adapter.
    pub fn with_shapes(
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
        features: Features,
        shapes: LaunchShapes,
    ) -> Self {
        let max_invocations = limits.max_compute_invocations_per_workgroup;
        let max_x = limits.max_compute_workgroup_size_x;
        let cpu = match shapes {
            LaunchShapes::Auto => is_cpu_adapter(info),
            LaunchShapes::Gpu => false,
            LaunchShapes::Cpu => true,
        };
        let cap = if cpu { CPU_MAX_REDUCE_WORKGROUP } else { 256 };
        let reduce_workgroup = largest_pow2_at_most(cap.min(max_invocations).min(max_x)).max(1);
        let storage = limits.max_compute_workgroup_storage_size;
        let swiglu = if storage >= SwigluVariant::Shared32K.bytes() {
            SwigluVariant::Shared32K
        } else {
            SwigluVariant::Shared16K
        };
        let sg_min = info.subgroup_min_size;
        let reduction = if features.subgroups && sg_min >= 1 && reduce_workgroup >= sg_min {
            Reduction::Subgroup
        } else {
            Reduction::SharedMemory
        };
        Capabilities {
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            max_workgroup_storage: storage,
            max_invocations,
            max_workgroup_size_x: max_x,
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            min_uniform_alignment: limits.min_uniform_buffer_offset_alignment,
            max_uniform_binding: limits.max_uniform_buffer_binding_size,
            subgroups: features.subgroups,
            subgroup_min_size: sg_min,
            subgroup_max_size: info.subgroup_max_size,
            f16: features.f16,
            timestamps: features.timestamps,
            variants: Variants {
                reduction,
                reduce_workgroup,
                swiglu,
                cpu,
                inline_norm: true,
            },
        }
    }

    /// The reduction paths this device can run: always shared memory, subgroups where granted.
    pub fn reductions(&self) -> Vec<Reduction> {
        let mut v = vec![Reduction::SharedMemory];
        if self.subgroups {
            v.push(Reduction::Subgroup);
        }
        v
    }

    /// JSON for the demo page and the benchmark output.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn largest_pow2_at_most(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        1 << (31 - n.leading_zeros())
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        writeln!(f, "adapter: {} ({}; {})", self.adapter, self.backend, self.driver)?;
        writeln!(
            f,
            "limits: workgroup storage {} B, invocations/workgroup {}, workgroup size x {}, workgroups/dim {}",
            self.max_workgroup_storage, self.max_invocations, self.max_workgroup_size_x, self.max_workgroups_per_dim
        )?;
        writeln!(
            f,
            "        storage binding {:.0} MiB, buffer {:.0} MiB, storage buffers/stage {}, uniform alignment {} B",
            mib(self.max_storage_binding),
            mib(self.max_buffer_size),
            self.max_storage_buffers_per_stage,
            self.min_uniform_alignment
        )?;
        writeln!(
            f,
            "features: subgroups {} (sizes {}..{}), shader-f16 {}, timestamps {}",
            self.subgroups, self.subgroup_min_size, self.subgroup_max_size, self.f16, self.timestamps
        )?;
        write!(
            f,
            "variants: reduction {} (workgroup {}), swiglu {} ({} B){}",
            self.variants.reduction.name(),
            self.variants.reduce_workgroup,
            match self.variants.swiglu {
                SwigluVariant::Shared32K => "32 KiB",
                SwigluVariant::Shared16K => "16 KiB",
            },
            self.variants.swiglu.bytes(),
            if self.variants.cpu { ", CPU launch shapes" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sg: u32) -> wgpu::AdapterInfo {
        let mut i = wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Noop);
        i.name = "test".into();
        i.subgroup_min_size = sg;
        i.subgroup_max_size = sg;
        i
    }

    #[test]
    fn webgpu_default_limits_pick_the_small_variants() {
        let caps = Capabilities::new(&info(0), &wgpu::Limits::default(), Features::default());
        assert_eq!(caps.variants.swiglu, SwigluVariant::Shared16K);
        assert_eq!(caps.variants.reduction, Reduction::SharedMemory);
        assert_eq!(caps.variants.reduce_workgroup, 256);
    }

    #[test]
    fn generous_limits_and_subgroups_pick_the_large_variants() {
        let limits = wgpu::Limits {
            max_compute_workgroup_storage_size: 49152,
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_size_x: 1024,
            ..wgpu::Limits::default()
        };
        let f = Features {
            subgroups: true,
            f16: true,
            timestamps: true,
        };
        let caps = Capabilities::new(&info(32), &limits, f);
        assert_eq!(caps.variants.swiglu, SwigluVariant::Shared32K);
        assert_eq!(caps.variants.reduction, Reduction::Subgroup);
        assert!(caps.to_string().contains("subgroup"));
        assert!(!caps.variants.cpu);
    }

    #[test]
    fn cpu_adapters_get_the_cpu_launch_shapes() {
        let mut by_type = info(4);
        by_type.device_type = wgpu::DeviceType::Cpu;
        let mut by_name = info(4);
        by_name.device_type = wgpu::DeviceType::Other;
        by_name.name = "Google SwiftShader".into();
        for i in [by_type, by_name] {
            let caps = Capabilities::new(&i, &wgpu::Limits::default(), Features::default());
            assert!(caps.variants.cpu);
            assert_eq!(caps.variants.reduce_workgroup, CPU_MAX_REDUCE_WORKGROUP);
            let forced =
                Capabilities::with_shapes(&i, &wgpu::Limits::default(), Features::default(), LaunchShapes::Gpu);
            assert!(!forced.variants.cpu);
            assert_eq!(forced.variants.reduce_workgroup, 256);
            assert!(!forced.to_string().contains("CPU launch shapes"));
        }
        let gpu = Capabilities::with_shapes(
            &info(4),
            &wgpu::Limits::default(),
            Features::default(),
            LaunchShapes::Cpu,
        );
        assert!(gpu.variants.cpu && gpu.to_string().ends_with(", CPU launch shapes"));
    }
}
