//! GGUF, streamed: the header is read as a growing prefix until [`crate::gguf::parse_header`]
//! says it is complete (doubling, so a 2 MB vocabulary costs ~6 small requests), then the data
//! section comes in ONE streamed request through bounded staging buffers straight into GPU
//! buffers, through the streaming helper the safetensors loader uses too (`stream.rs`: same
//! options, progress, cancellation, periodic flushes, word-aligned writes at any byte offset).
//!
//! Per tensor a [`TensorPlan`] says what to make of it:
//! - **quantised, as stored** ([`QuantWeight`]) when a kernel reads its block type
//!   (Q8_0 / Q4_0 / Q4_1 / Q4_K);
//! - **dense** ([`GpuTensor`], f32 / f16 / bf16): float tensors as stored; quantised ones are
//!   dequantised on the CPU one staging chunk at a time (types without a kernel, and tables that
//!   are gathered rather than multiplied, i.e. the token embedding), with a warning naming the
//!   tensor in [`GgufWeights::warnings`];
//! - both (a tied embedding: dense for the lookup, quantised for the lm_head GEMV);
//! - optionally with llama.cpp's q/k row permutation undone ([`crate::gguf::unpermute_qk_rows`],
//!   one head of rows at a time), so the model can keep its half-split RoPE kernels.
//!
//! Host memory during the data section: the staging buffer, plus (only when needed) one
//! permutation buffer and the dequantised values of one chunk (≤ the staging size each).

use super::source::{ByteSource, RangeReader};
use super::stream::{
    check_cancel, flush, part_limit, staging_cap, DataStream, FileProgress, Flusher, PartsUpload, Tally,
    MAX_STAGING_BYTES,
};
use super::{LoadOptions, Progress};
use crate::error::{Error, Result};
use crate::gguf::{dequant, parse_header, unpermute_qk_rows, GgmlType, GgufHeader, Parsed, TensorInfo};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::ops::quant::{QuantType, QuantWeight};
use std::collections::BTreeMap;

/// The first header read; later reads double the prefix.
pub const FIRST_HEADER_READ: u64 = 64 << 10;

/// The largest GGUF header accepted (the vocabulary of a 150k-token model is ~8 MB).
pub const MAX_GGUF_HEADER_BYTES: u64 = 48 << 20;

/// Whether a file name or URL names a GGUF file (by its `.gguf` suffix; a query string or
/// fragment after it is ignored; case-insensitive).
pub fn is_gguf(name: &str) -> bool {
    let path = name.split(['?', '#']).next().unwrap_or(name);
    path.to_ascii_lowercase().ends_with(".gguf")
}

/// Read and parse the header of a GGUF file: a growing prefix (64 KiB, then doubling) until
/// the parser has the whole header. Returns the header and the number of requests made.
pub async fn read_header<S: ByteSource>(source: &S, file: &str) -> Result<(GgufHeader, usize)> {
    let name = source.locate(file);
    let mut prefix: Vec<u8> = Vec::new();
    let mut want = FIRST_HEADER_READ;
    let mut file_len: Option<u64> = None;
    let mut requests = 0usize;
    loop {
        let start = prefix.len() as u64;
        let end = file_len.map_or(want, |l| want.min(l));
        if end > start {
            let mut reader = source.open(file, start, Some(end)).await?;
            requests += 1;
            let old = prefix.len();
            prefix.resize(end as usize, 0);
            let got = reader.fill(&mut prefix[old..]).await?;
            prefix.truncate(old + got);
            if file_len.is_none() {
                file_len = reader.file_len();
            }
            if (got as u64) < end - start {
                file_len = Some(prefix.len() as u64); // the file ended: now its length is known
            }
        }
        // An unknown length (compressed transfer): tensors are checked while streaming.
        match parse_header(&name, &prefix, file_len.unwrap_or(u64::MAX))? {
            Parsed::Header(h) => return Ok((*h, requests)),
            Parsed::NeedMore { bytes } => {
                if bytes > MAX_GGUF_HEADER_BYTES {
                    return Err(Error::BadModelFile {
                        file: name,
                        detail: format!("the header needs more than {MAX_GGUF_HEADER_BYTES} bytes (corrupt file?)"),
                    });
                }
                if bytes <= prefix.len() as u64 {
                    return Err(Error::Internal(format!(
                        "{name}: GGUF parser asked for {bytes} bytes, has {}",
                        prefix.len()
                    )));
                }
                want = bytes.max(2 * prefix.len() as u64).min(MAX_GGUF_HEADER_BYTES);
            }
        }
    }
}

