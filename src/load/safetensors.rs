//! safetensors, streamed: the 8-byte header length and the JSON header are read and validated
//! first (every tensor inside the file, no overlaps, byte counts matching dtype × shape); then
//! the data section streams through one bounded staging buffer into GPU buffers with
//! `queue.write_buffer`, so host memory never holds more than one staging chunk of a file.
//!
//! The header is parsed with serde_json rather than the `safetensors` crate: that crate's
//! `read_metadata` wants the whole file in memory, its errors carry no file or tensor name, and
//! it rejects dtypes it does not know before we could name them. Parsing the small JSON
//! ourselves gives typed errors naming the file and the tensor, and tests cross-check the
//! result against the `safetensors` crate on the real model files.

use super::source::{check_relative, ByteSource};
use super::stream::{check_cancel, flush, part_limit, DataStream, FileProgress, Flusher, Tally, Upload};
use super::LoadOptions;
use crate::error::{Error, Result};
use crate::gpu::{Buffer, DType, Gpu, GpuTensor};
use serde::de::{MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// safetensors' own bound on the header (100 MB); anything larger is a corrupt length.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Tensors one file may hold (a large model has a few thousand).
pub const MAX_TENSORS: usize = 100_000;

pub use super::stream::MAX_STAGING_BYTES;

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name in the checkpoint.
    pub name: String,
    /// The dtype string as stored (`F32`, `BF16`, `I64`, ...).
    pub dtype_name: String,
    /// The GPU dtype, or `None` for stored dtypes the loader does not upload (I64, F64, U8, ...).
    pub dtype: Option<DType>,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Start of the bytes, relative to the data section.
    pub start: u64,
    /// End (exclusive), relative to the data section.
    pub end: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes of data.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// No bytes (a dimension of 0).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A validated safetensors header.
#[derive(Debug, Clone)]
pub struct Header {
    /// The file (as the source locates it).
    pub file: String,
    /// Length of the JSON header in bytes.
    pub header_len: u64,
    /// Tensors sorted by their start offset.
    pub tensors: Vec<TensorInfo>,
    /// `__metadata__` (string values).
    pub metadata: BTreeMap<String, String>,
    /// The whole file's length, where the source reported it.
    pub file_len: Option<u64>,
}

impl Header {
    /// Offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        8 + self.header_len
    }
    /// Bytes of the data section the tensors use (the largest end offset).
    pub fn data_len(&self) -> u64 {
        self.tensors.iter().map(|t| t.end).max().unwrap_or(0)
    }
    /// A tensor by name.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Bytes per element of the safetensors dtypes; `None` for names safetensors does not define.
fn dtype_size(name: &str) -> Option<(usize, Option<DType>)> {
    Some(match name {
        "F32" => (4, Some(DType::F32)),
        "F16" => (2, Some(DType::F16)),
        "BF16" => (2, Some(DType::BF16)),
        "I8" => (1, Some(DType::I8)),
        "BOOL" | "U8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => (1, None),
        "I16" | "U16" => (2, None),
        "I32" | "U32" => (4, None),
        "F64" | "I64" | "U64" | "C64" => (8, None),
        _ => return None,
    })
}

/// The header's top-level object with duplicate keys detected (serde_json's maps keep the last).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, serde_json::Value>()? {
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: Vec<u64>,
}

