//! A small ring of 4-byte MAP_READ staging buffers for reading sampled token ids back without
//! waiting for the whole queue: a step copies its id into slot k, [`IdRing::start`] begins the
//! map right after the submit, and [`IdRing::read`] awaits only that slot (natively it waits for
//! that submission alone; in the browser the `mapAsync` promise resolves from the event loop).
//! Steps submitted after it keep the GPU busy meanwhile.

use super::{Buffer, Gpu};
use crate::error::{Error, Result};
use futures_channel::oneshot;

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

struct Slot {
    buffer: Buffer,
    pending: Option<(oneshot::Receiver<MapResult>, Option<wgpu::SubmissionIndex>)>,
}

/// `n` id slots, reused round robin by the caller.
pub struct IdRing {
    slots: Vec<Slot>,
}

impl IdRing {
    /// `n` slots (at least 1) of one u32 each.
    pub fn new(gpu: &Gpu, n: usize) -> Result<Self> {
        let slots = (0..n.max(1))
            .map(|k| {
                let buffer = gpu.create_buffer(
                    &format!("id readback {k}"),
                    4,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                )?;
                Ok(Slot { buffer, pending: None })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(IdRing { slots })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots (never: `new` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, k: usize) -> Result<&Slot> {
        self.slots
            .get(k)
            .ok_or_else(|| Error::Internal(format!("id readback slot {k} of {}", self.slots.len())))
    }

    /// The staging buffer of slot `k` (record a copy of the id into it, then submit, then `start`).
    pub fn buffer(&self, k: usize) -> Result<&Buffer> {
        let s = self.slot(k)?;
        if s.pending.is_some() {
            return Err(Error::Internal(format!("id readback slot {k} is still being read")));
        }
        Ok(&s.buffer)
    }

    /// Begin mapping slot `k` (after the submit that copies into it).
    pub fn start(&mut self, gpu: &Gpu, k: usize) -> Result<()> {
        let index = gpu.last_submission();
        let slot = self
            .slots
            .get_mut(k)
            .ok_or_else(|| Error::Internal(format!("id readback slot {k}")))?;
        let (tx, rx) = oneshot::channel();
        slot.buffer.raw().slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        slot.pending = Some((rx, index));
        Ok(())
    }

    /// Await slot `k`'s id (and unmap it for reuse).
    pub async fn read(&mut self, gpu: &Gpu, k: usize) -> Result<u32> {
        let slot = self
            .slots
            .get_mut(k)
            .ok_or_else(|| Error::Internal(format!("id readback slot {k}")))?;
        let (rx, index) = slot
            .pending
            .take()
            .ok_or_else(|| Error::Internal(format!("id readback slot {k} was not started")))?;
        let what = "sampled token id";
        gpu.wait_for(index)?;
        let mapped = rx.await.map_err(|_| Error::Readback {
            what: what.into(),
            message: "map callback dropped".into(),
        })?;
        mapped.map_err(|e| Error::Readback {
            what: what.into(),
            message: e.to_string(),
        })?;
        let id = {
            let view = slot
                .buffer
                .raw()
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Readback {
                    what: what.into(),
                    message: e.to_string(),
                })?;
            u32::from_le_bytes([view[0], view[1], view[2], view[3]])
        };
        slot.buffer.raw().unmap();
        Ok(id)
    }
}