/// What the loader makes of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TensorPlan {
    /// Upload the blocks as stored ([`QuantWeight`]); the type must have a kernel.
    pub quant: bool,
    /// Upload as a dense tensor of this dtype (F32 / F16 / BF16), dequantising if needed.
    pub dense: Option<DType>,
    /// Undo llama.cpp's q/k row permutation for this many heads (rows = heads × head_dim).
    pub unpermute_heads: Option<usize>,
}

impl TensorPlan {
    /// The default: float tensors dense as stored, kernel-readable blocks as stored, other
    /// quantised types dequantised to `dense`.
    pub fn default_for(info: &TensorInfo, dense: DType) -> TensorPlan {
        match float_dtype(info.ggml_type) {
            Some(d) => TensorPlan {
                dense: Some(d),
                ..Default::default()
            },
            None if QuantType::from_ggml(info.ggml_type).is_some() => TensorPlan {
                quant: true,
                ..Default::default()
            },
            None => TensorPlan {
                dense: Some(dense),
                ..Default::default()
            },
        }
    }
}

/// The GPU dtype of a float GGUF type.
pub fn float_dtype(t: GgmlType) -> Option<DType> {
    match t {
        GgmlType::F32 => Some(DType::F32),
        GgmlType::F16 => Some(DType::F16),
        GgmlType::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// A loaded GGUF file.
#[derive(Debug)]
pub struct GgufWeights {
    /// The parsed header (metadata, tokenizer, tensor infos).
    pub header: GgufHeader,
    quant: BTreeMap<String, Vec<QuantWeight>>,
    dense: BTreeMap<String, Vec<GpuTensor>>,
    /// Tensors dequantised at load, and why (one line each, naming the tensor).
    pub warnings: Vec<String>,
    /// Requests made for the header.
    pub header_requests: usize,
}

impl GgufWeights {
    fn missing(&self, name: &str, what: &str) -> Error {
        let detail = match self.header.tensors.iter().find(|t| t.name == name) {
            Some(t) => format!("stored as {} but not loaded as {what}", t.ggml_type),
            None => "not in the file".to_string(),
        };
        Error::Data {
            tensor: name.to_string(),
            detail,
        }
    }
    /// The quantised upload of a tensor held in one buffer.
    pub fn quant(&self, name: &str) -> Result<&QuantWeight> {
        whole(name, self.quant_parts(name)?)
    }
    /// The dense upload of a tensor held in one buffer.
    pub fn dense(&self, name: &str) -> Result<&GpuTensor> {
        whole(name, self.dense_parts(name)?)
    }
    /// The quantised upload as row blocks (one part unless it exceeds the binding limit).
    pub fn quant_parts(&self, name: &str) -> Result<&[QuantWeight]> {
        self.quant
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| self.missing(name, "quantised blocks"))
    }
    /// The dense upload as row blocks (one part unless it exceeds the binding limit).
    pub fn dense_parts(&self, name: &str) -> Result<&[GpuTensor]> {
        self.dense
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| self.missing(name, "a dense tensor"))
    }
    /// Whether a quantised upload exists.
    pub fn has_quant(&self, name: &str) -> bool {
        self.quant.contains_key(name)
    }
    /// Whether the file has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.quant.contains_key(name) || self.dense.contains_key(name)
    }
    /// Bytes of GPU memory held by the uploads.
    pub fn gpu_bytes(&self) -> u64 {
        self.quant
            .values()
            .flatten()
            .map(|q| q.tensor().buffer().size())
            .sum::<u64>()
            + self.dense.values().flatten().map(|t| t.buffer().size()).sum::<u64>()
    }
}

