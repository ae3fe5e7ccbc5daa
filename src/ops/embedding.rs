//! Embedding lookup (`shaders/embedding.wgsl`): word embeddings from f32, f16 or
//! bf16 tables with vec4 loads, plus BERT's position and token-type embeddings in the same pass:
//! `out[t] = word[ids[t]] + pos[offset + t % seq_len] + type[type_ids[t]]`, always f32.
//!
//! Ids live in [`TokenIds`]: a GPU buffer with its host copy, so every id is checked against the
//! table sizes on the CPU before anything is dispatched (an out-of-range id is an `Error`, never a
//! clamped or out-of-bounds read).
//!
//! ```ignore
//! let ids = TokenIds::new(gpu, "input_ids", &[101, 7592, 102])?;
//! let tables = Tables { word: &w, position: Some(&p), token_type: Some(&t) };
//! embedding::record(gpu, &mut batch, &tables, &Lookup::new(&ids), &out)?;
//! ```

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Buffer, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "embedding",
    source: include_str!("../../shaders/embedding.wgsl"),
    uses_reduction: false,
};

const WG: u32 = 256;

/// Token (or token-type) ids on the GPU with their host copy.
#[derive(Debug)]
pub struct TokenIds {
    name: String,
    buffer: Buffer,
    capacity: usize,
    ids: Vec<u32>,
}

impl TokenIds {
    /// Upload `ids` into a new buffer of exactly that capacity.
    pub fn new(gpu: &Gpu, name: &str, ids: &[u32]) -> Result<Self> {
        let mut t = Self::with_capacity(gpu, name, ids.len())?;
        t.set(gpu, ids)?;
        Ok(t)
    }

    /// An empty id buffer that can hold `capacity` ids (reuse it with [`TokenIds::set`] in decode).
    pub fn with_capacity(gpu: &Gpu, name: &str, capacity: usize) -> Result<Self> {
        let bytes = (capacity.max(1) * 4) as u64;
        let buffer = gpu.create_buffer(
            name,
            bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        )?;
        Ok(TokenIds {
            name: name.to_string(),
            buffer,
            capacity,
            ids: Vec::new(),
        })
    }

    /// Replace the ids (written through the queue: record the lookup after this, then submit).
    pub fn set(&mut self, gpu: &Gpu, ids: &[u32]) -> Result<()> {
        if ids.len() > self.capacity {
            return Err(Error::Data {
                tensor: self.name.clone(),
                detail: format!("{} ids exceed the capacity of {}", ids.len(), self.capacity),
            });
        }
        if !ids.is_empty() {
            gpu.queue()
                .write_buffer(self.buffer.raw(), 0, bytemuck::cast_slice(ids));
        }
        self.ids = ids.to_vec();
        Ok(())
    }

    /// The ids as last set.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no ids.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The GPU buffer (a kernel may write ids into it: see [`record_gpu_ids`]).
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    fn check(&self, op: &'static str, table: &GpuTensor) -> Result<()> {
        let rows = table.shape().first().copied().unwrap_or(0);
        match self.ids.iter().enumerate().find(|(_, &id)| id as usize >= rows) {
            Some((i, id)) => Err(Error::BadInput {
                op,
                detail: format!(
                    "id {id} at index {i} of '{}' is out of range for '{}' with {rows} rows",
                    self.name,
                    table.name()
                ),
            }),
            None => Ok(()),
        }
    }
}

/// The embedding tables of a model, each `[rows, hidden]` in f32, f16 or bf16.
#[derive(Debug, Clone, Copy)]
pub struct Tables<'a> {
    /// Word (token) embeddings `[vocab, hidden]`.
    pub word: &'a GpuTensor,
    /// Absolute position embeddings `[max_positions, hidden]` (BERT, GPT-2).
    pub position: Option<&'a GpuTensor>,
    /// Token-type embeddings `[type_vocab, hidden]` (BERT); without type ids, type 0 is added.
    pub token_type: Option<&'a GpuTensor>,
}

/// What to look up.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// Token ids, one per output row.
    pub ids: &'a TokenIds,
    /// Token-type ids (same length), or `None` for all type 0.
    pub token_types: Option<&'a TokenIds>,
    /// Position of the first token (the number of cached tokens in decode).
    pub position_offset: usize,
    /// Tokens per sequence when `ids` holds several sequences back to back (position of token t
    /// is `position_offset + t % seq_len`); 0 means one sequence.
    pub seq_len: usize,
}

