//! The byte streaming both weight loaders share (safetensors in [`super::safetensors`], GGUF in
//! [`super::gguf`]): one ranged request for a file's data section, read in order through one
//! bounded staging buffer; holes and alignment gaps read and dropped; cancellation checked
//! before every read; a stream that ends early named as the tensor it ended in; writes into GPU
//! buffers as whole u32 words at any byte offset of the file (the tail zero-padded); an empty
//! submit after every staging-sized amount of writes; progress at least every MiB and at the
//! end of every file. The loaders keep only what is their own: the header, what each tensor
//! becomes, and the error text.
//!
//! All offsets are u64: on wasm32 a gap of a multiple of 4 GiB must not become a read of 0
//! bytes (an endless loop).

use super::source::{ByteSource, RangeReader};
use super::{CancelFlag, LoadOptions, Progress};
use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu};

/// The largest staging chunk the loaders use (also the default).
pub const MAX_STAGING_BYTES: usize = 16 << 20;

/// Progress is reported at least every this many bytes (and at the end of every file).
const REPORT_EVERY: u64 = 1 << 20;

/// The staging size `opts` asks for: a multiple of 4 in `4..=MAX_STAGING_BYTES`.
pub(crate) fn staging_cap(opts: &LoadOptions) -> usize {
    opts.staging_bytes.clamp(4, MAX_STAGING_BYTES) / 4 * 4
}

/// The limit one buffer of a loaded tensor must stay within.
pub(crate) fn part_limit(gpu: &Gpu, opts: &LoadOptions) -> u64 {
    let caps = gpu.caps();
    let mut limit = caps.max_storage_binding.min(caps.max_buffer_size);
    if let Some(m) = opts.max_part_bytes {
        limit = limit.min(m);
    }
    limit
}

/// Flush queued writes to the GPU so the driver's staging copies do not pile up: natively wgpu
/// keeps `write_buffer` data until the next submit.
pub(crate) fn flush(gpu: &Gpu) {
    gpu.queue().submit(std::iter::empty());
    #[cfg(not(target_arch = "wasm32"))]
    let _ = gpu.device().poll(wgpu::PollType::Poll);
}

/// `Error::Cancelled` naming the file once the flag is set.
pub(crate) fn check_cancel(cancel: Option<&CancelFlag>, file: &str) -> Result<()> {
    match cancel {
        Some(c) if c.is_cancelled() => Err(Error::Cancelled(format!("loading {file}"))),
        _ => Ok(()),
    }
}

/// One file's data section, read in order through one staging buffer.
pub(crate) struct DataStream<'a, R> {
    reader: Option<R>,
    file: &'a str,
    cancel: Option<&'a CancelFlag>,
    pos: u64,
    staging: Vec<u8>,
}

impl<'a, R: RangeReader> DataStream<'a, R> {
    /// Open bytes `start..end` of `file` (`name`: the file as the source locates it, for
    /// errors). No request at all when the range is empty (a range from the file's end would
    /// be 416). Positions count from `pos0` (the caller's frame: file or data-section offsets).
    /// The staging buffer holds `min(cap, end - start)` bytes rounded up to 4, and at least
    /// `unit` (one block or one head the caller must see whole).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open<S: ByteSource<Reader = R>>(
        source: &S,
        file: &str,
        name: &'a str,
        start: u64,
        end: u64,
        pos0: u64,
        opts: &'a LoadOptions,
        unit: usize,
    ) -> Result<Self> {
        let total = end.saturating_sub(start);
        let reader = match total {
            0 => None,
            _ => Some(source.open(file, start, Some(end)).await?),
        };
        let len = ((staging_cap(opts) as u64).min(total.max(4)) as usize).div_ceil(4) * 4;
        Ok(DataStream {
            reader,
            file: name,
            cancel: opts.cancel.as_ref(),
            pos: pos0,
            staging: vec![0u8; len.max(unit)],
        })
    }

    /// Position of the next byte the stream gives.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Size of the staging buffer (the most one [`DataStream::next`] gives).
    pub(crate) fn staging_len(&self) -> usize {
        self.staging.len()
    }

    /// Read and drop the bytes up to position `to` (holes between tensors, alignment gaps).
    /// `truncated(at)` is the error for a stream that ends at position `at`.
    pub(crate) async fn skip_to(&mut self, to: u64, truncated: &dyn Fn(u64) -> Error) -> Result<()> {
        while self.pos < to {
            let n = (to - self.pos).min(self.staging.len() as u64) as usize;
            self.read(n, truncated).await?;
        }
        Ok(())
    }

    /// The next `n` bytes (at most the staging size), after checking for cancellation.
    pub(crate) async fn next(&mut self, n: usize, truncated: &dyn Fn(u64) -> Error) -> Result<&[u8]> {
        let n = n.min(self.staging.len());
        self.read(n, truncated).await?;
        Ok(&self.staging[..n])
    }

    async fn read(&mut self, n: usize, truncated: &dyn Fn(u64) -> Error) -> Result<()> {
        check_cancel(self.cancel, self.file)?;
        let file = self.file;
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| Error::Internal(format!("{file}: no reader for a non-empty data section")))?;
        let got = reader.fill(&mut self.staging[..n]).await?;
        if got < n || got == 0 {
            return Err(truncated(self.pos + got as u64));
        }
        self.pos += n as u64;
        Ok(())
    }
}

/// Counts bytes handed to the queue and flushes after every staging-sized amount.
pub(crate) struct Flusher {
    every: usize,
    unflushed: usize,
}

impl Flusher {
    /// Flush after every `every` bytes written.
    pub(crate) fn new(every: usize) -> Self {
        Flusher { every, unflushed: 0 }
    }

