//! GPU-driven decoding of a [`Llama`]: a step is recorded and submitted without waiting; the
//! head's logits are sampled on the GPU ([`crate::ops::sample`]) into a one-id buffer that the
//! next step's embedding lookup reads, and copied into a caller's 4-byte staging buffer. The CPU
//! never sees the logits and never waits between steps; the generation driver
//! ([`crate::generate::generate`]) keeps a few steps in flight and reads the ids as they arrive.
//!
//! Bookkeeping: the KV caches advance when a step is recorded (positions are known on the CPU:
//! one token a step); the ids of GPU-fed tokens are unknown here until the driver hands back the
//! accepted ones in [`Llama::finish_generation`], which also drops the tokens computed past a stop.

use super::{Embedding, Llama, Scratch};
use crate::error::{Error, Result};
use crate::generate::SamplingParams;
use crate::gpu::{Batch, Buffer, Gpu};
use crate::ops::embedding::{self, Lookup, Tables, TokenIds};
use crate::ops::sample::GpuSampler;

/// What a recorded step reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// Ids known on the CPU (a prompt, or a token of the logits path).
    Ids(&'a [u32]),
    /// One token: the id the previous step sampled, read on the GPU.
    Sampled,
}

impl Input<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Input::Ids(ids) => ids.len(),
            Input::Sampled => 1,
        }
    }
}

/// The GPU-side state of generation.
pub(crate) struct StepState {
    /// The sampled id (written by the sampler, read by the next step's embedding lookup).
    ids: TokenIds,
    /// Created on first use (its size is the logits').
    sampler: Option<GpuSampler>,
    /// Cached tokens when the generation's first id was sampled.
    gen_start: usize,
    /// Decode steps submitted since (each fed one generated token).
    fed: usize,
}

impl StepState {
    pub(crate) fn new(gpu: &Gpu) -> Result<Self> {
        Ok(StepState {
            ids: TokenIds::with_capacity(gpu, "sampled_id", 1)?,
            sampler: None,
            gen_start: 0,
            fed: 0,
        })
    }
}

