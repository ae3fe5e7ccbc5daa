//! The strict GGUF header reader: every count, length and offset is checked against the bytes
//! the file can still hold before anything is allocated.

use super::types::{GgmlType, MetaArray, MetaValue};
use super::{GgufHeader, Parsed, TensorInfo, DEFAULT_ALIGNMENT};
use std::collections::{HashMap, HashSet};

/// `GGUF` read as a little-endian u32.
const MAGIC: u32 = u32::from_le_bytes(*b"GGUF");
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// ggml's `GGML_MAX_NAME` (names are shorter than this, without the terminating NUL).
const MAX_TENSOR_NAME: u64 = 64;
/// Keys are at most 65535 bytes (GGUF spec).
const MAX_KEY: u64 = 65_535;
/// Arrays of arrays nest at most this deep (real files use none).
const MAX_ARRAY_DEPTH: u32 = 3;

/// Why parsing stopped: the prefix ended, or the file is bad.
pub(super) enum Stop {
    More(u64),
    Bad(String),
}

type R<T> = std::result::Result<T, Stop>;

fn bad<T>(detail: impl Into<String>) -> R<T> {
    Err(Stop::Bad(detail.into()))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: u64,
    file_size: u64,
}

impl<'a> Reader<'a> {
    /// A capacity for `n` items of at least `min` bytes each that the bytes at hand can hold:
    /// the file size comes from the caller (e.g. `Content-Length`), so counts are only trusted
    /// as far as the prefix really goes.
    fn cap(&self, n: u64, min: u64) -> usize {
        let have = (self.buf.len() as u64).saturating_sub(self.pos) / min.max(1);
        n.min(have + 1) as usize
    }

    /// Bytes the file holds after the cursor.
    fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.file_size);
        let Some(end) = end else {
            return bad(format!(
                "{} needs {n} bytes at offset {} but the file has {} bytes",
                what(),
                self.pos,
                self.file_size
            ));
        };
        if end > self.buf.len() as u64 {
            return Err(Stop::More(end));
        }
        let s = &self.buf[self.pos as usize..end as usize];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> R<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> R<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> R<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then UTF-8 bytes (no NUL).
    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> R<String> {
        let len = self.u64(what)?;
        if len > max {
            return bad(format!("{}: string length {len} exceeds the limit of {max}", what()));
        }
        if len > self.remaining() {
            return bad(format!(
                "{}: string length {len} at offset {} runs past the end of the file ({} bytes)",
                what(),
                self.pos,
                self.file_size
            ));
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => bad(format!(
                "{}: string at offset {} is not UTF-8 ({e})",
                what(),
                self.pos - len
            )),
        }
    }

    fn value(&mut self, ty: u32, depth: u32, what: &dyn Fn() -> String) -> R<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(what)?[0]),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => MetaValue::Bool(self.bool(what)?),
            8 => MetaValue::String(self.string(u64::MAX, what)?),
            9 => MetaValue::Array(self.meta_array(depth, what)?),
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            t => return bad(format!("{}: unknown value type {t}", what())),
        })
    }

    fn bool(&mut self, what: &dyn Fn() -> String) -> R<bool> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => bad(format!(
                "{}: bool byte {b} at offset {} is neither 0 nor 1",
                what(),
                self.pos - 1
            )),
        }
    }

    fn meta_array(&mut self, depth: u32, what: &dyn Fn() -> String) -> R<MetaArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return bad(format!("{}: arrays nested deeper than {MAX_ARRAY_DEPTH}", what()));
        }
        let ty = self.u32(what)?;
        let n = self.u64(what)?;
        // The smallest encoding of one element: strings are at least their u64 length, arrays
        // their type and count. A count the remaining bytes cannot hold is rejected before any
        // allocation.
        let min = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            t => return bad(format!("{}: unknown array element type {t}", what())),
        };
        if n.checked_mul(min).is_none_or(|b| b > self.remaining()) {
            return bad(format!(
                "{}: array of {n} elements (at least {min} bytes each) at offset {} exceeds the {} bytes left in the file",
                what(),
                self.pos,
                self.remaining()
            ));
        }
        let n = n as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty, $len:expr) => {{
                let bytes = self.take(n as u64 * $len, what)?;
                MetaArray::$variant(
                    bytes
                        .chunks_exact($len)
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            0 => MetaArray::U8(self.take(n as u64, what)?.to_vec()),
            1 => MetaArray::I8(self.take(n as u64, what)?.iter().map(|&b| b as i8).collect()),
            2 => fixed!(U16, u16, 2),
            3 => fixed!(I16, i16, 2),
            4 => fixed!(U32, u32, 4),
            5 => fixed!(I32, i32, 4),
            6 => fixed!(F32, f32, 4),
            10 => fixed!(U64, u64, 8),
            11 => fixed!(I64, i64, 8),
            12 => fixed!(F64, f64, 8),
            7 => {
                let mut v = Vec::with_capacity(self.cap(n as u64, 1));
                for _ in 0..n {
                    v.push(self.bool(what)?);
                }
                MetaArray::Bool(v)
            }
            8 => {
                let mut v = Vec::with_capacity(self.cap(n as u64, 8));
                for i in 0..n {
                    v.push(self.string(u64::MAX, &|| format!("{} element {i}", what()))?);
                }
                MetaArray::String(v)
            }
            _ => {
                let mut v = Vec::with_capacity(self.cap(n as u64, 12));
                for i in 0..n {
                    v.push(self.meta_array(depth + 1, &|| format!("{} element {i}", what()))?);
                }
                MetaArray::Array(v)
            }
        })
    }
}

