//! Per-dispatch GPU times: while a profile is recorded ([`Gpu::begin_profile`] …
//! [`Gpu::end_profile`]), every dispatch of a submitted batch runs in a compute pass of its own
//! whose timestamp writes bracket it (WebGPU has timestamps only at pass boundaries), and is
//! labelled with its pipeline's kernel, entry point and variant (reduction path, constants).
//! Without the `timestamp-query` feature the labels are still recorded, with no times.
//!
//! One pass per dispatch adds a little overhead between kernels, so the sum of kernel times is
//! what the GPU spends computing, not the wall time of a normal (one-pass) step. Browsers
//! quantise timestamps unless told otherwise (Dawn, hence Chrome, clears the low 16 bits of the
//! nanosecond count unless its WebGPU developer features / the toggle `timestamp_quantization`
//! are off); [`Profile::quantized`] reports whether every time is a multiple of 65.536 µs.

use super::{Buffer, Gpu};
use crate::error::{Error, Result};
use serde::Serialize;

/// Queries per query set (the WebGPU maximum).
const MAX_QUERIES: u32 = 4096;

/// One dispatch of the profiled work.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchTime {
    /// `kernel::entry[variant constants]`, as the pipeline cache names it.
    pub label: String,
    /// GPU time between the pass's start and end timestamps, in µs (`None` without timestamps).
    pub gpu_us: Option<f64>,
}

/// Dispatches of one label summed.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTotal {
    /// Pipeline label.
    pub label: String,
    /// Dispatches with this label.
    pub count: usize,
    /// Their summed GPU time in µs (`None` without timestamps).
    pub gpu_us: Option<f64>,
}

/// The dispatches recorded between `begin_profile` and `end_profile`, in submission order.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Whether times were measured (the device has `timestamp-query`).
    pub timestamps: bool,
    /// Every time is a multiple of 65.536 µs (2^16 ns): the browser quantises timestamps, the
    /// per-kernel times are not measurements.
    pub quantized: bool,
    /// Number of dispatches.
    pub dispatches: usize,
    /// Sum of the dispatch times in µs (`None` without timestamps).
    pub total_gpu_us: Option<f64>,
    /// Per label, the most expensive first (by count without timestamps).
    pub kernels: Vec<KernelTotal>,
    /// Every dispatch in order.
    pub trace: Vec<DispatchTime>,
    /// Dispatches of each submitted batch, in order (their sum is `dispatches`).
    pub batches: Vec<usize>,
}

/// Query sets of submitted batches, waiting to be read back.
struct Pending {
    resolve: Buffer,
    queries: u32,
    /// The queries are a chain (one before the first dispatch, one after each: a dispatch's
    /// time is the difference of neighbours), not start/end pairs.
    chain: bool,
}

/// The recording state kept by the `Gpu` while a profile runs.
#[derive(Default)]
pub(crate) struct Recorder {
    labels: Vec<String>,
    pending: Vec<Pending>,
    batches: Vec<usize>,
    /// [`Gpu::begin_profile_one_pass`]: each batch encoded as without a profile (its dispatches
    /// sharing compute passes), one timestamp at the start of its first pass and one at the end
    /// of its last.
    one_pass: bool,
    /// [`Gpu::begin_profile_in_pass`]: each batch encoded as without a profile, with a timestamp
    /// between every two dispatches of a pass (native devices with
    /// `TIMESTAMP_QUERY_INSIDE_PASSES`): each dispatch timed as it runs in the real step,
    /// barrier and launch included.
    in_pass: bool,
}

