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

/// Rows per part of a tensor of `rows` rows of `row_bytes` bytes each, held as row blocks whose
/// buffers (padded to 16 bytes, as [`crate::gpu::GpuTensor::padded_bytes`] pads every tensor
/// and quantised block buffer) each stay within `limit`: `None` when the whole tensor fits one
/// buffer, `Some(0)` when not even one row does (the caller reports the limit). The safetensors
/// and GGUF loaders and the memory estimate all split by this one rule.
pub(crate) fn rows_per_part(rows: u64, row_bytes: u64, limit: u64) -> Option<u64> {
    // Checked, not saturating: a size past u64 does not fit even a limit of u64::MAX.
    let padded = rows
        .checked_mul(row_bytes)
        .and_then(|b| b.div_ceil(16).max(1).checked_mul(16));
    if padded.is_some_and(|p| p <= limit) {
        return None;
    }
    // n rows fit when n · row_bytes rounded up to 16 is ≤ limit, i.e. n · row_bytes ≤ limit
    // rounded down to 16.
    Some((limit / 16 * 16) / row_bytes.max(1))
}

/// The row blocks `(first row, rows)` of `rows` rows cut into parts of `per` rows (the last
/// part may be shorter).
pub(crate) fn row_blocks(rows: u64, per: u64) -> impl Iterator<Item = (u64, u64)> {
    let per = per.max(1);
    (0..rows.div_ceil(per)).map(move |k| {
        let r = k * per;
        (r, per.min(rows - r))
    })
}

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

#[cfg(test)]
mod split_tests {
    use super::{row_blocks, rows_per_part};
    use crate::gpu::{DType, GpuTensor};

    #[test]
    fn rows_per_part_is_the_largest_count_whose_padded_buffer_fits() {
        for row_bytes in [1u64, 2, 3, 12, 18, 34, 576 * 2, 4096 * 4] {
            for rows in [1u64, 2, 7, 100, 1000] {
                for limit in [16u64, 48, 100, 1000, 4096, 65_536, 1 << 20] {
                    let fits = |n: u64| GpuTensor::padded_bytes((n * row_bytes) as usize, DType::I8) <= limit;
                    match rows_per_part(rows, row_bytes, limit) {
                        None => assert!(fits(rows), "{rows}x{row_bytes} in {limit}"),
                        Some(per) => {
                            assert!(!fits(rows));
                            assert!(per == 0 || fits(per), "{per} rows of {row_bytes} in {limit}");
                            assert!(!fits(per + 1), "{} rows of {row_bytes} also fit {limit}", per + 1);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rows_per_part_does_not_fit_sizes_past_u64() {
        // Found by the stream_arith fuzz target: the saturated product (u64::MAX) "fit" a limit
        // of u64::MAX, so 2^66 bytes were planned as one buffer.
        assert_eq!(
            rows_per_part(1 << 33, 1 << 33, u64::MAX),
            Some((u64::MAX / 16 * 16) >> 33)
        );
        assert_eq!(rows_per_part(1, u64::MAX, u64::MAX), Some(0));
        assert_eq!(rows_per_part(1 << 20, 1 << 20, u64::MAX), None);
    }

    #[test]
    fn padded_bytes_saturate() {
        // Found by the stream_arith fuzz target: the round-up to 16 overflowed (a panic in
        // debug builds, a wrap to a 0-byte buffer in release).
        assert_eq!(GpuTensor::padded_bytes(usize::MAX, DType::F32), u64::MAX);
        assert_eq!(GpuTensor::padded_bytes(0, DType::F32), 16);
        assert_eq!(GpuTensor::padded_bytes(5, DType::F16), 16);
    }

    #[test]
    fn row_blocks_cover_every_row_once() {
        for (rows, per) in [(10u64, 3u64), (9, 3), (1, 5), (5, 1), (0, 4)] {
            let blocks: Vec<_> = row_blocks(rows, per).collect();
            let mut next = 0;
            for &(r, n) in &blocks {
                assert_eq!(r, next);
                assert!(n >= 1 && n <= per);
                next += n;
            }
            assert_eq!(next, rows, "{blocks:?}");
        }
    }
}