fn whole<'a, T>(name: &str, parts: &'a [T]) -> Result<&'a T> {
    match parts {
        [one] => Ok(one),
        _ => Err(Error::Data {
            tensor: name.to_string(),
            detail: format!(
                "held as {} row blocks (over the storage binding limit); use the *_parts accessor",
                parts.len()
            ),
        }),
    }
}

/// Rows per part so that each part's buffer stays within `limit` (`None`: one part), by the
/// loaders' one rule ([`super::rows_per_part`]).
fn rows_per_part(info: &TensorInfo, row_bytes: u64, limit: u64, file: &str) -> Result<Option<u64>> {
    let (rows, _) = info.rows_cols();
    match super::rows_per_part(rows, row_bytes, limit) {
        None => Ok(None),
        Some(per) if per > 0 && info.dims.len() >= 2 => Ok(Some(per)),
        Some(_) => Err(limit_error(info, file, rows.saturating_mul(row_bytes), limit)),
    }
}

/// Bytes of one stored row (`ne[0]` elements) and the number of rows; a 1-D tensor counts each
/// element as a row (for permuting a bias).
fn rows_and_row_bytes(info: &TensorInfo) -> (u64, u64) {
    if info.dims.len() == 1 && info.ggml_type.block_size() == 1 {
        return (info.dims[0], info.ggml_type.type_size());
    }
    let (rows, cols) = info.rows_cols();
    (rows, cols / info.ggml_type.block_size() * info.ggml_type.type_size())
}

/// One tensor's destinations.
struct Job {
    info: TensorInfo,
    plan: TensorPlan,
    quant: Vec<QuantWeight>,
    dense: Vec<GpuTensor>,
}