/// Parse and validate a JSON header. `data_len` is the length of the data section when the
/// file's length is known (offsets are checked against it).
pub fn parse_header(file: &str, json: &[u8], data_len: Option<u64>) -> Result<Header> {
    let bad = |detail: String| Error::BadModelFile {
        file: file.to_string(),
        detail,
    };
    let text = std::str::from_utf8(json).map_err(|e| bad(format!("header is not UTF-8: {e}")))?;
    let entries: Entries =
        serde_json::from_str(text).map_err(|e| bad(format!("header is not a JSON object of tensors: {e}")))?;
    let mut seen = BTreeSet::new();
    let mut tensors = Vec::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in entries.0 {
        if !seen.insert(name.clone()) {
            return Err(bad(format!("tensor '{name}' appears twice in the header")));
        }
        if name == "__metadata__" {
            let map = value
                .as_object()
                .ok_or_else(|| bad("__metadata__ is not an object".into()))?;
            for (k, v) in map {
                let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                metadata.insert(k.clone(), v);
            }
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        let (size, dtype) =
            dtype_size(&raw.dtype).ok_or_else(|| bad(format!("tensor '{name}': unknown dtype '{}'", raw.dtype)))?;
        let [start, end] = raw.data_offsets[..] else {
            return Err(bad(format!(
                "tensor '{name}': data_offsets must be [begin, end], got {} numbers",
                raw.data_offsets.len()
            )));
        };
        if start > end {
            return Err(bad(format!(
                "tensor '{name}': data_offsets [{start}, {end}] end before they begin"
            )));
        }
        let shape = raw
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad(format!("tensor '{name}': shape {:?} does not fit in memory", raw.shape)))?;
        if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(bad(format!(
                "tensor '{name}': shape {shape:?} overflows (more elements than fit in memory)"
            )));
        }
        if tensors.len() >= MAX_TENSORS {
            return Err(bad(format!("more than {MAX_TENSORS} tensors")));
        }
        let bytes = shape
            .iter()
            .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| bad(format!("tensor '{name}': shape {shape:?} overflows")))?;
        if bytes != end - start {
            return Err(bad(format!(
                "tensor '{name}': {} {shape:?} needs {bytes} bytes but data_offsets [{start}, {end}] hold {}",
                raw.dtype,
                end - start
            )));
        }
        if let Some(len) = data_len {
            if end > len {
                return Err(bad(format!(
                    "tensor '{name}': data_offsets [{start}, {end}] run past the end of the data section ({len} bytes)"
                )));
            }
        }
        tensors.push(TensorInfo {
            name,
            dtype_name: raw.dtype,
            dtype,
            shape,
            start,
            end,
        });
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut last: Option<&TensorInfo> = None;
    for t in tensors.iter().filter(|t| !t.is_empty()) {
        if let Some(p) = last {
            if t.start < p.end {
                return Err(bad(format!(
                    "tensors '{}' [{}, {}] and '{}' [{}, {}] overlap",
                    p.name, p.start, p.end, t.name, t.start, t.end
                )));
            }
        }
        last = Some(t);
    }
    Ok(Header {
        file: file.to_string(),
        header_len: json.len() as u64,
        tensors,
        metadata,
        file_len: None,
    })
}

/// Read and validate the header of `file` (two small reads: the length, then the JSON).
pub async fn read_header<S: ByteSource>(source: &S, file: &str) -> Result<Header> {
    let name = source.locate(file);
    let bad = |detail: String| Error::BadModelFile {
        file: name.clone(),
        detail,
    };
    let (prefix, file_len) = match source.read_range(file, 0, 8).await {
        Err(Error::BadModelFile { .. }) => return Err(bad("shorter than the 8-byte header length".into())),
        r => r?,
    };
    let mut word = [0u8; 8];
    word.copy_from_slice(&prefix);
    let n = u64::from_le_bytes(word);
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {n} is over the {MAX_HEADER_BYTES}-byte limit (corrupt file?)"
        )));
    }
    if let Some(len) = file_len {
        if 8 + n > len {
            return Err(bad(format!(
                "header length {n} runs past the end of the {len}-byte file"
            )));
        }
    }
    let (json, _) = match source.read_range(file, 8, 8 + n).await {
        Err(Error::BadModelFile { .. }) => return Err(bad(format!("header length {n} runs past the end of the file"))),
        r => r?,
    };
    let mut header = parse_header(&name, &json, file_len.map(|l| l - 8 - n))?;
    header.file_len = file_len;
    Ok(header)
}

// ---------------------------------------------------------------------------------------------
// Loaded weights

/// A tensor too large for one storage binding, stored as consecutive row blocks (outermost
/// dimension), each its own buffer of at most the binding limit.
#[derive(Debug, Clone)]
pub struct SplitTensor {
    /// Name in the checkpoint.
    pub name: String,
    /// The full shape.
    pub shape: Vec<usize>,
    /// The stored dtype.
    pub dtype: DType,
    /// Rows (of the outermost dimension) per part; the last part may hold fewer.
    pub rows_per_part: usize,
    /// The parts, in order; part `k` holds rows `k * rows_per_part ..`.
    pub parts: Vec<GpuTensor>,
}

/// A loaded tensor: one buffer, or row blocks when it exceeds the binding limit.
#[derive(Debug, Clone)]
pub enum Weight {
    /// The whole tensor in one buffer.
    Whole(GpuTensor),
    /// Row blocks ([`SplitTensor`]).
    Split(SplitTensor),
}

impl Weight {
    /// Shape of the whole tensor.
    pub fn shape(&self) -> &[usize] {
        match self {
            Weight::Whole(t) => t.shape(),
            Weight::Split(s) => &s.shape,
        }
    }
    /// Stored dtype.
    pub fn dtype(&self) -> DType {
        match self {
            Weight::Whole(t) => t.dtype(),
            Weight::Split(s) => s.dtype,
        }
    }
}