    /// `n` more bytes were written.
    pub(crate) fn wrote(&mut self, gpu: &Gpu, n: usize) {
        self.unflushed += n;
        if self.unflushed >= self.every {
            flush(gpu);
            self.unflushed = 0;
        }
    }
}

/// A sequential writer into one GPU buffer: whole u32 words go out as they come (at most 3
/// bytes wait for the next piece), the tail is zero-padded at the end. So a tensor may start at
/// any byte of the file and pieces may have any size.
pub(crate) struct Upload {
    buffer: Buffer,
    offset: u64,
    carry: [u8; 4],
    carried: usize,
}

impl Upload {
    pub(crate) fn new(buffer: Buffer) -> Self {
        Upload {
            buffer,
            offset: 0,
            carry: [0; 4],
            carried: 0,
        }
    }

    /// Write `data`; returns the bytes handed to the queue.
    pub(crate) fn push(&mut self, gpu: &Gpu, mut data: &[u8]) -> usize {
        let mut sent = 0;
        if self.carried > 0 {
            let n = (4 - self.carried).min(data.len());
            self.carry[self.carried..self.carried + n].copy_from_slice(&data[..n]);
            self.carried += n;
            data = &data[n..];
            if self.carried < 4 {
                return 0;
            }
            gpu.queue().write_buffer(self.buffer.raw(), self.offset, &self.carry);
            self.offset += 4;
            self.carried = 0;
            sent += 4;
        }
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            gpu.queue().write_buffer(self.buffer.raw(), self.offset, &data[..whole]);
            self.offset += whole as u64;
            sent += whole;
        }
        let rest = &data[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
        sent
    }

    /// Write the carried bytes zero-padded to a word; returns the bytes handed to the queue.
    pub(crate) fn finish(&mut self, gpu: &Gpu) -> usize {
        if self.carried == 0 {
            return 0;
        }
        self.carry[self.carried..].fill(0);
        gpu.queue().write_buffer(self.buffer.raw(), self.offset, &self.carry);
        self.offset += 4;
        self.carried = 0;
        4
    }
}

/// A byte stream written across consecutive part buffers (`(buffer, bytes)` each).
pub(crate) struct PartsUpload {
    parts: Vec<(Buffer, u64)>,
    index: usize,
    cur: Option<Upload>,
    left: u64,
}

impl PartsUpload {
    pub(crate) fn new(parts: Vec<(Buffer, u64)>) -> Self {
        let first = parts.first().cloned();
        PartsUpload {
            index: 0,
            left: first.as_ref().map_or(0, |p| p.1),
            cur: first.map(|p| Upload::new(p.0)),
            parts,
        }
    }

    /// Write `data`; returns the bytes handed to the queue. Bytes past the last part are dropped.
    pub(crate) fn push(&mut self, gpu: &Gpu, mut data: &[u8]) -> usize {
        let mut sent = 0;
        while !data.is_empty() {
            let Some(cur) = self.cur.as_mut() else {
                return sent;
            };
            let n = (self.left.min(data.len() as u64)) as usize;
            sent += cur.push(gpu, &data[..n]);
            data = &data[n..];
            self.left -= n as u64;
            if self.left == 0 {
                sent += cur.finish(gpu);
                self.index += 1;
                self.cur = self.parts.get(self.index).map(|p| Upload::new(p.0.clone()));
                self.left = self.parts.get(self.index).map_or(0, |p| p.1);
            }
        }
        sent
    }

    /// Pad and write the current part's tail.
    pub(crate) fn finish(&mut self, gpu: &Gpu) -> usize {
        self.cur.as_mut().map_or(0, |c| c.finish(gpu))
    }
}

/// Running totals for progress reports across the files of one load.
pub(crate) struct Tally<'p> {
    pub(crate) file_index: usize,
    pub(crate) file_count: usize,
    pub(crate) done: u64,
    pub(crate) total: u64,
    pub(crate) progress: &'p mut dyn FnMut(&Progress),
}

impl<'p> Tally<'p> {
    /// A load of one file of `total` bytes.
    pub(crate) fn single(total: u64, progress: &'p mut dyn FnMut(&Progress)) -> Self {
        Tally {
            file_index: 0,
            file_count: 1,
            done: 0,
            total,
            progress,
        }
    }
}

/// Progress of one file's data section within a [`Tally`].
pub(crate) struct FileProgress<'f> {
    file: &'f str,
    total: u64,
    reported: u64,
}

impl<'f> FileProgress<'f> {
    /// `file` (as located) with `total` bytes of data.
    pub(crate) fn new(file: &'f str, total: u64) -> Self {
        FileProgress {
            file,
            total,
            reported: 0,
        }
    }

    /// `done` bytes of the file are in: reported when a MiB has passed since the last report
    /// or the file is complete.
    pub(crate) fn at(&mut self, tally: &mut Tally<'_>, done: u64) {
        if done - self.reported >= REPORT_EVERY || done == self.total {
            self.report(tally, done);
        }
    }

    /// The file is complete: the last report, unless it was made (a file with no data bytes
    /// reports once too: every file ends with a report).
    pub(crate) fn finish(&mut self, tally: &mut Tally<'_>) {
        if self.reported < self.total || self.total == 0 {
            self.report(tally, self.total);
        }
    }

    fn report(&mut self, tally: &mut Tally<'_>, done: u64) {
        tally.done += done - self.reported;
        self.reported = done;
        (tally.progress)(&Progress {
            file: self.file,
            file_index: tally.file_index,
            file_count: tally.file_count,
            file_done: done,
            file_total: self.total,
            done: tally.done,
            total: tally.total,
        });
    }
}