impl<'a> Lookup<'a> {
    /// One sequence starting at position 0, type 0.
    pub fn new(ids: &'a TokenIds) -> Self {
        Lookup {
            ids,
            token_types: None,
            position_offset: 0,
            seq_len: 0,
        }
    }
}

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Eight outputs per invocation with vec4 loads (needs hidden % 8 == 0).
    Vec8,
    /// One output per invocation (any hidden size; the simplest lookup, kept as the benchmark baseline).
    Scalar,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    hidden: u32,
    seq_len: u32,
    pos_offset: u32,
    id_base: u32,
    id_rows: u32,
    _pad: [u32; 2],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [n, hidden, seq_len, pos_offset, id_base, id_rows]
);

fn dt_code(op: &'static str, t: &GpuTensor) -> Result<u32> {
    t.expect_dtype(op, &[DType::F32, DType::F16, DType::BF16])?;
    Ok(match t.dtype() {
        DType::F16 => 1,
        DType::BF16 => 2,
        _ => 0,
    })
}

/// Record the lookup into `out: [ids.len(), hidden]` f32 with the fastest variant the shape allows.
pub fn record(gpu: &Gpu, batch: &mut Batch, tables: &Tables, lookup: &Lookup, out: &GpuTensor) -> Result<()> {
    let variant = if tables.word.last_dim().is_multiple_of(8) {
        Variant::Vec8
    } else {
        Variant::Scalar
    };
    record_variant(gpu, batch, tables, lookup, out, variant)
}

/// Record with an explicit variant (tests and benchmarks).
pub fn record_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    tables: &Tables,
    lookup: &Lookup,
    out: &GpuTensor,
    variant: Variant,
) -> Result<()> {
    const NAME: &str = "embedding";
    let hidden = tables.word.last_dim();
    let n = lookup.ids.len();
    let all = [Some(tables.word), tables.position, tables.token_type];
    for t in all.into_iter().flatten() {
        if t.shape().len() != 2 || t.last_dim() != hidden {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("table '{}' is {:?}, expected [rows, {hidden}]", t.name(), t.shape()),
            });
        }
    }
    out.expect_dtype(NAME, &[DType::F32])?;
    if out.shape() != [n, hidden] {
        return Err(Error::Shape {
            op: NAME,
            detail: format!("output '{}' is {:?}, expected [{n}, {hidden}]", out.name(), out.shape()),
        });
    }
    if variant == Variant::Vec8 && !hidden.is_multiple_of(8) {
        return Err(Error::Shape {
            op: NAME,
            detail: format!("the vec8 kernel needs hidden % 8 == 0, got {hidden}"),
        });
    }
    lookup.ids.check(NAME, tables.word)?;
    let seq_len = if lookup.seq_len == 0 { n.max(1) } else { lookup.seq_len };
    if let Some(pos) = tables.position {
        let last = lookup.position_offset + seq_len.min(n.max(1)) - 1;
        let rows = pos.shape()[0];
        if last >= rows {
            return Err(Error::BadInput {
                op: NAME,
                detail: format!("position {last} is out of range for '{}' with {rows} rows", pos.name()),
            });
        }
    }
    if let Some(types) = lookup.token_types {
        let Some(table) = tables.token_type else {
            return Err(Error::BadInput {
                op: NAME,
                detail: format!("token-type ids '{}' given without a token-type table", types.name()),
            });
        };
        if types.len() != n {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("{} token-type ids for {n} tokens", types.len()),
            });
        }
        types.check(NAME, table)?;
    }
    let reads: Vec<&GpuTensor> = all.into_iter().flatten().collect();
    super::checks::no_alias(NAME, &[out], &reads)?;
    to_u32(NAME, "output element count", n * hidden)?;
    for t in &reads {
        to_u32(NAME, "table element count", t.numel())?;
    }
    let params = Params {
        n: to_u32(NAME, "tokens", n)?,
        hidden: to_u32(NAME, "hidden", hidden)?,
        seq_len: to_u32(NAME, "seq_len", seq_len)?,
        pos_offset: to_u32(NAME, "position offset", lookup.position_offset)?,
        id_base: 0,
        id_rows: to_u32(NAME, "table rows", tables.word.shape()[0])?,
        _pad: [0; 2],
    };
    let word = tables.word;
    let pos = tables.position.unwrap_or(word);
    let ttype = tables.token_type.unwrap_or(word);
    let consts = [
        ("WG", Const::U32(WG)),
        ("WORD_DT", Const::U32(dt_code(NAME, word)?)),
        ("POS_DT", Const::U32(dt_code(NAME, pos)?)),
        ("TYPE_DT", Const::U32(dt_code(NAME, ttype)?)),
        ("HAS_POS", Const::Bool(tables.position.is_some())),
        ("HAS_TYPE", Const::Bool(tables.token_type.is_some())),
        ("TYPE_IDS", Const::Bool(lookup.token_types.is_some())),
    ];
    let type_ids = lookup.token_types.unwrap_or(lookup.ids);
    let (entry, invocations, views) = match variant {
        Variant::Vec8 => ("embed_vec8", n * hidden / 8, [2u32, 3, 4, 6]),
        Variant::Scalar => ("embed_scalar", n * hidden, [7u32, 8, 9, 10]),
    };
    let pipeline = gpu.pipelines().get(gpu.device(), &KERNEL, entry, None, &consts)?;
    let groups = gpu.grid(NAME, (invocations as u64).div_ceil(u64::from(WG)))?;
    let buffers = [
        (1, &lookup.ids.buffer),
        (5, &type_ids.buffer),
        (views[0], word.buffer()),
        (views[1], pos.buffer()),
        (views[2], ttype.buffer()),
        (views[3], out.buffer()),
    ];
    batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
}