/// Parse the header in `prefix` (the first bytes of a file of `file_size` bytes).
pub(super) fn parse(file: &str, prefix: &[u8], file_size: u64) -> R<Parsed> {
    if prefix.len() as u64 > file_size {
        return bad(format!("{} bytes given but the file size is {file_size}", prefix.len()));
    }
    let mut r = Reader {
        buf: prefix,
        pos: 0,
        file_size,
    };
    let magic = r.u32(&|| "the magic number".into())?;
    if magic != MAGIC {
        return bad(format!(
            "not a GGUF file (magic {:02x?}, expected \"GGUF\")",
            magic.to_le_bytes()
        ));
    }
    let version = r.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => return bad("GGUF version 1 (32-bit counts) is not supported; re-convert the model"),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => return bad("big-endian GGUF is not supported"),
        v => return bad(format!("unsupported GGUF version {v} (2 and 3 are)")),
    }
    let n_tensors = r.u64(&|| "the tensor count".into())?;
    let n_kv = r.u64(&|| "the metadata count".into())?;
    // Each key/value takes at least 13 bytes (key length, type, one byte), each tensor info 24.
    let least = n_kv
        .checked_mul(13)
        .zip(n_tensors.checked_mul(24))
        .and_then(|(a, b)| a.checked_add(b));
    if least.is_none_or(|b| b > r.remaining()) {
        return bad(format!(
            "{n_kv} metadata entries and {n_tensors} tensors cannot fit in the {} bytes left in the file",
            r.remaining()
        ));
    }

    if n_tensors > crate::load::safetensors::MAX_TENSORS as u64 {
        return bad(format!(
            "{n_tensors} tensors is over the limit of {}",
            crate::load::safetensors::MAX_TENSORS
        ));
    }
    let mut metadata = Vec::with_capacity(r.cap(n_kv, 13));
    let mut index = HashMap::with_capacity(r.cap(n_kv, 13));
    for i in 0..n_kv {
        let key = r.string(MAX_KEY, &|| format!("metadata key {i}"))?;
        if key.is_empty() {
            return bad(format!("metadata key {i} is empty"));
        }
        let what = || format!("metadata '{key}'");
        let ty = r.u32(&what)?;
        let value = r.value(ty, 0, &what)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return bad(format!("metadata key '{key}' appears twice"));
        }
        metadata.push((key, value));
    }

    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(MetaValue::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return bad(format!(
                "metadata 'general.alignment' must be a uint32 power of two, got {v:?}"
            ));
        }
    };

    let mut tensors = Vec::with_capacity(r.cap(n_tensors, 24));
    let mut names = HashSet::with_capacity(r.cap(n_tensors, 24));
    for i in 0..n_tensors {
        let name = r.string(MAX_TENSOR_NAME - 1, &|| format!("tensor info {i}: name"))?;
        let what = || format!("tensor '{name}'");
        if !names.insert(name.clone()) {
            return bad(format!("tensor '{name}' appears twice"));
        }
        let n_dims = r.u32(&what)?;
        if n_dims > MAX_DIMS {
            return bad(format!("tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})"));
        }
        let mut dims = Vec::with_capacity(MAX_DIMS as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&what)?);
        }
        let ty = r.u32(&what)?;
        let Some(ggml_type) = GgmlType::from_id(ty) else {
            return bad(format!("tensor '{name}' has unknown or removed ggml type {ty}"));
        };
        let offset = r.u64(&what)?;
        let elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d).filter(|&p| p <= i64::MAX as u64));
        let Some(elements) = elements else {
            return bad(format!("tensor '{name}' dimensions {dims:?} overflow"));
        };
        if dims.first().copied().unwrap_or(1) % ggml_type.block_size() != 0 {
            return bad(format!(
                "tensor '{name}': row length {} is not a multiple of {ggml_type}'s block size {}",
                dims.first().copied().unwrap_or(1),
                ggml_type.block_size()
            ));
        }
        let Some(size) = ggml_type.bytes_for(elements) else {
            return bad(format!("tensor '{name}' byte size overflows"));
        };
        if offset % alignment != 0 {
            return bad(format!(
                "tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}"
            ));
        }
        tensors.push(TensorInfo {
            name,
            ggml_type,
            dims,
            offset,
            size,
        });
    }

    let header_len = r.pos;
    let data_offset = header_len.div_ceil(alignment).saturating_mul(alignment);
    let data_len = file_size.saturating_sub(data_offset);
    for t in &mut tensors {
        if t.offset
            .checked_add(t.size)
            .is_none_or(|end| end > data_len || data_offset > file_size)
        {
            return bad(format!(
                "tensor '{}' ({} bytes at data offset {}) runs past the end of the file ({} data bytes from offset {data_offset})",
                t.name, t.size, t.offset, data_len
            ));
        }
        t.offset += data_offset;
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size > 0).collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        if w[0].offset + w[0].size > w[1].offset {
            return bad(format!(
                "tensors '{}' (bytes {}..{}) and '{}' (from byte {}) overlap",
                w[0].name,
                w[0].offset,
                w[0].offset + w[0].size,
                w[1].name,
                w[1].offset
            ));
        }
    }
    Ok(Parsed::Header(Box::new(GgufHeader {
        file: file.to_string(),
        version,
        file_size,
        alignment,
        header_len,
        data_offset,
        metadata,
        index,
        tensors,
    })))
}
