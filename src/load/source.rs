//! Byte sources: where model files come from. A model directory is read through one
//! [`ByteSource`]: [`FetchSource`] (a base URL, browser `fetch` with HTTP Range requests),
//! [`DirSource`] (a local directory, native only) or [`MemorySource`] (files already in memory:
//! tests, or bytes handed over from JS).
//!
//! Every read is a byte range opened as a [`RangeReader`] that fills caller-owned buffers, so
//! the loaders decide how much is held at once (one bounded staging buffer), never the source.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// Where the files of one model directory come from.
///
/// `async fn` in a trait: the futures are not `Send` (browser futures never are), so the trait is
/// used through generics, not `dyn`.
#[allow(async_fn_in_trait)]
pub trait ByteSource {
    /// The reader [`ByteSource::open`] returns.
    type Reader: RangeReader;

    /// The file's full name for messages: its URL or path.
    fn locate(&self, file: &str) -> String;

    /// Open `file` for reading from byte `start` to `end` (exclusive; `None`: to the end).
    /// A missing file is [`Error::NotFound`].
    async fn open(&self, file: &str, start: u64, end: Option<u64>) -> Result<Self::Reader>;

    /// Read exactly the bytes `start..end` of `file`, and the file's length where the source
    /// knows it. A file that ends before `end` is [`Error::BadModelFile`].
    async fn read_range(&self, file: &str, start: u64, end: u64) -> Result<(Vec<u8>, Option<u64>)> {
        let len = end
            .checked_sub(start)
            .ok_or_else(|| Error::Internal(format!("read_range {start}..{end}")))?;
        let len = usize::try_from(len).map_err(|_| Error::BadModelFile {
            file: self.locate(file),
            detail: format!("range {start}..{end} does not fit in memory"),
        })?;
        let mut reader = self.open(file, start, Some(end)).await?;
        let mut buf = vec![0u8; len];
        let n = reader.fill(&mut buf).await?;
        if n < len {
            return Err(Error::BadModelFile {
                file: self.locate(file),
                detail: format!(
                    "the file ends at byte {} but bytes {start}..{end} were needed",
                    start + n as u64
                ),
            });
        }
        Ok((buf, reader.file_len()))
    }

    /// Read a whole (small) file: config.json, tokenizer.json. A file over
    /// [`MAX_SMALL_FILE_BYTES`] (or a body that never ends) is [`Error::BadModelFile`].
    async fn read_all(&self, file: &str) -> Result<Vec<u8>> {
        let mut reader = self.open(file, 0, None).await?;
        let too_big = |n: u64| Error::BadModelFile {
            file: self.locate(file),
            detail: format!("{n} bytes or more is over the {MAX_SMALL_FILE_BYTES}-byte limit for this file"),
        };
        if let Some(len) = reader.file_len().filter(|&l| l > MAX_SMALL_FILE_BYTES) {
            return Err(too_big(len));
        }
        let mut out = Vec::with_capacity(reader.file_len().unwrap_or(0).min(MAX_SMALL_FILE_BYTES) as usize);
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = reader.fill(&mut chunk).await?;
            out.extend_from_slice(&chunk[..n]);
            if out.len() as u64 > MAX_SMALL_FILE_BYTES {
                return Err(too_big(out.len() as u64));
            }
            if n < chunk.len() {
                return Ok(out);
            }
        }
    }

    /// Read a whole file, or `None` when it does not exist (optional files such as
    /// `chat_template.jinja`).
    async fn read_optional(&self, file: &str) -> Result<Option<Vec<u8>>> {
        match self.read_all(file).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An open byte range of one file.
#[allow(async_fn_in_trait)]
pub trait RangeReader {
    /// The whole file's length in bytes, where the source knows it (a file's metadata, an HTTP
    /// `Content-Range` total or `Content-Length`).
    fn file_len(&self) -> Option<u64>;

    /// Fill `buf` with the next bytes of the range. Returns fewer than `buf.len()` bytes only at
    /// the end of the range (or of the file).
    async fn fill(&mut self, buf: &mut [u8]) -> Result<usize>;
}

/// Bytes a whole-file read ([`ByteSource::read_all`]: config, tokenizer, index, template) may
/// return: an endless or huge body must not fill the (wasm) memory.
pub const MAX_SMALL_FILE_BYTES: u64 = 64 << 20;

/// Reject file names that could leave the model directory (names come from index files too).
/// Only `A-Z a-z 0-9 . _ -` and `/` between non-empty parts are allowed, and no part is `.` or
/// `..`: percent escapes (`%2e%2e`), backslashes, control characters (a URL parser drops tabs
/// and newlines, joining `.\t.` into `..`) and schemes never reach a URL.
pub fn check_relative(base: &str, file: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    let bad = file.is_empty()
        || file.len() > 255
        || !file.chars().all(allowed)
        || file.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(Error::BadModelFile {
            file: file.to_string(),
            detail: format!("not a file name inside the model directory {base}"),
        });
    }
    Ok(())
}

/// `Content-Range: bytes a-b/total` → (a, total); the total may be `*` (unknown).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (a, _) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, total.trim().parse().ok()))
}

// ---------------------------------------------------------------------------------------------
// In memory