/// The tensors of a checkpoint, by name.
#[derive(Debug, Default)]
pub struct Weights {
    tensors: BTreeMap<String, Weight>,
    skipped: BTreeMap<String, String>,
    /// `__metadata__` of the (first) file.
    pub metadata: BTreeMap<String, String>,
}

impl Weights {
    pub(crate) fn with_metadata(metadata: BTreeMap<String, String>) -> Self {
        Weights {
            metadata,
            ..Weights::default()
        }
    }

    /// A tensor that is held in one buffer. Missing, skipped and split tensors are errors that
    /// name the tensor.
    pub fn get(&self, name: &str) -> Result<&GpuTensor> {
        match self.weight(name)? {
            Weight::Whole(t) => Ok(t),
            Weight::Split(s) => Err(Error::Data {
                tensor: name.to_string(),
                detail: format!(
                    "held as {} row blocks because it exceeds the storage binding limit; use Weights::weight",
                    s.parts.len()
                ),
            }),
        }
    }

    /// A tensor, whole or split.
    pub fn weight(&self, name: &str) -> Result<&Weight> {
        self.tensors.get(name).ok_or_else(|| Error::Data {
            tensor: name.to_string(),
            detail: match self.skipped.get(name) {
                Some(d) => format!("stored as {d}, which the loader does not upload"),
                None => "not in the checkpoint".to_string(),
            },
        })
    }

