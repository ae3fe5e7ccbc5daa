//! Token sampling on the GPU (`shaders/sample.wgsl`; CPU reference `src/cpu/sample.rs`): greedy,
//! temperature, top-k, top-p, min-p and the CTRL repetition penalty, with a counter-based RNG in
//! u32 arithmetic (same seed, same ids natively and in the browser), and an optional logit mask
//! (the hook for structured output).
//!
//! The chosen id is written on the GPU into a token-id buffer (the one the next decode step's
//! embedding lookup reads) and marked in the sampler's `seen` bitmask (the context of the
//! repetition penalty, filled from the prompt by [`GpuSampler::start`]). Nothing is read back
//! here: the caller copies the id into a small staging buffer when it wants to see it.
//!
//! Greedy and plain temperature sampling are two dispatches (a multi-workgroup partial argmax +
//! one small final pass; temperature by the Gumbel-max trick). Top-k / top-p / min-p draws are
//! two dispatches too: each workgroup keeps its 2048-token chunk's local top candidates
//! (`topk_partial`) and one workgroup filters and draws among them. With `top_k` in
//! 1..=[`K_MAX`] (`topk_final`) the global top-k is inside the candidates. Otherwise (top-p /
//! min-p only, or `top_k` > [`K_MAX`]; `topp_final`) every chunk keeps [`K_MAX`] candidates and
//! reports the largest key it dropped, T: every token ranked above T is a candidate, and each
//! step of the draw (the k-th key, Z, each Gumbel draw, each rejection mass) is taken from the
//! candidates only where they provably hold every token it depends on — for the first draw, where
//! the best candidate's score beats a bound on every dropped token's score — and from a scan of
//! the whole vocabulary inside the same dispatch otherwise (a flat distribution whose nucleus
//! runs below T). Either way the ids are bit-identical to the single-workgroup kernel's
//! (`sample_filtered`, which scans the whole vocabulary a few times; the same WGSL functions):
//! the same tokens enter every sum in the same per-lane order and the same tree. See the shader
//! for the argument.
//!
//! ```ignore
//! let mut s = GpuSampler::new(gpu, vocab)?;
//! s.start(gpu, &SamplingParams { temperature: 0.7, top_p: 0.9, seed: 1, ..Default::default() }, &prompt)?;
//! s.record(gpu, &mut batch, &logits, ids.buffer(), 0)?;
//! ```

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::generate::SamplingParams;
use crate::gpu::{Batch, Buffer, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "sample",
    source: include_str!("../../shaders/sample.wgsl"),
    uses_reduction: false,
};

/// Invocations per workgroup (also the radix-select histogram size: must stay 256).
const WG: u32 = 256;
/// Tokens per invocation in the partial argmax: a workgroup covers 4096 tokens.
const PER: u32 = 16;

/// Tokens per invocation in `topk_partial`: a workgroup's chunk is 2048 tokens.
const CPER: u32 = 8;
/// Tokens per `topk_partial` workgroup.
pub const CHUNK: usize = (WG * CPER) as usize;
/// Header words per chunk in `partials` (`HDR` in the shader).
const HDR: usize = 8;
/// The largest `top_k` of the two-stage path: the survivors live in `topk_final`'s workgroup
/// memory, one per invocation (5 arrays of 256 words + the histogram: ~7 KiB of the 16 KiB every
/// WebGPU adapter offers; no f16 needed).
pub const K_MAX: u32 = WG;

/// The id written when no token is valid (all NaN or masked out).
pub const NONE: u32 = u32::MAX;

/// Which kernel path the parameters select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Argmax (temperature ≤ 0 or not finite).
    Greedy,
    /// Softmax(l / T) over the whole vocabulary (Gumbel-max): no top-k / top-p / min-p.
    Temperature,
    /// Top-k, top-p and / or min-p in force.
    Filtered,
}

