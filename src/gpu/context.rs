//! Adapter and device: request the adapter's own limits and the optional features that exist.

use super::caps::{Capabilities, Features, LaunchShapes};
use super::memory::{Buffer, MemoryStats, MemoryTracker};
use super::pipelines::PipelineCache;
use super::uniforms::UniformArena;
use super::{subgroups, Batch};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Choices made when creating the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Prefer the integrated GPU (saves battery) instead of the discrete one.
    pub low_power: bool,
    /// Do not request subgroups (tests and benchmarks of the fallback path).
    pub disable_subgroups: bool,
    /// Do not request shader-f16.
    pub disable_f16: bool,
    /// Launch shapes: by the adapter (default), or the GPU / CPU shapes forced (tests of the
    /// shapes the adapter would not choose).
    pub launch_shapes: LaunchShapes,
    /// Native only: naga's runtime checks in the compiled shaders (browsers apply their own;
    /// default [`ShaderChecks::NoLoopBounding`]).
    pub shader_checks: ShaderChecks,
    /// The previous decode kernels' RMSNorm prologue (a separate sum-of-squares pass; x staged
    /// in workgroup memory in the fused SwiGLU): benchmarks and tests of the baseline
    /// ([`crate::gpu::Variants::inline_norm`]).
    pub norm_pass: bool,
}

/// Which of naga's runtime checks native pipelines keep (`wgpu::ShaderRuntimeChecks`). The
/// default keeps the bounds checks and drops naga's forced loop bounding (a counter and a
/// branch in every loop): on an H100 that bounding made the tiled matmul 5x slower, a 512-token
/// prefill 3.7x and a decode step 1.2x (benches/results/h100_shader_checks), and Chrome's Dawn
/// runs the same WGSL at the unbounded speed. Without loop bounding a loop that never ends is
/// undefined behaviour; every loop of the crate's kernels is bounded by constants or by the
/// uniform parameters the ops check on the CPU. Browsers apply their own checks and ignore this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ShaderChecks {
    /// Bounds checks and forced loop bounding (wgpu's default).
    All,
    /// Bounds checks, no forced loop bounding (the default).
    #[default]
    NoLoopBounding,
    /// Neither.
    None,
}

/// Errors and device loss reported asynchronously by wgpu / the browser.
#[derive(Debug, Default)]
struct Reports {
    errors: Vec<String>,
    lost: Option<String>,
}

/// One GPU device with its caches: everything ops need to record and submit work.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    caps: Capabilities,
    pipelines: PipelineCache,
    pub(crate) arena: Mutex<UniformArena>,
    pub(crate) memory: Arc<MemoryTracker>,
    bind_groups: Mutex<std::collections::HashMap<super::batch::BindKey, wgpu::BindGroup>>,
    reports: Arc<Mutex<Reports>>,
    /// The index of the last submission (natively a readback waits for its own submission only).
    last_submission: Mutex<Option<wgpu::SubmissionIndex>>,
    /// The profile being recorded (`begin_profile` … `end_profile`), if any.
    pub(crate) profile: Mutex<Option<super::profile::Recorder>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("caps", &self.caps).finish_non_exhaustive()
    }
}

/// Natively one wgpu instance serves every device of the process (a Vulkan instance per device
/// exhausted the NVIDIA driver after ~30 devices in the test suite).
#[cfg(not(target_arch = "wasm32"))]
fn instance() -> wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE
        .get_or_init(|| wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env()))
        .clone()
}

#[cfg(target_arch = "wasm32")]
fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

impl Drop for Gpu {
    /// Free the device's memory now rather than whenever the last handle goes (`engine.dispose()`).
    fn drop(&mut self) {
        self.device.destroy();
        super::memory::device_dropped();
    }
}

impl Gpu {
    /// Create a device on the default (high-performance) adapter.
    pub async fn new() -> Result<Gpu> {
        Self::with_options(GpuOptions::default()).await
    }

