//! Generation helpers independent of the model: sampling, stop conditions, streaming text with
//! correct handling of partial UTF-8, cancellation.
//!
//! The model produces logits for the last position; [`Sampler`] picks the next token;
//! [`TextStream`] turns the growing token list into text deltas (holding back incomplete UTF-8
//! sequences and possible stop-string prefixes); [`CancelToken`] is checked between tokens.

use crate::error::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to pick tokens. Defaults: greedy (temperature 0), no penalties.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 = greedy (argmax); otherwise logits are divided by it before softmax.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = off).
    pub top_p: f32,
    /// Drop tokens whose probability is below min_p × the top probability (0 = off).
    pub min_p: f32,
    /// CTRL-style penalty on tokens already in the context (1.0 = off): positive logits are
    /// divided by it, negative ones multiplied.
    pub repetition_penalty: f32,
    /// Seed of the random generator (same seed, same logits → same tokens).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// A token sampler with its own deterministic random stream (splitmix64).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    state: u64,
}

impl Sampler {
    /// A sampler for `params`.
    pub fn new(params: SamplingParams) -> Self {
        let state = params.seed ^ 0x9E37_79B9_7F4A_7C15;
        Sampler { params, state }
    }

    fn next_f64(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Pick the next token from `logits` (modified in place by the penalty), given the tokens
    /// already in the context. Returns `None` only for empty or all-NaN logits.
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32]) -> Option<u32> {
        let p = &self.params;
        if p.repetition_penalty != 1.0 && p.repetition_penalty > 0.0 {
            let mut seen = std::collections::HashSet::new();
            for &t in context {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repetition_penalty
                        } else {
                            *l * p.repetition_penalty
                        };
                    }
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        // Candidates sorted by logit, highest first.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return None;
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let t = f64::from(p.temperature);
        let max = f64::from(cand[0].1);
        let mut probs: Vec<f64> = cand.iter().map(|&(_, l)| ((f64::from(l) - max) / t).exp()).collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= sum);
        let mut keep = probs.len();
        if p.min_p > 0.0 {
            let floor = f64::from(p.min_p) * probs[0];
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut n = 0;
            for &q in &probs[..keep] {
                acc += q;
                n += 1;
                if acc >= f64::from(p.top_p) {
                    break;
                }
            }
            keep = n.max(1);
        }
        let total: f64 = probs[..keep].iter().sum();
        let mut r = self.next_f64() * total;
        for (i, &q) in probs[..keep].iter().enumerate() {
            if r < q {
                return Some(cand[i].0);
            }
            r -= q;
        }
        Some(cand[keep - 1].0)
    }
}

/// Index of the largest logit (first on ties; NaN ignored).
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// A cancellation flag shared between the caller and a running operation (a generation checks it
/// between tokens, a load between chunks). Cheap to clone; all clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the generation to stop after the current token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed)
    }
    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// Turns generated token ids into text deltas.