/// Which kernel does a [`Mode::Filtered`] draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilteredPath {
    /// Two-stage (the default; the same ids as the single workgroup).
    #[default]
    Auto,
    /// Always `sample_filtered` (one workgroup over the whole vocabulary).
    SingleWorkgroup,
    /// `topk_partial` + `topk_final` when `top_k` is in 1..=[`K_MAX`], else `topk_partial` +
    /// `topp_final` (greedy and temperature draws keep their argmax).
    TwoStage,
}

/// Sampling parameters as the kernels apply them (out-of-range values made harmless).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    /// The path.
    pub mode: Mode,
    /// Temperature (> 0 and finite unless greedy).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: u32,
    /// 1 = off (NaN → 1).
    pub top_p: f32,
    /// In [0, 1]; 0 = off.
    pub min_p: f32,
    /// The repetition penalty when it applies (finite, > 0, ≠ 1).
    pub penalty: Option<f32>,
    /// Low and high words of the seed.
    pub seed: (u32, u32),
}

/// How the kernels read `params` for a vocabulary of `vocab` tokens.
pub fn resolve(params: &SamplingParams, vocab: usize) -> Resolved {
    let t = params.temperature;
    let sampling = t > 0.0 && t.is_finite();
    let top_k = u32::try_from(params.top_k).unwrap_or(u32::MAX);
    let top_p = if params.top_p.is_nan() || params.top_p >= 1.0 {
        1.0
    } else {
        params.top_p
    };
    let min_p = if params.min_p.is_nan() || params.min_p <= 0.0 {
        0.0
    } else {
        params.min_p.min(1.0)
    };
    let filtered = (top_k > 0 && (top_k as usize) < vocab) || top_p < 1.0 || min_p > 0.0;
    let r = params.repetition_penalty;
    Resolved {
        mode: match (sampling, filtered) {
            (false, _) => Mode::Greedy,
            (true, false) => Mode::Temperature,
            (true, true) => Mode::Filtered,
        },
        temperature: if sampling { t } else { 0.0 },
        top_k,
        top_p,
        min_p,
        penalty: (r.is_finite() && r > 0.0 && r != 1.0).then_some(r),
        seed: (params.seed as u32, (params.seed >> 32) as u32),
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    vocab: u32,
    mode: u32,
    groups: u32,
    use_mask: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    out_index: u32,
    use_penalty: u32,
    cand_k: u32,
    tail_stats: u32,
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [
        vocab,
        mode,
        groups,
        use_mask,
        temperature,
        top_k,
        top_p,
        min_p,
        penalty,
        seed_lo,
        seed_hi,
        step,
        out_index,
        use_penalty,
        cand_k,
        tail_stats
    ]
);

/// Sampling state on the GPU for one vocabulary size: the context bitmask, the logit mask and
/// the partial-argmax scratch. Reused across generations ([`GpuSampler::start`] resets it).
#[derive(Debug)]
pub struct GpuSampler {
    vocab: usize,
    groups: usize,
    topk_groups: usize,
    partials: GpuTensor,
    path: FilteredPath,
    seen: GpuTensor,
    mask: GpuTensor,
    masked: bool,
    params: Resolved,
    step: u32,
}

fn words(vocab: usize) -> usize {
    vocab.div_ceil(32).max(1)
}

impl GpuSampler {
    /// Buffers for a vocabulary of `vocab` tokens (greedy, no context, until `start`).
    pub fn new(gpu: &Gpu, vocab: usize) -> Result<Self> {
        const OP: &str = "GpuSampler::new";
        if vocab == 0 || vocab >= 1 << 24 {
            return Err(Error::Shape {
                op: OP,
                detail: format!("vocabulary of {vocab} tokens (1 to 2^24 - 1 supported)"),
            });
        }
        let groups = vocab.div_ceil((WG * PER) as usize);
        let topk_groups = vocab.div_ceil(CHUNK);
        // Argmax: (value, index) per group; two-stage: an 8-word header, K_MAX (logit, index)
        // pairs and a word per lane per chunk (262,144 tokens: 388 KiB), and a diagnostics word.
        let words_needed = (groups * 2).max(topk_groups * (HDR + 2 * K_MAX as usize + WG as usize) + 1);
        let w = words(vocab);
        Ok(GpuSampler {
            vocab,
            groups,
            topk_groups,
            partials: GpuTensor::zeros(gpu, "sample.partials", &[words_needed], DType::U32)?,
            path: FilteredPath::Auto,
            seen: GpuTensor::zeros(gpu, "sample.seen", &[w], DType::U32)?,
            mask: GpuTensor::zeros(gpu, "sample.mask", &[w], DType::U32)?,
            masked: false,
            params: resolve(&SamplingParams::default(), vocab),
            step: 0,
        })
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The parameters in force.
    pub fn params(&self) -> &Resolved {
        &self.params
    }

    /// Choose the kernel of filtered draws (default [`FilteredPath::Auto`]; the others are for
    /// tests and benchmarks).
    pub fn set_filtered_path(&mut self, path: FilteredPath) {
        self.path = path;
    }

    /// Whether the next draw takes a two-stage path (a filtered draw, not forced to the single
    /// workgroup).
    pub fn two_stage(&self) -> bool {
        self.params.mode == Mode::Filtered && self.path != FilteredPath::SingleWorkgroup
    }

    /// Whether the next draw takes the two-stage top-k path (`topk_final`; else `topp_final`).
    pub fn top_k_path(&self) -> bool {
        self.two_stage() && (1..=K_MAX).contains(&self.params.top_k)
    }

    /// Whole-vocabulary scans the last `topp_final` draw needed (0: all from the candidates);
    /// a diagnostic for tests (reads the scratch buffer back; call after the submit).
    pub async fn last_full_scans(&self, gpu: &Gpu) -> Result<u32> {
        let words = self.partials.to_u32_vec(gpu).await?;
        let at = self.topk_groups * (HDR + 2 * K_MAX as usize + WG as usize);
        words.get(at).copied().ok_or_else(|| Error::Shape {
            op: "GpuSampler::last_full_scans",
            detail: format!("scratch of {} words", words.len()),
        })
    }

    /// Draws recorded since `start` (the RNG counter of the next one).
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Begin a generation: `params`, the RNG counter at 0, and the repetition-penalty context set
    /// to `context` (ids outside the vocabulary are ignored, as the CPU sampler does). Written
    /// through the queue: submit after this.
    pub fn start(&mut self, gpu: &Gpu, params: &SamplingParams, context: &[u32]) -> Result<()> {
        self.params = resolve(params, self.vocab);
        self.step = 0;
        let mut bits = vec![0u32; words(self.vocab)];
        for &t in context {
            if (t as usize) < self.vocab {
                bits[t as usize / 32] |= 1 << (t % 32);
            }
        }
        gpu.queue()
            .write_buffer(self.seen.buffer().raw(), 0, bytemuck::cast_slice(&bits));
        Ok(())
    }

    /// Set (bit `i % 32` of word `i / 32` set = token `i` allowed) or clear the logit mask for
    /// the draws recorded from now on (written through the queue: it applies to every draw of
    /// later submissions, so a caller changing it per token keeps one step in flight).
    pub fn set_mask(&mut self, gpu: &Gpu, mask: Option<&[u32]>) -> Result<()> {
        match mask {
            None => self.masked = false,
            Some(m) => {
                if m.len() != words(self.vocab) {
                    return Err(Error::Shape {
                        op: "GpuSampler::set_mask",
                        detail: format!(
                            "{} mask words for a vocabulary of {} (want {})",
                            m.len(),
                            self.vocab,
                            words(self.vocab)
                        ),
                    });
                }
                gpu.queue()
                    .write_buffer(self.mask.buffer().raw(), 0, bytemuck::cast_slice(m));
                self.masked = true;
            }
        }
        Ok(())
    }

    /// Dispatches one draw records with the current parameters.
    pub fn dispatches(&self) -> usize {
        match self.params.mode {
            Mode::Filtered if !self.two_stage() => 1,
            _ => 2,
        }
    }

    /// Record one draw from `logits` (f32, the last `vocab` values… exactly `vocab` of them):
    /// the id goes to `out[index]` (u32 words) and into the context. Advances the RNG counter.
    pub fn record(
        &mut self,
        gpu: &Gpu,
        batch: &mut Batch,
        logits: &GpuTensor,
        out: &Buffer,
        index: usize,
    ) -> Result<()> {
        const OP: &str = "sample";
        logits.expect_dtype(OP, &[DType::F32])?;
        if logits.numel() != self.vocab {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "'{}' has {} logits, the sampler {} tokens",
                    logits.name(),
                    logits.numel(),
                    self.vocab
                ),
            });
        }
        if (index as u64 + 1) * 4 > out.size() {
            return Err(Error::Shape {
                op: OP,
                detail: format!("id slot {index} is outside a {}-byte buffer", out.size()),
            });
        }
        let two_stage = self.two_stage();
        let top_k_path = self.top_k_path();
        let r = &self.params;
        let params = Params {
            vocab: to_u32(OP, "vocabulary", self.vocab)?,
            mode: match r.mode {
                Mode::Greedy => 0,
                Mode::Temperature => 1,
                Mode::Filtered => 2,
            },
            groups: to_u32(OP, "groups", if two_stage { self.topk_groups } else { self.groups })?,
            use_mask: u32::from(self.masked),
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
            min_p: r.min_p,
            penalty: r.penalty.unwrap_or(1.0),
            seed_lo: r.seed.0,
            seed_hi: r.seed.1,
            step: self.step,
            out_index: to_u32(OP, "id slot", index)?,
            use_penalty: u32::from(r.penalty.is_some()),
            cand_k: if top_k_path { r.top_k } else { K_MAX },
            tail_stats: u32::from(two_stage && !top_k_path),
        };
        let consts = [
            ("WG", Const::U32(WG)),
            ("PER", Const::U32(PER)),
            ("CPER", Const::U32(CPER)),
        ];
        let get = |entry| gpu.pipelines().get(gpu.device(), &KERNEL, entry, None, &consts);
        if two_stage {
            let partial = get("topk_partial")?;
            let bufs = [
                (1, logits.buffer()),
                (2, self.seen.buffer()),
                (3, self.mask.buffer()),
                (4, self.partials.buffer()),
            ];
            let grid = gpu.grid(OP, self.topk_groups as u64)?;
            batch.dispatch(gpu, &partial, &params, &bufs, grid)?;
            let fin = get(if top_k_path { "topk_final" } else { "topp_final" })?;
            let bufs = [
                (1, logits.buffer()),
                (2, self.seen.buffer()),
                (3, self.mask.buffer()),
                (4, self.partials.buffer()),
                (5, out),
            ];
            batch.dispatch(gpu, &fin, &params, &bufs, [1, 1, 1])?;
        } else if r.mode == Mode::Filtered {
            let pipe = get("sample_filtered")?;
            let bufs = [
                (1, logits.buffer()),
                (2, self.seen.buffer()),
                (3, self.mask.buffer()),
                (4, self.partials.buffer()),
                (5, out),
            ];
            batch.dispatch(gpu, &pipe, &params, &bufs, [1, 1, 1])?;
        } else {
            let partial = get("argmax_partial")?;
            let bufs = [
                (1, logits.buffer()),
                (2, self.seen.buffer()),
                (3, self.mask.buffer()),
                (4, self.partials.buffer()),
            ];
            batch.dispatch(gpu, &partial, &params, &bufs, gpu.grid(OP, self.groups as u64)?)?;
            let fin = get("argmax_final")?;
            let bufs = [(2, self.seen.buffer()), (4, self.partials.buffer()), (5, out)];
            batch.dispatch(gpu, &fin, &params, &bufs, [1, 1, 1])?;
        }
        self.step = self.step.wrapping_add(1);
        Ok(())
    }
}
