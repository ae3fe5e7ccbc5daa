//! A small autotuner (as cubecl does it): candidate kernels for a shape class are timed
//! once per device and the winner is kept in memory, keyed by (device, op, dtype, shape bucket).
//! Buckets are the next powers of two of each dimension, so one tuning serves every prompt
//! length of the same order.

use crate::error::{Error, Result};
use crate::gpu::{Batch, DType, Gpu};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// What a tuned choice is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// Adapter, backend and driver: the choice is per device.
    pub device: String,
    /// The op ("matmul").
    pub op: &'static str,
    /// Weight dtype.
    pub dtype: DType,
    /// Shape bucket: each dimension rounded up to a power of two.
    pub bucket: [u64; 3],
}

impl TuneKey {
    /// Key for `op` on `gpu` with dimensions `dims` (e.g. M, N, K).
    pub fn new(gpu: &Gpu, op: &'static str, dtype: DType, dims: [usize; 3]) -> Self {
        let caps = gpu.caps();
        TuneKey {
            device: format!("{} | {} | {}", caps.adapter, caps.backend, caps.driver),
            op,
            dtype,
            bucket: dims.map(|d| (d.max(1) as u64).next_power_of_two()),
        }
    }
}

static CHOICES: LazyLock<Mutex<HashMap<TuneKey, usize>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The cached choice (an index into the op's candidate list), if this key was tuned.
pub fn lookup(key: &TuneKey) -> Option<usize> {
    CHOICES.lock().ok().and_then(|m| m.get(key).copied())
}

/// Remember a choice.
pub fn remember(key: TuneKey, choice: usize) -> Result<()> {
    CHOICES
        .lock()
        .map_err(|_| Error::Internal("tuning cache lock poisoned".into()))?
        .insert(key, choice);
    Ok(())
}

/// Forget every choice (tests).
pub fn clear() {
    if let Ok(mut m) = CHOICES.lock() {
        m.clear();
    }
}

/// Milliseconds from an arbitrary origin: `Instant` natively; in the browser (window or worker),
/// where `std::time::Instant` is not available, `performance.now()` through [`crate::web`].
pub fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
        START.elapsed().as_secs_f64() * 1e3
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "structured-module")))]
    {
        crate::web::now_ms()
    }
    // The structured module has no engine (no `web`) and never tunes kernels.
    #[cfg(all(target_arch = "wasm32", feature = "structured-module"))]
    {
        js_sys::Date::now()
    }
}

/// Milliseconds per op of `record` (which records one op): one warm-up submission, then `reps`
/// ops in one batch, timed to completion.
pub async fn time_op(gpu: &Gpu, reps: usize, mut record: impl FnMut(&mut Batch) -> Result<()>) -> Result<f64> {
    let mut warm = gpu.batch();
    record(&mut warm)?;
    gpu.submit(warm)?;
    gpu.sync().await?;
    let mut batch = gpu.batch();
    for _ in 0..reps.max(1) {
        record(&mut batch)?;
    }
    let t0 = now_ms();
    gpu.submit(batch)?;
    gpu.sync().await?;
    Ok((now_ms() - t0) / reps.max(1) as f64)
}