///
/// Decoding token by token breaks multi-byte characters split over tokens (byte-level BPE), and
/// tokenizers that merge spaces need context; so the stream re-decodes a short window and emits
/// only text that is complete (no trailing U+FFFD) and cannot be the start of a stop string.
pub struct TextStream<D> {
    decode: D,
    tokens: Vec<u32>,
    prefix: usize,
    read: usize,
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl<D: FnMut(&[u32]) -> Result<String>> TextStream<D> {
    /// A stream decoding with `decode` (ids → text, special tokens skipped) and stopping at any
    /// of `stops` (the stop string itself is not emitted).
    pub fn new(decode: D, stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        TextStream {
            decode,
            tokens: Vec::new(),
            prefix: 0,
            read: 0,
            stops,
            pending: String::new(),
            stopped: false,
        }
    }

    /// Add a token; returns the text that can be shown now (possibly empty) and whether a stop
    /// string was reached.
    pub fn push(&mut self, token: u32) -> Result<(String, bool)> {
        if self.stopped {
            return Ok((String::new(), true));
        }
        self.tokens.push(token);
        let before = (self.decode)(&self.tokens[self.prefix..self.read])?;
        let now = (self.decode)(&self.tokens[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            let delta = now.get(before.len()..).unwrap_or_default().to_string();
            self.prefix = self.read;
            self.read = self.tokens.len();
            self.pending.push_str(&delta);
        }
        Ok(self.release())
    }

    /// End of generation: whatever is held back (except a matched stop string) is released.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.pending)
    }

    fn release(&mut self) -> (String, bool) {
        for s in &self.stops {
            if let Some(at) = self.pending.find(s.as_str()) {
                let out = self.pending[..at].to_string();
                self.pending.clear();
                self.stopped = true;
                return (out, true);
            }
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let mut hold = 0;
        for s in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let tail = &self.pending[i..];
                if s.starts_with(tail) {
                    hold = hold.max(tail.len());
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// All tokens pushed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// A decoder driven from the GPU: every call records and submits work without waiting; the
/// sampled ids stay on the GPU (each step's embedding reads the previous step's id) and are only
/// copied into the caller's 4-byte staging buffers, which [`generate`] reads asynchronously.
pub trait CausalLm {
    /// Run `prompt` (after the cached tokens, or reusing a cached prefix where the
    /// implementation does) and sample the first new token on the GPU with `sampling` (the
    /// repetition penalty's context is the prompt, then every sampled id); copy the id into `out`.
    fn submit_prompt(
        &mut self,
        gpu: &crate::gpu::Gpu,
        prompt: &[u32],
        sampling: &SamplingParams,
        out: &crate::gpu::Buffer,
    ) -> Result<()>;
    /// One decode step fed by the id the previous step sampled; the next id is copied into `out`.
    fn submit_step(&mut self, gpu: &crate::gpu::Gpu, out: &crate::gpu::Buffer) -> Result<()>;
    /// `outs.len()` decode steps, each fed by the id the one before sampled, submitted together
    /// (one submission: the per-submit costs paid once); step i's id is copied into `outs[i]`.
    /// The default submits them one by one.
    fn submit_steps(&mut self, gpu: &crate::gpu::Gpu, outs: &[&crate::gpu::Buffer]) -> Result<()> {
        for out in outs {
            self.submit_step(gpu, out)?;
        }
        Ok(())
    }
    /// Set (bit `i % 32` of word `i / 32` set = token `i` allowed) or clear the logit mask
    /// applied before sampling in the steps submitted from now on.
    fn set_logit_mask(&mut self, gpu: &crate::gpu::Gpu, mask: Option<&[u32]>) -> Result<()>;
    /// End of a generation that accepted `accepted`: the cache keeps the prompt and the accepted
    /// tokens that were fed to a step; whatever was computed past the end is dropped.
    fn finish(&mut self, accepted: &[u32]) -> Result<()>;
    /// Ids that end a generation.
    fn eos_ids(&self) -> Vec<u32>;
    /// Tokens that still fit in the cache (after the steps already submitted).
    fn context_left(&self) -> usize;
    /// Called as each sampled id arrives on the CPU (timing hooks).
    fn on_token(&mut self) {}
    /// Masked generation runs a step in two halves, so that the GPU computes the next step's
    /// layers while the CPU reads the previous id back and computes the mask: this half records
    /// and submits the layers of a step fed by the id the previous step sampled (on the GPU), up
    /// to its logits, without sampling; [`CausalLm::submit_sample`] finishes it. `Ok(false)`: the
    /// model runs a step only whole (the driver then uses [`CausalLm::submit_step`]).
    fn submit_logits(&mut self, _gpu: &crate::gpu::Gpu) -> Result<bool> {
        Ok(false)
    }
    /// The sampling half of the step [`CausalLm::submit_logits`] began (with the logit mask set
    /// since); the id is copied into `out`.
    fn submit_sample(&mut self, _gpu: &crate::gpu::Gpu, _out: &crate::gpu::Buffer) -> Result<()> {
        Err(crate::Error::Internal("submit_sample without submit_logits".into()))
    }
}

/// Steps in flight when [`GenerateOptions::steps_in_flight`] is 0.
pub const DEFAULT_STEPS_IN_FLIGHT: usize = 3;

/// Decode steps per submission when [`GenerateOptions::steps_per_submit`] is 0.
pub const DEFAULT_STEPS_PER_SUBMIT: usize = 1;

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Sampling.
    pub sampling: SamplingParams,
    /// At most this many new tokens (0: until the context is full).
    pub max_tokens: usize,
    /// Stop strings (not included in the output).
    pub stop: Vec<String>,
    /// Extra stop token ids besides the model's EOS ids.
    pub stop_token_ids: Vec<u32>,
    /// Do not stop at the model's EOS ids (benchmarks).
    pub ignore_eos: bool,
    /// Decode steps submitted ahead of the id being read (0: [`DEFAULT_STEPS_IN_FLIGHT`];
    /// 1: none ahead). Tokens computed past a stop are discarded.
    pub steps_in_flight: usize,
    /// Decode steps recorded into one submission (0: [`DEFAULT_STEPS_PER_SUBMIT`]; at most
    /// `steps_in_flight`, 1 with a logit mask). Ids arrive in groups of this many: per-submit
    /// costs (command buffer, uniform upload, fence) are paid once a group.
    pub steps_per_submit: usize,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text (stop string excluded).
    pub text: String,
    /// The generated token ids (EOS excluded).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Prefill `prompt`, then sample until EOS, a stop string, `max_tokens`, the context's end or
/// cancellation, streaming text deltas to `on_text`. A prompt that does not fit the context is
/// an error ([`crate::Error::ContextFull`]) before any work.
///
/// Sampling runs on the GPU and each step's id feeds the next step there; this loop keeps
/// [`GenerateOptions::steps_in_flight`] steps submitted and reads the ids back through a small
/// ring of staging buffers as they arrive, applying stops, `max_tokens` and cancellation to each
/// in order. Steps computed past the end are waited for and dropped from the KV cache; their
/// tokens are never streamed.
pub async fn generate<M: CausalLm>(
    model: &mut M,
    gpu: &crate::gpu::Gpu,
    decode: impl FnMut(&[u32]) -> Result<String>,
    prompt: &[u32],
    opts: &GenerateOptions,
    cancel: &CancelToken,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    generate_masked(model, gpu, decode, prompt, opts, cancel, on_text, None).await
}

/// The per-token logit mask of [`generate_masked`]: tokens so far → allowed-token bitmask.
pub type LogitMask<'a> = dyn FnMut(&[u32]) -> Result<Vec<u32>> + 'a;

/// [`generate`] with a per-token logit mask: `mask(tokens so far)` gives the allowed-token
/// bitmask (bit `i % 32` of word `i / 32`, `ceil(vocab / 32)` words) of the next token. The
/// mask depends on the previous token, so one id is in flight at a time; where the model splits
/// a step ([`CausalLm::submit_logits`]), the next step's layers are submitted before the
/// previous id is read, and only its sampling waits for the mask.
#[allow(clippy::too_many_arguments)]
pub async fn generate_masked<M: CausalLm>(
    model: &mut M,
    gpu: &crate::gpu::Gpu,
    decode: impl FnMut(&[u32]) -> Result<String>,
    prompt: &[u32],
    opts: &GenerateOptions,
    cancel: &CancelToken,
    on_text: &mut dyn FnMut(&str),
    mut mask: Option<&mut LogitMask<'_>>,
) -> Result<Generation> {
    if prompt.len() > model.context_left() {
        return Err(crate::Error::ContextFull {
            cache: "kv_cache".into(),
            len: 0,
            adding: prompt.len(),
            max: model.context_left(),
        });
    }
    crate::api::check_sampling(&opts.sampling)?;
    crate::api::check_stops(&opts.stop)?;
    let depth = match (mask.is_some(), opts.steps_in_flight) {
        (true, _) => 1,
        (false, 0) => DEFAULT_STEPS_IN_FLIGHT,
        (false, n) => n.min(16),
    };
    let per_submit = match (mask.is_some(), opts.steps_per_submit) {
        (true, _) => 1,
        (false, 0) => DEFAULT_STEPS_PER_SUBMIT,
        (false, n) => n,
    }
    .clamp(1, depth);
    let mut ring = crate::gpu::readback::IdRing::new(gpu, depth)?;
    let mut stops = if opts.ignore_eos { Vec::new() } else { model.eos_ids() };
    stops.extend(&opts.stop_token_ids);
    let mut stream = TextStream::new(decode, opts.stop.clone());
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut inflight = std::collections::VecDeque::new();
    let mut emit = |delta: &str, text: &mut String| {
        if !delta.is_empty() {
            on_text(delta);
            text.push_str(delta);
        }
    };
    let run = async {
        let first = match mask.as_mut() {
            Some(f) => Some(f(&[])?),
            None => None,
        };
        model.set_logit_mask(gpu, first.as_deref())?;
        model.submit_prompt(gpu, prompt, &opts.sampling, ring.buffer(0)?)?;
        ring.start(gpu, 0)?;
        inflight.push_back(0usize);
        let mut next_slot = 1 % depth;
        let mut sampled = 1usize;
        // Masked: the layers of the next step were submitted (`submit_logits`); its sampling not yet.
        let mut logits_pending = false;
        loop {
            // Keep `depth` steps submitted: each is fed by the previous one's id on the GPU. A
            // step is worth submitting only while its token could still be accepted (a step whose
            // layers are submitted already holds its place in the cache).
            while mask.is_none() && per_submit > 1 {
                // Steps in groups: a group is submitted whole once there is room for it (or when
                // fewer steps than a group are still allowed).
                let budget = if opts.max_tokens == 0 {
                    usize::MAX
                } else {
                    opts.max_tokens.saturating_sub(sampled)
                };
                let group = per_submit.min(budget).min(model.context_left());
                if group == 0 || inflight.len() + group > depth {
                    break;
                }
                let slots: Vec<usize> = (0..group).map(|i| (next_slot + i) % depth).collect();
                {
                    let outs = slots.iter().map(|&k| ring.buffer(k)).collect::<Result<Vec<_>>>()?;
                    model.submit_steps(gpu, &outs)?;
                }
                for &k in &slots {
                    ring.start(gpu, k)?;
                    inflight.push_back(k);
                }
                next_slot = (next_slot + group) % depth;
                sampled += group;
            }
            while (mask.is_some() || per_submit == 1)
                && inflight.len() < depth
                && (opts.max_tokens == 0 || sampled < opts.max_tokens)
                && (logits_pending || model.context_left() > 0)
            {
                if let Some(f) = mask.as_mut() {
                    let m = f(&tokens)?;
                    model.set_logit_mask(gpu, Some(&m))?;
                }
                if logits_pending {
                    model.submit_sample(gpu, ring.buffer(next_slot)?)?;
                    logits_pending = false;
                } else {
                    model.submit_step(gpu, ring.buffer(next_slot)?)?;
                }
                ring.start(gpu, next_slot)?;
                inflight.push_back(next_slot);
                next_slot = (next_slot + 1) % depth;
                sampled += 1;
            }
            let Some(k) = inflight.pop_front() else {
                return Ok(FinishReason::Length);
            };
            // Masked: the next step's layers need only the id on the GPU, not its mask — let the
            // GPU run them while this id travels back and the next mask is computed.
            if mask.is_some() && (opts.max_tokens == 0 || sampled < opts.max_tokens) && model.context_left() > 0 {
                logits_pending = model.submit_logits(gpu)?;
            }
            let id = ring.read(gpu, k).await?;
            model.on_token();
            if cancel.is_cancelled() {
                return Ok(FinishReason::Cancelled);
            }
            if id == crate::ops::sample::NONE {
                // The sampler found no finite logit (or the constraint allowed none): report it
                // rather than end as if the model had stopped.
                return Err(crate::Error::Data {
                    tensor: "logits".into(),
                    detail: format!(
                        "step {}: no token could be sampled (every logit NaN or infinite{})",
                        tokens.len(),
                        if mask.is_some() {
                            ", or masked out by the output constraint"
                        } else {
                            ""
                        }
                    ),
                });
            }
            if stops.contains(&id) {
                return Ok(FinishReason::Stop);
            }
            tokens.push(id);
            let (delta, stopped) = stream.push(id)?;
            emit(&delta, &mut text);
            if stopped {
                return Ok(FinishReason::Stop);
            }
            if opts.max_tokens > 0 && tokens.len() >= opts.max_tokens {
                return Ok(FinishReason::Length);
            }
        }
    };
    let finish: Result<FinishReason> = run.await;
    // Wait for the steps still in flight (their ids are dropped), then cut the cache back.
    let mut drained = Ok(());
    for k in inflight {
        if let Err(e) = ring.read(gpu, k).await {
            drained = Err(e);
        }
    }
    let finished = model.finish(&tokens);
    let finish = finish?;
    drained?;
    finished?;
    let rest = stream.finish();
    emit(&rest, &mut text);
    Ok(Generation { text, tokens, finish })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_and_penalty_changes_it() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9], &[]), Some(1));
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 1.2,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.9], &[1, 1]), Some(2));
        assert_eq!(argmax(&[f32::NAN, -1.0, -2.0]), Some(1));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn sampling_respects_top_k_top_p_min_p_and_seed() {
        let logits = [5.0f32, 4.0, 1.0, 0.5, -3.0];
        let draw = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..400)
                .map(|_| s.sample(&mut logits.clone(), &[]).unwrap_or(99))
                .collect::<Vec<_>>()
        };
        let base = SamplingParams {
            temperature: 1.0,
            seed: 7,
            ..Default::default()
        };
        let k2 = draw(SamplingParams {
            top_k: 2,
            ..base.clone()
        });
        assert!(k2.iter().all(|&t| t < 2) && k2.contains(&1));
        let p = draw(SamplingParams {
            top_p: 0.5,
            ..base.clone()
        });
        assert!(p.iter().all(|&t| t == 0), "top-p 0.5 keeps only the top token (p≈0.72)");
        let m = draw(SamplingParams {
            min_p: 0.2,
            ..base.clone()
        });
        assert!(m.iter().all(|&t| t < 2) && m.contains(&1));
        let all = draw(base.clone());
        assert!(all.contains(&2), "plain sampling reaches the tail");
        assert_eq!(all, draw(base.clone()), "same seed, same tokens");
        assert_ne!(all, draw(SamplingParams { seed: 8, ..base }));
    }

    fn bytes_decoder(vocab: Vec<&'static [u8]>) -> impl FnMut(&[u32]) -> Result<String> {
        move |ids: &[u32]| {
            let bytes: Vec<u8> = ids.iter().flat_map(|&i| vocab[i as usize].iter().copied()).collect();
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    #[test]
    fn stream_holds_back_partial_utf8() {
        // "é" = C3 A9 split over two tokens, then "!".
        let mut ts = TextStream::new(bytes_decoder(vec![b"caf", b"\xC3", b"\xA9", b"!"]), vec![]);
        assert_eq!(ts.push(0).unwrap(), ("caf".into(), false));
        assert_eq!(ts.push(1).unwrap(), ("".into(), false));
        assert_eq!(ts.push(2).unwrap(), ("é".into(), false));
        assert_eq!(ts.push(3).unwrap(), ("!".into(), false));
        assert_eq!(ts.finish(), "");
    }

    #[test]
    fn stream_stops_on_stop_strings_across_tokens() {
        let mut ts = TextStream::new(
            bytes_decoder(vec![b"Hello", b" wor", b"ld", b"\nUs", b"er:"]),
            vec!["\nUser:".into()],
        );
        assert_eq!(ts.push(0).unwrap(), ("Hello".into(), false));
        assert_eq!(ts.push(1).unwrap(), (" wor".into(), false));
        assert_eq!(ts.push(2).unwrap(), ("ld".into(), false));
        assert_eq!(
            ts.push(3).unwrap(),
            ("".into(), false),
            "possible stop prefix held back"
        );
        assert_eq!(ts.push(4).unwrap(), ("".into(), true));
        assert_eq!(ts.finish(), "");
        let mut ts = TextStream::new(bytes_decoder(vec![b"a\nU", b"p"]), vec!["\nUser:".into()]);
        assert_eq!(ts.push(0).unwrap(), ("a".into(), false));
        assert_eq!(
            ts.push(1).unwrap(),
            ("\nUp".into(), false),
            "released once it cannot match"
        );
    }

    #[test]
    fn cancel_token_is_shared() {
        let c = CancelToken::new();
        let c2 = c.clone();
        c2.cancel();
        assert!(c.is_cancelled());
    }
}