/// Word-only lookup of `n` ids that a kernel wrote into `ids` (not known on the CPU, so not
/// checked there): `out[t] = word[ids[t] - id_base]` for the ids in `id_base..id_base + rows`;
/// rows of other ids are left as they are (a table held as row blocks records this once per block;
/// the sampler's "no token" id writes nothing).
pub fn record_gpu_ids(
    gpu: &Gpu,
    batch: &mut Batch,
    word: &GpuTensor,
    ids: &TokenIds,
    n: usize,
    id_base: usize,
    out: &GpuTensor,
) -> Result<()> {
    const NAME: &str = "embedding (GPU ids)";
    let hidden = word.last_dim();
    if word.shape().len() != 2 {
        return Err(Error::Shape {
            op: NAME,
            detail: format!("table '{}' is {:?}, expected [rows, hidden]", word.name(), word.shape()),
        });
    }
    if n > ids.capacity || out.shape() != [n, hidden] {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "{n} ids (capacity {}) into '{}' of {:?}, want [{n}, {hidden}]",
                ids.capacity,
                out.name(),
                out.shape()
            ),
        });
    }
    out.expect_dtype(NAME, &[DType::F32])?;
    super::checks::no_alias(NAME, &[out], &[word])?;
    to_u32(NAME, "output element count", n * hidden)?;
    to_u32(NAME, "table element count", word.numel())?;
    let params = Params {
        n: to_u32(NAME, "tokens", n)?,
        hidden: to_u32(NAME, "hidden", hidden)?,
        seq_len: to_u32(NAME, "tokens", n.max(1))?,
        pos_offset: 0,
        id_base: to_u32(NAME, "first row id", id_base)?,
        id_rows: to_u32(NAME, "table rows", word.shape()[0])?,
        _pad: [0; 2],
    };
    let dt = dt_code(NAME, word)?;
    let consts = [
        ("WG", Const::U32(WG)),
        ("WORD_DT", Const::U32(dt)),
        ("POS_DT", Const::U32(dt)),
        ("TYPE_DT", Const::U32(dt)),
        ("HAS_POS", Const::Bool(false)),
        ("HAS_TYPE", Const::Bool(false)),
        ("TYPE_IDS", Const::Bool(false)),
    ];
    let vec8 = hidden.is_multiple_of(8);
    let (entry, invocations, views) = if vec8 {
        ("embed_vec8", n * hidden / 8, [2u32, 3, 4, 6])
    } else {
        ("embed_scalar", n * hidden, [7u32, 8, 9, 10])
    };
    let pipeline = gpu.pipelines().get(gpu.device(), &KERNEL, entry, None, &consts)?;
    let groups = gpu.grid(NAME, (invocations as u64).div_ceil(u64::from(WG)))?;
    let buffers = [
        (1, &ids.buffer),
        (5, &ids.buffer),
        (views[0], word.buffer()),
        (views[1], word.buffer()),
        (views[2], word.buffer()),
        (views[3], out.buffer()),
    ];
    batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
}