impl Recorder {
    /// Encode `batch` with one pass per dispatch and the timestamp writes where the device has
    /// them.
    pub(crate) fn encode(&mut self, gpu: &Gpu, batch: super::Batch, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let n = batch.dispatches() as u32;
        if !self.one_pass {
            self.batches.push(n as usize);
        }
        if self.one_pass {
            return self.encode_whole(gpu, batch, encoder);
        }
        if self.in_pass
            && gpu
                .device()
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
            && n > 0
            && n < MAX_QUERIES
        {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: n + 1,
            });
            let resolve = gpu.create_buffer(
                "profile timestamps",
                u64::from(n + 1) * 8,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            )?;
            for pipeline in batch.encode_in_pass(encoder, &set) {
                self.labels.push(gpu.pipelines().label(&pipeline));
            }
            encoder.resolve_query_set(&set, 0..n + 1, resolve.raw(), 0);
            self.pending.push(Pending {
                resolve,
                queries: n + 1,
                chain: true,
            });
            return Ok(());
        }
        let per_set = MAX_QUERIES / 2;
        let mut sets = Vec::new();
        if gpu.caps().timestamps && n > 0 {
            for first in (0..n).step_by(per_set as usize) {
                let count = 2 * (n - first).min(per_set);
                let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolve = gpu.create_buffer(
                    "profile timestamps",
                    u64::from(count) * 8,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                )?;
                sets.push((set, resolve, count));
            }
        }
        let labels = &mut self.labels;
        batch.encode_each_pass(encoder, |i, pipeline| {
            labels.push(gpu.pipelines().label(pipeline));
            let (set, _, _) = sets.get(i / per_set as usize)?;
            let q = 2 * (i as u32 % per_set);
            Some(wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(q),
                end_of_pass_write_index: Some(q + 1),
            })
        });
        for (set, resolve, count) in sets {
            encoder.resolve_query_set(&set, 0..count, resolve.raw(), 0);
            self.pending.push(Pending {
                resolve,
                queries: count,
                chain: false,
            });
        }
        Ok(())
    }

    /// One-pass mode: the batch as [`super::Batch::encode`] records it, timed from the start of
    /// its first compute pass to the end of its last (one label: the dispatch and pass counts).
    fn encode_whole(&mut self, gpu: &Gpu, batch: super::Batch, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let n = batch.dispatches();
        if n == 0 {
            batch.encode(encoder);
            return Ok(());
        }
        let passes = batch.passes();
        self.labels
            .push(format!("batch ({n} dispatches in {passes} compute pass(es))"));
        if !gpu.caps().timestamps {
            batch.encode(encoder);
            return Ok(());
        }
        let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.create_buffer(
            "profile timestamps",
            16,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        batch.encode_timed(encoder, &set);
        encoder.resolve_query_set(&set, 0..2, resolve.raw(), 0);
        self.pending.push(Pending {
            resolve,
            queries: 2,
            chain: false,
        });
        Ok(())
    }

    /// Read the timestamps back and build the profile.
    pub(crate) async fn finish(self, gpu: &Gpu) -> Result<Profile> {
        let period = f64::from(gpu.queue().get_timestamp_period());
        let mut times: Vec<f64> = Vec::with_capacity(self.labels.len());
        for p in &self.pending {
            let bytes = gpu
                .read_buffer(&p.resolve, 0, u64::from(p.queries) * 8, "profile timestamps")
                .await?;
            let ticks: Vec<u64> = bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            // A pass whose end precedes its start (a driver that resets counters) counts as 0.
            if p.chain {
                times.extend(
                    ticks
                        .windows(2)
                        .map(|t| t[1].saturating_sub(t[0]) as f64 * period / 1000.0),
                );
            } else {
                times.extend(
                    ticks
                        .chunks_exact(2)
                        .map(|t| t[1].saturating_sub(t[0]) as f64 * period / 1000.0),
                );
            }
        }
        let timestamps = gpu.caps().timestamps;
        if timestamps && times.len() != self.labels.len() {
            return Err(Error::Internal(format!(
                "profile: {} timestamp pairs for {} dispatches",
                times.len(),
                self.labels.len()
            )));
        }
        let trace: Vec<DispatchTime> = self
            .labels
            .into_iter()
            .enumerate()
            .map(|(i, label)| DispatchTime {
                label,
                gpu_us: times.get(i).copied(),
            })
            .collect();
        let mut p = Profile::from_trace(trace, timestamps);
        if !self.batches.is_empty() {
            p.batches = self.batches;
        }
        Ok(p)
    }
}