    /// Remove a tensor and take ownership of it.
    pub fn take(&mut self, name: &str) -> Result<Weight> {
        self.weight(name)?;
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::Internal(format!("tensor '{name}' vanished")))
    }

    /// Whether a tensor was loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    /// Names of the loaded tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
    /// All loaded tensors.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Weight)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Number of loaded tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    /// No tensors loaded.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    /// Tensors in the files that were not uploaded because of their dtype: name → dtype.
    pub fn skipped(&self) -> &BTreeMap<String, String> {
        &self.skipped
    }

    fn insert(&mut self, name: String, w: Weight) -> Result<()> {
        if self.tensors.insert(name.clone(), w).is_some() {
            return Err(Error::BadModelFile {
                file: name.clone(),
                detail: format!("tensor '{name}' loaded twice"),
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming

/// One destination buffer and the data-section bytes it receives.
struct Segment {
    tensor: usize,
    buffer: Buffer,
    start: u64,
    end: u64,
}

/// How to hold one tensor: `None` for one buffer, `Some(rows)` for row blocks of `rows` rows.
pub(crate) fn plan_split(info: &TensorInfo, dtype: DType, limit: u64, file: &str) -> Result<Option<usize>> {
    let numel = info.numel();
    let rows = info.shape.first().copied().unwrap_or(1).max(1);
    // u64: on wasm32 one row of a large tensor can exceed usize (4 GiB).
    let row_bytes = ((numel / rows) as u64).saturating_mul(dtype.size() as u64);
    match super::rows_per_part(rows as u64, row_bytes, limit) {
        None => Ok(None),
        Some(per) if per > 0 && info.shape.len() >= 2 => Ok(Some(per as usize)),
        Some(_) => Err(Error::Limit {
            context: format!("tensor '{}' in {file} (one row of {row_bytes} bytes)", info.name),
            limit: "maxStorageBufferBindingSize",
            needed: GpuTensor::padded_bytes(numel / rows, dtype),
            available: limit,
        }),
    }
}

/// Stream the tensors of one validated file into new GPU buffers, adding them to `out`.
pub(crate) async fn stream_file<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    file: &str,
    header: &Header,
    opts: &LoadOptions,
    tally: &mut Tally<'_>,
    out: &mut Weights,
) -> Result<()> {
    let name = &header.file;
    let cancel = opts.cancel.as_ref();
    check_cancel(cancel, name)?;
    let limit = part_limit(gpu, opts);

    // Plan every tensor; allocate every buffer first when the file's length is known (fails
    // before any download if the device cannot hold them). With an unknown length (no
    // Content-Length, a compressed answer) nothing says the data exists: each tensor's buffers
    // are allocated only when its bytes start to arrive.
    let mut plans = Vec::new();
    for (i, t) in header.tensors.iter().enumerate() {
        let Some(dtype) = t.dtype else {
            out.skipped.insert(t.name.clone(), t.dtype_name.clone());
            continue;
        };
        plans.push((i, dtype, plan_split(t, dtype, limit, name)?));
    }
    let allocate = |&(i, dtype, plan): &(usize, DType, Option<usize>)| -> Result<(Vec<Segment>, Weight)> {
        let t = &header.tensors[i];
        let Some(per) = plan else {
            let tensor = GpuTensor::zeros(gpu, &t.name, &t.shape, dtype)?;
            let seg = Segment {
                tensor: i,
                buffer: tensor.buffer().clone(),
                start: t.start,
                end: t.end,
            };
            return Ok((vec![seg], Weight::Whole(tensor)));
        };
        let rows = t.shape[0];
        let row_bytes = (t.numel() / rows.max(1)) as u64 * dtype.size() as u64;
        let (mut parts, mut segs) = (Vec::new(), Vec::new());
        for (r, n) in super::row_blocks(rows as u64, per as u64) {
            let (r, n) = (r as usize, n as usize);
            let mut shape = t.shape.clone();
            shape[0] = n;
            let part = GpuTensor::zeros(gpu, &format!("{}[rows {r}..{}]", t.name, r + n), &shape, dtype)?;
            let start = t.start + r as u64 * row_bytes;
            let end = start + n as u64 * row_bytes;
            segs.push(Segment {
                tensor: i,
                buffer: part.buffer().clone(),
                start,
                end,
            });
            parts.push(part);
        }
        let split = SplitTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            dtype,
            rows_per_part: per,
            parts,
        };
        Ok((segs, Weight::Split(split)))
    };
    let up_front = header.file_len.is_some();
    let mut allocated = Vec::with_capacity(plans.len());
    for p in &plans {
        allocated.push(if up_front { Some(allocate(p)?) } else { None });
    }
    gpu.check_errors(&format!("allocating the tensors of {name}"))?;

    let file_total = header.data_len();
    let data_start = header.data_start();
    let mut stream = DataStream::open(source, file, name, data_start, data_start + file_total, 0, opts, 4).await?;
    let mut flusher = Flusher::new(stream.staging_len());
    let mut report = FileProgress::new(name, file_total);

    let mut pending: Vec<(String, Weight)> = Vec::with_capacity(plans.len());
    for (plan, slot) in plans.iter().zip(allocated) {
        let (segments, weight) = match slot {
            Some(a) => a,
            None => allocate(plan)?,
        };
        for seg in &segments {
            let t = &header.tensors[seg.tensor];
            let truncated = |at: u64| Error::BadModelFile {
                file: name.clone(),
                detail: format!(
                    "the file ends at data byte {at} inside tensor '{}' [{}, {}] (truncated download?)",
                    t.name, t.start, t.end
                ),
            };
            stream.skip_to(seg.start, &truncated).await?;
            let mut up = Upload::new(seg.buffer.clone());
            while stream.pos() < seg.end {
                let n = (seg.end - stream.pos()).min(stream.staging_len() as u64) as usize;
                let bytes = stream.next(n, &truncated).await?;
                flusher.wrote(gpu, up.push(gpu, bytes));
                report.at(tally, stream.pos());
            }
            flusher.wrote(gpu, up.finish(gpu));
        }
        pending.push((header.tensors[plan.0].name.clone(), weight));
    }
    flush(gpu);
    report.finish(tally);
    gpu.check_errors(&format!("uploading the tensors of {name}"))?;
    for (n, w) in pending {
        out.insert(n, w)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

/// `model.safetensors.index.json`: which file holds which tensor.
#[derive(Debug, Clone, Deserialize)]
pub struct ShardIndex {
    /// Tensor name → file name.
    pub weight_map: BTreeMap<String, String>,
    /// Free-form metadata (`total_size`, ...).
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl ShardIndex {
    /// Parse an index file.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        let index: ShardIndex = serde_json::from_slice(bytes).map_err(|e| Error::BadModelFile {
            file: file.to_string(),
            detail: e.to_string(),
        })?;
        for f in index.weight_map.values() {
            check_relative(file, f)?;
        }
        Ok(index)
    }

    /// The shard files, sorted, each once.
    pub fn files(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.weight_map.values().collect();
        set.into_iter().cloned().collect()
    }
}

/// Check the headers of a sharded checkpoint against its index: every indexed tensor is in
/// the file the index names, and no tensor is in two files.
pub fn check_shards(index_file: &str, index: &ShardIndex, headers: &[(String, Header)]) -> Result<()> {
    let bad = |detail: String| Error::BadModelFile {
        file: index_file.to_string(),
        detail,
    };
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (file, h) in headers {
        for t in &h.tensors {
            if let Some(other) = owner.insert(&t.name, file) {
                return Err(bad(format!("tensor '{}' is in both {other} and {file}", t.name)));
            }
        }
    }
    for (tensor, file) in &index.weight_map {
        match owner.get(tensor.as_str()) {
            Some(f) if *f == file => {}
            Some(f) => return Err(bad(format!("tensor '{tensor}' is indexed in {file} but stored in {f}"))),
            None => {
                return Err(bad(format!(
                    "tensor '{tensor}' is indexed in {file} but that file lacks it"
                )))
            }
        }
    }
    Ok(())
}
