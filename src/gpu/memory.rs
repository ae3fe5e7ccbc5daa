//! Allocation accounting: every GPU buffer the crate creates is counted while it lives, so tests
//! can assert that nothing is allocated per encode (parameters go through the
//! uniform arena) and models can check a budget
//! before they allocate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Totals over every device of this process (in the browser: of this JS context's wasm
/// instance), so that a device or buffer outliving its engine (a leak across load / dispose
/// cycles, or an aborted load that keeps what it allocated) shows up where no engine is left
/// to ask.
static TOTAL_BUFFERS: AtomicU64 = AtomicU64::new(0);
static TOTAL_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_DEVICES: AtomicU64 = AtomicU64::new(0);
/// Source of [`Buffer::id`].
static NEXT_BUFFER_ID: AtomicU64 = AtomicU64::new(1);

/// A snapshot of the process-wide totals ([`process_memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    /// [`Gpu`](super::Gpu) devices alive (created and not yet dropped).
    pub live_devices: u64,
    /// Counted buffers alive, over all devices.
    pub live_buffers: u64,
    /// Bytes held by them.
    pub live_bytes: u64,
}

/// The live devices, buffers and bytes of every device of this process.
pub fn process_memory() -> ProcessMemory {
    ProcessMemory {
        live_devices: LIVE_DEVICES.load(Ordering::Relaxed),
        live_buffers: TOTAL_BUFFERS.load(Ordering::Relaxed),
        live_bytes: TOTAL_BYTES.load(Ordering::Relaxed),
    }
}

pub(crate) fn device_created() {
    LIVE_DEVICES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn device_dropped() {
    LIVE_DEVICES.fetch_sub(1, Ordering::Relaxed);
}

/// Counters shared by all buffers of one device.
#[derive(Debug, Default)]
pub struct MemoryTracker {
    live_buffers: AtomicU64,
    live_bytes: AtomicU64,
    peak_bytes: AtomicU64,
    created: AtomicU64,
    /// Ids of the buffers dropped since the last [`MemoryTracker::take_dropped`]: the bind-group
    /// cache forgets the groups that bound them (else it keeps every group of every scratch
    /// buffer a prefill of a new length replaced, until it is full: 3.7 MiB of wasm memory).
    dropped: Mutex<Vec<u64>>,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryStats {
    /// Buffers alive now.
    pub live_buffers: u64,
    /// Bytes held by them.
    pub live_bytes: u64,
    /// Highest `live_bytes` seen since the device was created (or the peak was reset).
    pub peak_bytes: u64,
    /// Buffers created since the device was created.
    pub created_buffers: u64,
}

impl MemoryTracker {
    pub(crate) fn on_create(&self, bytes: u64) {
        self.live_buffers.fetch_add(1, Ordering::Relaxed);
        self.created.fetch_add(1, Ordering::Relaxed);
        let now = self.live_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        TOTAL_BUFFERS.fetch_add(1, Ordering::Relaxed);
        TOTAL_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A buffer of `bytes` was dropped (`id`: its [`Buffer::id`], for the bind-group cache).
    pub(crate) fn on_drop(&self, bytes: u64, id: Option<u64>) {
        if let (Some(id), Ok(mut d)) = (id, self.dropped.lock()) {
            d.push(id);
        }
        self.live_buffers.fetch_sub(1, Ordering::Relaxed);
        self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
        TOTAL_BUFFERS.fetch_sub(1, Ordering::Relaxed);
        TOTAL_BYTES.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            live_buffers: self.live_buffers.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            peak_bytes: self.peak_bytes.load(Ordering::Relaxed),
            created_buffers: self.created.load(Ordering::Relaxed),
        }
    }

    /// The ids of the buffers dropped since the last call.
    pub(crate) fn take_dropped(&self) -> Vec<u64> {
        self.dropped
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    /// Start measuring a new peak from the current live bytes.
    pub fn reset_peak(&self) {
        self.peak_bytes
            .store(self.live_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A GPU buffer that is counted while it lives. Cheap to clone (shared handle).
#[derive(Debug, Clone)]
pub struct Buffer {
    inner: Arc<BufferInner>,
}

#[derive(Debug)]
struct BufferInner {
    raw: wgpu::Buffer,
    size: u64,
    id: u64,
    tracker: Arc<MemoryTracker>,
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        self.raw.destroy();
        self.tracker.on_drop(self.size, Some(self.id));
    }
}

impl Buffer {
    pub(crate) fn new(raw: wgpu::Buffer, tracker: Arc<MemoryTracker>) -> Self {
        let size = raw.size();
        tracker.on_create(size);
        let id = NEXT_BUFFER_ID.fetch_add(1, Ordering::Relaxed);
        Buffer {
            inner: Arc::new(BufferInner { raw, size, id, tracker }),
        }
    }

    /// Unique in this process (never reused).
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.inner.raw
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process totals follow every tracker (other tests run beside this one and allocate
    /// real buffers: a size no test allocates is looked for, not exact totals).
    #[test]
    fn process_totals_follow_the_trackers() {
        const HUGE: u64 = 1 << 50;
        let (a, b) = (MemoryTracker::default(), MemoryTracker::default());
        a.on_create(HUGE);
        b.on_create(HUGE);
        assert!(process_memory().live_bytes >= 2 * HUGE);
        assert!(process_memory().live_buffers >= 2);
        a.on_drop(HUGE, None);
        assert!((HUGE..2 * HUGE).contains(&process_memory().live_bytes));
        b.on_drop(HUGE, None);
        assert!(process_memory().live_bytes < HUGE);
        assert_eq!(a.stats().live_bytes, 0);
        assert_eq!(b.stats().created_buffers, 1);
    }
}