impl Profile {
    fn from_trace(trace: Vec<DispatchTime>, timestamps: bool) -> Profile {
        let mut kernels: Vec<KernelTotal> = Vec::new();
        for d in &trace {
            match kernels.iter_mut().find(|k| k.label == d.label) {
                Some(k) => {
                    k.count += 1;
                    k.gpu_us = k.gpu_us.zip(d.gpu_us).map(|(a, b)| a + b);
                }
                None => kernels.push(KernelTotal {
                    label: d.label.clone(),
                    count: 1,
                    gpu_us: d.gpu_us,
                }),
            }
        }
        if timestamps {
            kernels.sort_by(|a, b| b.gpu_us.unwrap_or(0.0).total_cmp(&a.gpu_us.unwrap_or(0.0)));
        } else {
            kernels.sort_by_key(|k| std::cmp::Reverse(k.count));
        }
        let total_gpu_us = if timestamps {
            Some(trace.iter().filter_map(|d| d.gpu_us).sum())
        } else {
            None
        };
        let quantized = timestamps
            && trace.iter().any(|d| d.gpu_us.unwrap_or(0.0) > 0.0)
            && trace.iter().all(|d| {
                let q = d.gpu_us.unwrap_or(0.0) * 1000.0 / 65536.0;
                (q - q.round()).abs() < 1e-6
            });
        Profile {
            timestamps,
            quantized,
            dispatches: trace.len(),
            total_gpu_us,
            kernels,
            batches: vec![1; trace.len()],
            trace,
        }
    }

    /// The profile as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

impl Gpu {
    /// Start recording a profile: until [`Gpu::end_profile`], every submitted batch runs one
    /// compute pass per dispatch with timestamp writes (where the device has timestamps).
    pub fn begin_profile(&self) -> Result<()> {
        self.start_recorder(Recorder::default())
    }

    /// Start recording a profile of whole batches: until [`Gpu::end_profile`], every submitted
    /// batch is encoded as it would be without a profile (dispatches sharing compute passes) and
    /// timed from the start of its first pass to the end of its last: one entry per batch in the
    /// trace, its label giving the dispatch and pass counts.
    pub fn begin_profile_one_pass(&self) -> Result<()> {
        self.start_recorder(Recorder {
            one_pass: true,
            ..Default::default()
        })
    }

    fn start_recorder(&self, recorder: Recorder) -> Result<()> {
        *self
            .profile
            .lock()
            .map_err(|_| Error::Internal("profile lock poisoned".into()))? = Some(recorder);
        Ok(())
    }

    /// Start recording a profile inside the real passes: until [`Gpu::end_profile`], every
    /// submitted batch is encoded as without a profile, with a timestamp written between every
    /// two dispatches where the device has `TIMESTAMP_QUERY_INSIDE_PASSES` (native backends;
    /// elsewhere this falls back to [`Gpu::begin_profile`]'s pass per dispatch). A dispatch's
    /// time then includes the barrier before it and its launch, as in a normal step.
    pub fn begin_profile_in_pass(&self) -> Result<()> {
        self.start_recorder(Recorder {
            in_pass: true,
            ..Default::default()
        })
    }

    /// Whether a profile is being recorded.
    pub fn is_profiling(&self) -> bool {
        self.profile.lock().map(|p| p.is_some()).unwrap_or(false)
    }

    /// Stop recording and read the times back (waits for the recorded work).
    pub async fn end_profile(&self) -> Result<Profile> {
        let recorder = self
            .profile
            .lock()
            .map_err(|_| Error::Internal("profile lock poisoned".into()))?
            .take()
            .ok_or_else(|| Error::Internal("end_profile without begin_profile".into()))?;
        recorder.finish(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(label: &str, us: Option<f64>) -> DispatchTime {
        DispatchTime {
            label: label.into(),
            gpu_us: us,
        }
    }

    #[test]
    fn totals_per_label_most_expensive_first() {
        let p = Profile::from_trace(vec![d("a", Some(1.0)), d("b", Some(5.0)), d("a", Some(2.5))], true);
        assert_eq!(p.dispatches, 3);
        assert_eq!(p.kernels[0].label, "b");
        assert_eq!(
            (p.kernels[1].label.as_str(), p.kernels[1].count, p.kernels[1].gpu_us),
            ("a", 2, Some(3.5))
        );
        assert_eq!(p.total_gpu_us, Some(8.5));
        assert!(!p.quantized);
        let q = Profile::from_trace(
            vec![d("a", Some(65.536)), d("b", Some(0.0)), d("a", Some(131.072))],
            true,
        );
        assert!(q.quantized);
    }

    #[test]
    fn without_timestamps_counts_only() {
        let p = Profile::from_trace(vec![d("a", None), d("b", None), d("b", None)], false);
        assert_eq!(p.kernels[0].label, "b");
        assert_eq!(p.kernels[0].gpu_us, None);
        assert_eq!(p.total_gpu_us, None);
        assert!(!p.quantized);
    }
}