impl Llama {
    /// The embedding lookup of a step into `s.x`.
    pub(super) fn record_embedding(&self, gpu: &Gpu, b: &mut Batch, s: &mut Scratch, input: Input<'_>) -> Result<()> {
        let (ids, n) = match input {
            Input::Ids(ids) => {
                s.ids.set(gpu, ids)?;
                if let Embedding::Table(word) = &self.embed {
                    let tables = Tables {
                        word,
                        position: None,
                        token_type: None,
                    };
                    return embedding::record(gpu, b, &tables, &Lookup::new(&s.ids), &s.x);
                }
                let rows: usize = match &self.embed {
                    Embedding::Rows(parts) => parts.iter().map(|p| p.rows()).sum(),
                    Embedding::Table(_) => 0,
                };
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= rows) {
                    return Err(Error::BadInput {
                        op: "Llama::forward",
                        detail: format!("token id {id} is outside the embedding table"),
                    });
                }
                (&s.ids, ids.len())
            }
            Input::Sampled => (&self.step.ids, 1),
        };
        match &self.embed {
            Embedding::Table(word) => embedding::record_gpu_ids(gpu, b, word, ids, n, 0, &s.x),
            Embedding::Rows(parts) => {
                // One gather per row block; each writes the rows of the ids that fall in it.
                let mut base = 0;
                for part in parts {
                    embedding::record_gpu_ids(gpu, b, part, ids, n, base, &s.x)?;
                    base += part.rows();
                }
                Ok(())
            }
        }
    }

    fn sampler(&mut self, gpu: &Gpu) -> Result<&mut GpuSampler> {
        let vocab = self.logits.numel();
        let fresh = self.step.sampler.as_ref().is_none_or(|s| s.vocab() != vocab);
        if fresh {
            self.step.sampler = Some(GpuSampler::new(gpu, vocab)?);
        }
        self.step
            .sampler
            .as_mut()
            .ok_or_else(|| Error::Internal("sampler missing".into()))
    }

    /// Start a generation: run `ids` after the cached tokens, sample the next token on the GPU
    /// with `params` (the repetition penalty's context is `context`, usually the whole prompt)
    /// into the sampled-id slot and `out` (4 bytes, COPY_DST); submit without waiting.
    pub fn submit_prefill(
        &mut self,
        gpu: &Gpu,
        ids: &[u32],
        context: &[u32],
        params: &SamplingParams,
        out: &Buffer,
    ) -> Result<()> {
        // Should recording fail, `finish_generation` keeps the cache as it is.
        self.step.fed = 0;
        self.step.gen_start = self.cached_tokens();
        let mut b = gpu.batch();
        self.record(gpu, &mut b, Input::Ids(ids))?;
        self.step.gen_start = self.cached_tokens();
        self.sampler(gpu)?.start(gpu, params, context)?;
        self.record_sample(gpu, &mut b, out)?;
        gpu.submit(b)
    }

    /// One decode step fed by the id the previous step sampled (it stays on the GPU); the next
    /// id goes to the slot and `out`. Submits without waiting; the KV length advances by one.
    pub fn submit_decode(&mut self, gpu: &Gpu, out: &Buffer) -> Result<()> {
        let mut b = gpu.batch();
        self.record_decode_layers(gpu, &mut b, "Llama::submit_decode")?;
        self.record_sample(gpu, &mut b, out)?;
        self.dispatches_last_decode = b.dispatches();
        gpu.submit(b)
    }

    /// `outs.len()` decode steps in one submission, each fed by the id the one before sampled
    /// (on the GPU); step i's id goes to the slot and `outs[i]`. The KV length advances by
    /// `outs.len()`.
    pub fn submit_decode_many(&mut self, gpu: &Gpu, outs: &[&Buffer]) -> Result<()> {
        let mut b = gpu.batch();
        for out in outs {
            self.record_decode_layers(gpu, &mut b, "Llama::submit_decode_many")?;
            self.record_sample(gpu, &mut b, out)?;
        }
        self.dispatches_last_decode = b.dispatches() / outs.len().max(1);
        gpu.submit(b)
    }

    /// The first half of a decode step (masked generation): the layers fed by the id the previous
    /// step sampled, up to the logits, submitted without sampling; the KV length advances by one.
    /// [`Llama::submit_decode_sample`] finishes the step once the mask is set.
    pub fn submit_decode_logits(&mut self, gpu: &Gpu) -> Result<()> {
        let mut b = gpu.batch();
        self.record_decode_layers(gpu, &mut b, "Llama::submit_decode_logits")?;
        self.dispatches_last_decode = b.dispatches();
        gpu.submit(b)
    }

    /// The second half of a step [`Llama::submit_decode_logits`] began: sample its logits (with
    /// the logit mask as set now) into the sampled-id slot and `out`; submits without waiting.
    pub fn submit_decode_sample(&mut self, gpu: &Gpu, out: &Buffer) -> Result<()> {
        let mut b = gpu.batch();
        self.record_sample(gpu, &mut b, out)?;
        self.dispatches_last_decode += b.dispatches();
        gpu.submit(b)
    }

    /// The layers of a decode step fed by the sampled id (a generation must have started).
    fn record_decode_layers(&mut self, gpu: &Gpu, b: &mut Batch, op: &'static str) -> Result<()> {
        if self.step.sampler.is_none() {
            return Err(Error::BadInput {
                op,
                detail: "no generation started (submit_prefill first)".into(),
            });
        }
        self.record(gpu, b, Input::Sampled)?;
        self.step.fed += 1;
        Ok(())
    }

    /// Sample the logits into the sampled-id slot and copy the id into `out`.
    fn record_sample(&mut self, gpu: &Gpu, b: &mut Batch, out: &Buffer) -> Result<()> {
        let sampler = self.step.sampler.as_mut().ok_or_else(|| Error::BadInput {
            op: "Llama::submit_decode_sample",
            detail: "no generation started (submit_prefill first)".into(),
        })?;
        sampler.record(gpu, b, &self.logits, self.step.ids.buffer(), 0)?;
        b.copy(self.step.ids.buffer(), 0, out, 0, 4);
        Ok(())
    }

    /// Set (bit `i % 32` of word `i / 32` = token `i` allowed) or clear the logit mask of the
    /// steps submitted from now on.
    pub fn set_logit_mask(&mut self, gpu: &Gpu, mask: Option<&[u32]>) -> Result<()> {
        self.sampler(gpu)?.set_mask(gpu, mask)
    }

    /// End a generation whose driver accepted `accepted` (in order): the cache keeps the prompt
    /// and the accepted tokens that were fed to a step; tokens computed past the end are dropped.
    pub fn finish_generation(&mut self, accepted: &[u32]) -> Result<()> {
        let keep = self.step.fed.min(accepted.len());
        let n = (self.step.gen_start + keep).min(self.cached_tokens());
        self.truncate(n)?;
        let start = self.step.gen_start.min(n);
        self.tokens[start..n].copy_from_slice(&accepted[..n - start]);
        self.step.fed = 0;
        Ok(())
    }
}