/// Files held in memory: tests, or model files the page already has as bytes.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    files: HashMap<String, Arc<[u8]>>,
    piece: usize,
    hide_len: bool,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        MemorySource {
            files: HashMap::new(),
            piece: usize::MAX,
            hide_len: false,
        }
    }

    /// Add (or replace) a file.
    pub fn insert(&mut self, name: &str, bytes: impl Into<Arc<[u8]>>) -> &mut Self {
        self.files.insert(name.to_string(), bytes.into());
        self
    }

    /// Hand out at most `piece` bytes per underlying read, like a network stream's chunks
    /// (the reader still fills whole buffers; this exercises the piece-joining path).
    pub fn with_piece_size(mut self, piece: usize) -> Self {
        self.piece = piece.max(1);
        self
    }

    /// Do not report file lengths, like a server that sends no `Content-Length`.
    pub fn with_hidden_len(mut self) -> Self {
        self.hide_len = true;
        self
    }
}

/// Reader over a [`MemorySource`] file.
#[derive(Debug)]
pub struct MemoryReader {
    data: Arc<[u8]>,
    pos: usize,
    end: usize,
    piece: usize,
    hide_len: bool,
}

impl ByteSource for MemorySource {
    type Reader = MemoryReader;

    fn locate(&self, file: &str) -> String {
        format!("memory:{file}")
    }

    async fn open(&self, file: &str, start: u64, end: Option<u64>) -> Result<MemoryReader> {
        let data = self.files.get(file).cloned().ok_or_else(|| Error::NotFound {
            file: self.locate(file),
        })?;
        let len = data.len() as u64;
        let end = end.unwrap_or(len).min(len);
        let start = start.min(end);
        Ok(MemoryReader {
            data,
            pos: start as usize,
            end: end as usize,
            piece: self.piece,
            hide_len: self.hide_len,
        })
    }
}

impl RangeReader for MemoryReader {
    fn file_len(&self) -> Option<u64> {
        (!self.hide_len).then_some(self.data.len() as u64)
    }

    async fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() && self.pos < self.end {
            let n = (buf.len() - filled).min(self.end - self.pos).min(self.piece);
            buf[filled..filled + n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            filled += n;
            self.pos += n;
        }
        Ok(filled)
    }
}

// ---------------------------------------------------------------------------------------------
// Local directory (native)

/// A model directory on the local file system (native builds).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
pub struct DirSource {
    root: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl DirSource {
    /// Read files under `root`.
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        DirSource { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

/// Reader over a local file (blocking reads behind an async signature).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug)]
pub struct FileReader {
    file: std::fs::File,
    path: String,
    remaining: u64,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for DirSource {
    type Reader = FileReader;

    fn locate(&self, file: &str) -> String {
        self.root.join(file).display().to_string()
    }

    async fn open(&self, file: &str, start: u64, end: Option<u64>) -> Result<FileReader> {
        use std::io::{Seek, SeekFrom};
        check_relative(&self.root.display().to_string(), file)?;
        let path = self.locate(file);
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { file: path.clone() },
            _ => Error::Network {
                url: path.clone(),
                detail: e.to_string(),
            },
        };
        let mut f = std::fs::File::open(self.root.join(file)).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let start = start.min(len);
        let end = end.unwrap_or(len).clamp(start, len);
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        Ok(FileReader {
            file: f,
            path: path.clone(),
            remaining: end - start,
            len,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl RangeReader for FileReader {
    fn file_len(&self) -> Option<u64> {
        Some(self.len)
    }

    async fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        use std::io::Read;
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let mut filled = 0;
        while filled < want {
            match self.file.read(&mut buf[filled..want]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Network {
                        url: self.path.clone(),
                        detail: e.to_string(),
                    })
                }
            }
        }
        self.remaining -= filled as u64;
        Ok(filled)
    }
}

// ---------------------------------------------------------------------------------------------
// fetch (browser): src/load/fetch.rs

#[cfg(target_arch = "wasm32")]
#[path = "fetch.rs"]
mod fetch;
#[cfg(target_arch = "wasm32")]
pub use fetch::{cached_files, clear_cache, CacheStats, FetchReader, FetchSource, DEFAULT_IDLE_TIMEOUT_MS};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_headers() {
        assert_eq!(content_range("bytes 8-1023/269060552"), Some((8, Some(269060552))));
        assert_eq!(content_range("bytes 0-7/*"), Some((0, None)));
        assert_eq!(content_range("items 0-7/8"), None);
        assert_eq!(content_range("bytes */8"), None);
    }

    #[test]
    fn whole_file_reads_are_capped() {
        let big = vec![b' '; MAX_SMALL_FILE_BYTES as usize + 1];
        let mut m = MemorySource::new();
        m.insert("config.json", big);
        m.insert("small.json", b"{}".to_vec());
        for src in [m.clone(), m.with_hidden_len().with_piece_size(1 << 20)] {
            let r = pollster::block_on(src.read_all("config.json"));
            assert!(
                matches!(&r, Err(Error::BadModelFile { detail, .. }) if detail.contains("limit")),
                "{r:?}"
            );
            assert_eq!(pollster::block_on(src.read_all("small.json")).unwrap(), b"{}");
        }
    }

    #[test]
    fn file_names_stay_inside_the_directory() {
        assert!(check_relative("d", "model-00001-of-00002.safetensors").is_ok());
        assert!(check_relative("d", "sub/model.safetensors").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "https://evil/x",
            "..\\x",
            "%2e%2e/x",
            ".%2E/x",
            "%2e%2e",
            ".\t./x",
            ".\n./x",
            "a//b",
            "./x",
            "a/.",
            "x?y",
            "x#y",
            "a b",
            "C:x",
            "\u{2024}\u{2024}/x",
        ] {
            assert!(check_relative("d", bad).is_err(), "{bad}");
        }
    }
}
