//! Loading a model directory: byte sources (fetch / file / memory), safetensors and GGUF streamed
//! into GPU buffers (one streaming helper for both, `stream.rs`), sharded checkpoints, config.json
//! and generation_config.json.
//!
//! ```ignore
//! let src = FetchSource::new("https://example.org/SmolLM2-135M-Instruct/");
//! let config = ModelConfig::load(&src).await?;
//! let weights = load_weights(&gpu, &src, &LoadOptions::default(), &mut |p| show(p.done, p.total)).await?;
//! let tokenizer = Tokenizer::load(&src).await?;
//! ```

pub mod config;
pub mod estimate;
pub mod gguf;
pub mod safetensors;
pub mod sanity;
pub mod source;
pub(crate) mod stream;

pub use self::safetensors::{read_header, Header, ShardIndex, SplitTensor, TensorInfo, Weight, Weights};
pub use config::{BertConfig, DecoderArch, DecoderConfig, GenerationConfig, MlpAct, ModelConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use source::DirSource;
#[cfg(target_arch = "wasm32")]
pub use source::{cached_files, clear_cache, CacheStats, FetchSource};
pub use source::{ByteSource, MemorySource, RangeReader};

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// The single-file checkpoint name.
pub const SAFETENSORS_FILE: &str = "model.safetensors";
/// The sharded checkpoint index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A flag the caller sets to stop a load (checked between chunks): the same token that cancels
/// a generation.
pub use crate::generate::CancelToken as CancelFlag;

/// How to load weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Bytes staged in host memory between the stream and `queue.write_buffer` (rounded down to
    /// a multiple of 4, at most 16 MiB). This bounds the loader's host memory per file.
    pub staging_bytes: usize,
    /// Hold tensors larger than this (or than the device's storage binding limit, whichever is
    /// smaller) as row blocks ([`SplitTensor`]). `None`: the device limit.
    pub max_part_bytes: Option<u64>,
    /// Stop between chunks when set; the buffers allocated so far are freed.
    pub cancel: Option<CancelFlag>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            staging_bytes: 8 << 20,
            max_part_bytes: None,
            cancel: None,
        }
    }
}

/// A progress report, sent at least every MiB and at the end of every file.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The file being read.
    pub file: &'a str,
    /// Its index among the checkpoint's files (0-based).
    pub file_index: usize,
    /// Number of files.
    pub file_count: usize,
    /// Bytes of this file's data section done.
    pub file_done: u64,
    /// Bytes of this file's data section.
    pub file_total: u64,
    /// Bytes done over all files.
    pub done: u64,
    /// Bytes over all files.
    pub total: u64,
}

/// Load one safetensors file into GPU tensors.
pub async fn load_safetensors<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    file: &str,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Weights> {
    let header = read_header(source, file).await?;
    let mut out = Weights::with_metadata(header.metadata.clone());
    let total = header.data_len();
    let mut tally = stream::Tally::single(total, progress);
    safetensors::stream_file(gpu, source, file, &header, opts, &mut tally, &mut out).await?;
    Ok(out)
}

/// Read and check the headers of a model directory's checkpoint (small range reads only, no
/// tensor data): `model.safetensors.index.json` and its shards when the index exists, else
/// `model.safetensors`. Returns `(file, header)` pairs in load order.
pub async fn read_headers<S: ByteSource>(source: &S) -> Result<Vec<(String, Header)>> {
    let Some(index_bytes) = source.read_optional(INDEX_FILE).await? else {
        return Ok(vec![(
            SAFETENSORS_FILE.to_string(),
            read_header(source, SAFETENSORS_FILE).await?,
        )]);
    };
    let index_name = source.locate(INDEX_FILE);
    let index = ShardIndex::parse(&index_name, &index_bytes)?;
    let files = index.files();
    if files.is_empty() {
        return Err(Error::BadModelFile {
            file: index_name,
            detail: "weight_map is empty".into(),
        });
    }
    let mut headers = Vec::with_capacity(files.len());
    for f in &files {
        headers.push((f.clone(), read_header(source, f).await?));
    }
    safetensors::check_shards(&index_name, &index, &headers)?;
    Ok(headers)
}

/// Load a model directory's weights: `model.safetensors.index.json` and its shards when the
/// index exists, else `model.safetensors`. All headers are read and checked before any tensor
/// is downloaded.
pub async fn load_weights<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Weights> {
    let headers = read_headers(source).await?;
    let total = headers.iter().map(|(_, h)| h.data_len()).sum();
    let mut out = Weights::with_metadata(headers.first().map(|(_, h)| h.metadata.clone()).unwrap_or_default());
    let mut tally = stream::Tally {
        file_index: 0,
        file_count: headers.len(),
        done: 0,
        total,
        progress,
    };
    for (i, (f, h)) in headers.iter().enumerate() {
        tally.file_index = i;
        safetensors::stream_file(gpu, source, f, h, opts, &mut tally, &mut out).await?;
    }
    Ok(out)
}