    /// Create a device with explicit options.
    pub async fn with_options(opts: GpuOptions) -> Result<Gpu> {
        let instance = instance();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: if opts.low_power {
                    wgpu::PowerPreference::LowPower
                } else {
                    wgpu::PowerPreference::HighPerformance
                },
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        // Ask for the adapter's own limits: the defaults would cap workgroup storage at 16 KiB
        // and storage bindings at 128 MiB even where the hardware offers far more.
        let limits = adapter.limits();
        let offered = adapter.features();
        // Timestamps between the dispatches of one pass (native only: WebGPU has none) serve
        // `Gpu::begin_profile_in_pass`; nothing else depends on them.
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !opts.disable_f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        let mut features = offered & wanted;
        if !opts.disable_subgroups {
            features |= subgroups::native_features(&adapter);
        }
        #[cfg(target_arch = "wasm32")]
        subgroups::install_subgroups_shim();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("kjarni-web"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice(e.to_string()))?;

        let reports = Arc::new(Mutex::new(Reports::default()));
        let sink = reports.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut r) = sink.lock() {
                r.errors.push(e.to_string());
            }
        }));
        let sink = reports.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut r) = sink.lock() {
                r.lost = Some(format!("{reason:?}: {message}"));
            }
        });

        let granted = Features {
            subgroups: !opts.disable_subgroups && subgroups::device_has(&device),
            f16: device.features().contains(wgpu::Features::SHADER_F16),
            timestamps: device.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        };
        #[allow(unused_mut)]
        let mut info = adapter.get_info();
        #[cfg(target_arch = "wasm32")]
        if info.name.is_empty() {
            // The shim is installed unconditionally for this: it is what reads GPUAdapter.info.
            info.name = subgroups::adapter_name();
        }
        let mut caps = Capabilities::with_shapes(&info, &device.limits(), granted, opts.launch_shapes);
        caps.variants.inline_norm = !opts.norm_pass;
        let arena = Mutex::new(UniformArena::new(caps.min_uniform_alignment));
        super::memory::device_created(); // paired with Drop (nothing fallible follows)
        Ok(Gpu {
            device,
            queue,
            caps,
            pipelines: PipelineCache::new(opts.shader_checks),
            arena,
            memory: Arc::new(MemoryTracker::default()),
            bind_groups: Mutex::new(std::collections::HashMap::new()),
            reports,
            last_submission: Mutex::new(None),
            profile: Mutex::new(None),
        })
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    /// Limits, features and chosen variants.
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }
    /// The pipeline cache.
    pub fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }
    /// Buffer accounting.
    pub fn memory(&self) -> MemoryStats {
        self.memory.stats()
    }
    /// Entries of the bind-group cache (a test's measure of what it keeps).
    pub fn cached_bind_groups(&self) -> usize {
        self.bind_groups.lock().map(|m| m.len()).unwrap_or(0)
    }
    /// Start measuring a new peak of live bytes.
    pub fn reset_peak_memory(&self) {
        self.memory.reset_peak()
    }
    /// A new batch of work to record ops into.
    pub fn batch(&self) -> Batch {
        Batch::default()
    }

    /// The bind group for `key`, created on first use. The cache forgets the groups of dropped
    /// buffers (a prefill of a new length replaces the model's scratch buffers) and is bounded:
    /// it is emptied when it holds more than `BIND_GROUP_CACHE` entries (prefill shapes change;
    /// decode repeats).
    pub(crate) fn bind_group(
        &self,
        key: super::batch::BindKey,
        create: impl FnOnce(&super::batch::BindKey) -> wgpu::BindGroup,
    ) -> Result<wgpu::BindGroup> {
        const BIND_GROUP_CACHE: usize = 8192;
        let dropped = self.memory.take_dropped();
        let mut map = self
            .bind_groups
            .lock()
            .map_err(|_| Error::Internal("bind group cache lock poisoned".into()))?;
        if !dropped.is_empty() {
            let dead: std::collections::HashSet<u64> = dropped.into_iter().collect();
            map.retain(|k, _| !k.ids.iter().any(|id| dead.contains(id)));
        }
        if let Some(bg) = map.get(&key) {
            return Ok(bg.clone());
        }
        if map.len() >= BIND_GROUP_CACHE {
            map.clear();
        }
        let bg = create(&key);
        map.insert(key, bg.clone());
        Ok(bg)
    }

    /// Create a counted buffer, checking the device's limits first.
    pub fn create_buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> Result<Buffer> {
        self.check_alive()?;
        if size > self.caps.max_buffer_size {
            return Err(Error::Limit {
                context: format!("buffer '{label}'"),
                limit: "maxBufferSize",
                needed: size,
                available: self.caps.max_buffer_size,
            });
        }
        if usage.contains(wgpu::BufferUsages::STORAGE) && size > self.caps.max_storage_binding {
            return Err(Error::Limit {
                context: format!("storage buffer '{label}'"),
                limit: "maxStorageBufferBindingSize",
                needed: size,
                available: self.caps.max_storage_binding,
            });
        }
        let raw = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        Ok(Buffer::new(raw, self.memory.clone()))
    }

    /// Fail if the device was lost; return (and clear) errors reported since the last check.
    pub fn check_errors(&self, context: &str) -> Result<()> {
        let mut r = self
            .reports
            .lock()
            .map_err(|_| Error::Internal("error report lock poisoned".into()))?;
        if let Some(lost) = &r.lost {
            return Err(Error::DeviceLost(lost.clone()));
        }
        if let Some(rejected) = self.pipelines.take_rejected() {
            // Dispatches of the rejected pipeline fail validation too: those follow from it.
            r.errors.clear();
            return Err(rejected);
        }
        if r.errors.is_empty() {
            return Ok(());
        }
        let message = r.errors.join("\n");
        r.errors.clear();
        Err(Error::Gpu {
            context: Some(context.to_string()),
            message,
        })
    }

    fn check_alive(&self) -> Result<()> {
        match self.reports.lock() {
            Ok(r) => match &r.lost {
                Some(lost) => Err(Error::DeviceLost(lost.clone())),
                None => Ok(()),
            },
            Err(_) => Err(Error::Internal("error report lock poisoned".into())),
        }
    }

    /// Encode a batch's commands and submit them.
    pub fn submit(&self, batch: Batch) -> Result<()> {
        self.check_errors("before submit")?;
        {
            let arena = self
                .arena
                .lock()
                .map_err(|_| Error::Internal("uniform arena lock poisoned".into()))?;
            arena.upload(&self.queue, &batch.uniforms)?;
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("batch") });
        {
            let mut profile = self
                .profile
                .lock()
                .map_err(|_| Error::Internal("profile lock poisoned".into()))?;
            match profile.as_mut() {
                Some(recorder) => recorder.encode(self, batch, &mut encoder)?,
                None => batch.encode(&mut encoder),
            }
        }
        let index = self.queue.submit([encoder.finish()]);
        if let Ok(mut last) = self.last_submission.lock() {
            *last = Some(index);
        }
        self.check_errors("submit")
    }

    /// The index of the last [`Gpu::submit`].
    pub(crate) fn last_submission(&self) -> Option<wgpu::SubmissionIndex> {
        self.last_submission.lock().ok().and_then(|l| l.clone())
    }

    /// Natively: block until submission `index` has finished and its callbacks ran (later
    /// submissions keep running). In the browser: nothing (callbacks come from the event loop).
    #[allow(unused_variables)]
    pub(crate) fn wait_for(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| Error::Gpu {
                context: Some("poll".into()),
                message: e.to_string(),
            })?;
        Ok(())
    }

    /// Wait until all submitted work has finished.
    pub async fn sync(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.wait_native()?;
        rx.await
            .map_err(|_| Error::Internal("work-done callback dropped".into()))?;
        self.check_errors("sync")
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn wait_native(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu {
                context: Some("poll".into()),
                message: e.to_string(),
            })
    }

    #[cfg(target_arch = "wasm32")]
    fn wait_native(&self) -> Result<()> {
        Ok(())
    }

    /// Copy `size` bytes at `offset` of `buffer` back to the host.
    pub async fn read_buffer(&self, buffer: &Buffer, offset: u64, size: u64, what: &str) -> Result<Vec<u8>> {
        let staging = self.create_buffer(
            &format!("readback {what}"),
            size.max(4),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
        encoder.copy_buffer_to_buffer(buffer.raw(), offset, staging.raw(), 0, size);
        self.queue.submit([encoder.finish()]);
        // Never spin on a flag here: in the browser the callback fires only once control returns
        // to the event loop, so await a real channel.
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.raw().slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait_native()?;
        let mapped = rx.await.map_err(|_| Error::Readback {
            what: what.into(),
            message: "map callback dropped".into(),
        })?;
        mapped.map_err(|e| Error::Readback {
            what: what.into(),
            message: e.to_string(),
        })?;
        self.check_errors(&format!("reading back '{what}'"))?;
        let view = staging
            .raw()
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Readback {
                what: what.into(),
                message: e.to_string(),
            })?;
        let out = view[..size as usize].to_vec();
        drop(view);
        staging.raw().unmap();
        Ok(out)
    }

    /// Dispatch size for `groups` workgroups, spread over x and y when x alone is not enough.
    /// Kernels recover the linear index as `wid.x + wid.y * nwg.x` and skip indices past the end.
    pub fn grid(&self, kernel: &'static str, groups: u64) -> Result<[u32; 3]> {
        let max = u64::from(self.caps.max_workgroups_per_dim.max(1));
        let groups = groups.max(1);
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(Error::Limit {
                context: format!("kernel '{kernel}' dispatch of {groups} workgroups"),
                limit: "maxComputeWorkgroupsPerDimension (squared)",
                needed: groups,
                available: max * max,
            });
        }
        Ok([x as u32, y as u32, 1])
    }
}