/// Load the tensors of a GGUF file whose header was read with [`read_header`], each as `plan`
/// says (`None`: skip the tensor).
pub async fn load_tensors<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    file: &str,
    header: GgufHeader,
    opts: &LoadOptions,
    plan: &dyn Fn(&TensorInfo) -> Option<TensorPlan>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<GgufWeights> {
    let name = header.file.clone();
    let cancel = opts.cancel.as_ref();
    check_cancel(cancel, &name)?;
    let limit = part_limit(gpu, opts);
    let bad = |detail: String| Error::BadModelFile {
        file: name.clone(),
        detail,
    };
    let mut warnings = Vec::new();

    // Plan and allocate every buffer before the download.
    let mut infos: Vec<TensorInfo> = header.tensors.clone();
    infos.sort_by_key(|t| t.offset);
    let mut jobs = Vec::new();
    let mut unit_max = 4usize;
    for info in infos {
        let Some(p) = plan(&info) else { continue };
        let t = info.ggml_type;
        let qtype = QuantType::from_ggml(t);
        if p.quant && qtype.is_none() {
            return Err(Error::DType {
                op: "load_gguf",
                tensor: info.name.clone(),
                got: t.name(),
                expected: "a type with a GPU kernel (Q8_0, Q4_0, Q4_1, Q4_K)".into(),
            });
        }
        if p.dense.is_some() && !dequant::can_dequantize(t) {
            return Err(Error::Unsupported {
                kernel: "load_gguf",
                variant: t.name(),
                why: format!(
                    "tensor '{}' in {name}: {t} has neither a GPU kernel here nor a CPU dequantiser (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
                    info.name
                ),
            });
        }
        if !p.quant && p.dense.is_none() {
            continue;
        }
        let (rows, cols) = info.rows_cols();
        let part_name = |a: u64, b: u64, n: u64| {
            if n == rows {
                info.name.clone()
            } else {
                format!("{}[rows {a}..{b}]", info.name)
            }
        };
        let mut quant = Vec::new();
        if let (true, Some(q)) = (p.quant, qtype) {
            let row_bytes = cols / q.block_size() as u64 * q.block_bytes() as u64;
            let per = rows_per_part(&info, row_bytes, limit, &name)?.unwrap_or(rows);
            // Checked: on wasm32 a row of 2^32 or more weights (that fits a buffer as blocks)
            // must not become a buffer for the row length modulo 2^32.
            let cols = usize::try_from(cols).map_err(|_| limit_error(&info, &name, row_bytes, limit))?;
            for (r, n) in super::row_blocks(rows, per) {
                let n = usize::try_from(n).map_err(|_| limit_error(&info, &name, row_bytes, limit))?;
                quant.push(QuantWeight::allocate(
                    gpu,
                    &part_name(r, r + n as u64, n as u64),
                    q,
                    n,
                    cols,
                )?);
            }
        }
        let mut dense = Vec::new();
        if let Some(d) = p.dense {
            let shape = info.shape();
            let per = rows_per_part(&info, cols * d.size() as u64, limit, &name)?;
            match per {
                None => dense.push(GpuTensor::zeros(gpu, &info.name, &shape, d)?),
                Some(per) => {
                    for (r, n) in super::row_blocks(rows, per) {
                        dense.push(GpuTensor::zeros(
                            gpu,
                            &part_name(r, r + n, n),
                            &[n as usize, cols as usize],
                            d,
                        )?);
                    }
                }
            }
            {
                if float_dtype(t) != Some(d) {
                    warnings.push(format!(
                        "tensor '{}' ({t} {:?}) dequantised to {} at load{}",
                        info.name,
                        shape,
                        d.name(),
                        if qtype.is_some() && info.name == "token_embd.weight" {
                            " for gathering (the embedding lookup reads dense rows)"
                        } else if qtype.is_some() {
                            " as planned (e.g. to match the layer weights it is joined with)"
                        } else {
                            ": no GPU kernel reads this type"
                        }
                    ));
                }
            }
        }
        // The staging buffer holds at least one block (dequantising) or one head (un-permuting).
        unit_max = unit_max.max(t.type_size() as usize);
        if let Some(heads) = p.unpermute_heads {
            let (rows, row_bytes) = rows_and_row_bytes(&info);
            if heads == 0 || !rows.is_multiple_of(heads as u64) || !(rows / heads as u64).is_multiple_of(2) {
                return Err(bad(format!(
                    "tensor '{}': {rows} rows do not split into {heads} heads of an even size",
                    info.name
                )));
            }
            let head_bytes = rows / heads as u64 * row_bytes;
            if head_bytes > MAX_STAGING_BYTES as u64 {
                return Err(Error::Limit {
                    context: format!("un-permuting tensor '{}' in {name}", info.name),
                    limit: "MAX_STAGING_BYTES (one head of rows)",
                    needed: head_bytes,
                    available: MAX_STAGING_BYTES as u64,
                });
            }
            unit_max = unit_max.max(head_bytes as usize);
        }
        jobs.push(Job {
            info,
            plan: p,
            quant,
            dense,
        });
    }
    gpu.check_errors(&format!("allocating the tensors of {name}"))?;

    let data_start = jobs.first().map_or(header.data_offset, |j| j.info.offset);
    let data_end = jobs
        .iter()
        .map(|j| j.info.offset + j.info.size)
        .max()
        .unwrap_or(data_start);
    let total = data_end - data_start;
    let mut stream = DataStream::open(source, file, &name, data_start, data_end, data_start, opts, unit_max).await?;
    let staging_len = stream.staging_len();
    let mut flusher = Flusher::new(staging_cap(opts));
    let mut tally = Tally::single(total, progress);
    let mut report = FileProgress::new(&name, total);
    let mut permuted: Vec<u8> = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    let mut encoded: Vec<u8> = Vec::new();

    for job in &jobs {
        let info = &job.info;
        let truncated = |at: u64| Error::BadModelFile {
            file: name.clone(),
            detail: format!(
                "the file ends at byte {at} inside tensor '{}' [{}, {}) (truncated download?)",
                info.name,
                info.offset,
                info.offset + info.size
            ),
        };
        stream.skip_to(info.offset, &truncated).await?;
        let t = info.ggml_type;
        let (rows, row_bytes) = rows_and_row_bytes(info);
        // Chunks: whole heads when un-permuting, whole blocks when dequantising (and few enough
        // that the f32 values stay within the staging size).
        let dequantising = job.plan.dense.is_some_and(|d| float_dtype(t) != Some(d));
        // At least 1: a tensor with no rows (or empty rows) has no bytes, but a unit of 0 would
        // divide by zero below (found by the gguf_load fuzz target).
        let unit = match job.plan.unpermute_heads {
            Some(h) => rows / h as u64 * row_bytes,
            None => t.type_size(),
        }
        .max(1);
        let mut chunk = (staging_len as u64 / unit).max(1) * unit;
        if dequantising {
            let per_block_f32 = t.block_size() * 4;
            let blocks = (staging_len as u64 / per_block_f32).max(1);
            chunk = chunk.min((blocks * t.type_size()).div_ceil(unit) * unit).max(unit);
        }
        let chunk = chunk.min(staging_len as u64).max(1) as usize;
        let dsize = job.plan.dense.map_or(0, |d| d.size() as u64);
        let mut q_up = (!job.quant.is_empty()).then(|| {
            PartsUpload::new(
                job.quant
                    .iter()
                    .map(|q| (q.tensor().buffer().clone(), q.block_bytes() as u64))
                    .collect(),
            )
        });
        let mut d_up = (!job.dense.is_empty()).then(|| {
            PartsUpload::new(
                job.dense
                    .iter()
                    .map(|d| (d.buffer().clone(), d.numel() as u64 * dsize))
                    .collect(),
            )
        });
        let end = info.offset + info.size;
        while stream.pos() < end {
            let n = (end - stream.pos()).min(chunk as u64) as usize;
            let mut bytes = stream.next(n, &truncated).await?;
            if let Some(heads) = job.plan.unpermute_heads {
                let head_rows = (rows / heads as u64) as usize;
                let rb = row_bytes as usize;
                let order = unpermute_qk_rows(head_rows, 1)?;
                permuted.clear();
                for head in bytes.chunks(head_rows * rb) {
                    for &src in &order {
                        permuted.extend_from_slice(&head[src * rb..(src + 1) * rb]);
                    }
                }
                bytes = &permuted;
            }
            if let Some(up) = q_up.as_mut() {
                flusher.wrote(gpu, up.push(gpu, bytes));
            }
            if let (Some(up), Some(d)) = (d_up.as_mut(), job.plan.dense) {
                if dequantising {
                    values.clear();
                    dequant::dequantize(t, &info.name, bytes, &mut values)?;
                    encoded.clear();
                    dequant::encode(&values, d, &mut encoded)?;
                    flusher.wrote(gpu, up.push(gpu, &encoded));
                } else {
                    flusher.wrote(gpu, up.push(gpu, bytes));
                }
            }
            report.at(&mut tally, stream.pos() - data_start);
        }
        for up in [q_up.as_mut(), d_up.as_mut()].into_iter().flatten() {
            flusher.wrote(gpu, up.finish(gpu));
        }
    }
    flush(gpu);
    report.finish(&mut tally);
    gpu.check_errors(&format!("uploading the tensors of {name}"))?;
    // Free the host buffers before returning (they are large).
    drop((stream, permuted, values, encoded));

    let mut quant = BTreeMap::new();
    let mut dense = BTreeMap::new();
    for job in jobs {
        if !job.quant.is_empty() {
            quant.insert(job.info.name.clone(), job.quant);
        }
        if !job.dense.is_empty() {
            dense.insert(job.info.name.clone(), job.dense);
        }
    }
    Ok(GgufWeights {
        header,
        quant,
        dense,
        warnings,
        header_requests: 0,
    })
}

fn limit_error(info: &TensorInfo, file: &str, needed: u64, available: u64) -> Error {
    Error::Limit {
        context: format!(
            "tensor '{}' ({} {:?}) in {file}",
            info.name,
            info.ggml_type,
            info.shape()
        ),
        limit: "maxStorageBufferBindingSize",
        needed,
        available,
    }
}

/// Read the header and load every tensor with [`TensorPlan::default_for`] (`dense`: the dtype
/// of dequantised tensors).
pub async fn load_gguf<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    file: &str,
    dense: DType,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<GgufWeights> {
    let (header, requests) = read_header(source, file).await?;
    let plan = move |i: &TensorInfo| Some(TensorPlan::default_for(i, dense));
    let mut w = load_tensors(gpu, source, file, header, opts, &plan, progress).await?;
    w.header_requests = requests;
    Ok(w)
}
