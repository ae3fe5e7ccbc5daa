//! Allocation accounting: every GPU buffer the crate creates is counted while it lives, so tests
//! can assert that nothing is allocated per encode (parameters go through the
//! uniform arena) and models can check a budget
//! before they allocate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters shared by all buffers of one device.
#[derive(Debug, Default)]
pub struct MemoryTracker {
    live_buffers: AtomicU64,
    live_bytes: AtomicU64,
    peak_bytes: AtomicU64,
    created: AtomicU64,
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
    }

    pub(crate) fn on_drop(&self, bytes: u64) {
        self.live_buffers.fetch_sub(1, Ordering::Relaxed);
        self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
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
    tracker: Arc<MemoryTracker>,
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        self.raw.destroy();
        self.tracker.on_drop(self.size);
    }
}

impl Buffer {
    pub(crate) fn new(raw: wgpu::Buffer, tracker: Arc<MemoryTracker>) -> Self {
        let size = raw.size();
        tracker.on_create(size);
        Buffer {
            inner: Arc::new(BufferInner { raw, size, tracker }),
        }
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
