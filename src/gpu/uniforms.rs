//! The uniform arena: kernel parameters live in a few long-lived uniform buffers,
//! never in a buffer created per encode.
//!
//! A [`Batch`](super::Batch) appends each dispatch's parameters to its own CPU-side byte vector
//! at offsets aligned to `minUniformBufferOffsetAlignment`; the bind group points at
//! (chunk, offset). On submit the bytes are written with `queue.write_buffer`, which the queue
//! orders after all earlier submissions, so every batch can start again at offset 0 of the same
//! chunks. Chunks are created only when a batch needs more parameter bytes than any batch before.

use super::memory::{Buffer, MemoryTracker};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Bytes per chunk: 4096 slots of 256 bytes.
pub const CHUNK_BYTES: u64 = 1 << 20;

/// Long-lived uniform chunks of one device.
#[derive(Debug)]
pub struct UniformArena {
    align: u64,
    chunks: Vec<Buffer>,
}

impl UniformArena {
    pub(crate) fn new(align: u32) -> Self {
        UniformArena {
            align: u64::from(align.max(16)),
            chunks: Vec::new(),
        }
    }

    /// Slot size for a parameter block of `bytes`, rounded to the offset alignment.
    pub fn slot_bytes(&self, bytes: usize) -> u64 {
        (bytes.max(16) as u64).div_ceil(self.align) * self.align
    }

    /// The chunk holding batch offset `offset` (created on first need) and the offset inside it.
    pub(crate) fn chunk_for(
        &mut self,
        device: &wgpu::Device,
        tracker: &Arc<MemoryTracker>,
        offset: u64,
        len: u64,
    ) -> Result<(Buffer, u64)> {
        if len > CHUNK_BYTES {
            return Err(Error::Internal(format!("uniform block of {len} bytes exceeds a chunk")));
        }
        let index = (offset / CHUNK_BYTES) as usize;
        while self.chunks.len() <= index {
            let raw = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("uniform arena chunk"),
                size: CHUNK_BYTES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.chunks.push(Buffer::new(raw, tracker.clone()));
        }
        let chunk = self.chunks[index].clone();
        Ok((chunk, offset % CHUNK_BYTES))
    }

    /// Upload a batch's parameter bytes (called at submit).
    pub(crate) fn upload(&self, queue: &wgpu::Queue, bytes: &[u8]) -> Result<()> {
        for (i, part) in bytes.chunks(CHUNK_BYTES as usize).enumerate() {
            let chunk = self
                .chunks
                .get(i)
                .ok_or_else(|| Error::Internal(format!("uniform chunk {i} missing at upload")))?;
            queue.write_buffer(chunk.raw(), 0, part);
        }
        Ok(())
    }

    /// Chunks allocated so far.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Offset alignment in bytes.
    pub fn align(&self) -> u64 {
        self.align
    }
}
