//! The decode driver (issue #14 items 2–3): the old loop (forward, whole-vocabulary logits
//! readback, CPU sampler, one submit + one wait per token) beside `generate` (sampling on the
//! GPU, the id fed to the next step on the GPU, N steps in flight, 4-byte id readbacks), same
//! model, same run; plus the cost of temperature / top-p / top-k sampling on the GPU.
//!
//! Cases `decode_driver_<model>`; filter `decode_driver`. Tokens/s of decode: ids after the first
//! over the time between the first id's arrival and the last's (prefill excluded).

use crate::harness::{Args, Report, Timing};
use crate::models::{synthetic, synthetic_gguf, MODELS};
use kjarni_web::generate::{generate, CancelToken, CausalLm, GenerateOptions, Sampler, SamplingParams};
use kjarni_web::gpu::Buffer;
use kjarni_web::models::llama::{Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::{Gpu, Result};
use serde_json::json;
use std::time::Instant;

/// The model with a clock on each arriving id and on the host side of each decode step.
struct Timed<'a> {
    lm: &'a mut Llama,
    arrivals: Vec<Instant>,
    /// Seconds spent in each `submit_step` (recording the step and submitting it).
    host: Vec<f64>,
}

impl CausalLm for Timed<'_> {
    fn submit_prompt(&mut self, gpu: &Gpu, prompt: &[u32], sampling: &SamplingParams, out: &Buffer) -> Result<()> {
        self.lm.submit_prompt(gpu, prompt, sampling, out)
    }
    fn submit_step(&mut self, gpu: &Gpu, out: &Buffer) -> Result<()> {
        let t0 = Instant::now();
        let r = self.lm.submit_step(gpu, out);
        self.host.push(t0.elapsed().as_secs_f64());
        r
    }
    fn submit_steps(&mut self, gpu: &Gpu, outs: &[&Buffer]) -> Result<()> {
        let t0 = Instant::now();
        let r = self.lm.submit_decode_many(gpu, outs);
        // Host time per step of the group.
        let per = t0.elapsed().as_secs_f64() / outs.len().max(1) as f64;
        self.host.extend(std::iter::repeat_n(per, outs.len()));
        r
    }
    fn submit_logits(&mut self, gpu: &Gpu) -> Result<bool> {
        self.lm.submit_logits(gpu)
    }
    fn submit_sample(&mut self, gpu: &Gpu, out: &Buffer) -> Result<()> {
        self.lm.submit_sample(gpu, out)
    }
    fn set_logit_mask(&mut self, gpu: &Gpu, mask: Option<&[u32]>) -> Result<()> {
        CausalLm::set_logit_mask(self.lm, gpu, mask)
    }
    fn finish(&mut self, accepted: &[u32]) -> Result<()> {
        CausalLm::finish(self.lm, accepted)
    }
    fn eos_ids(&self) -> Vec<u32> {
        Vec::new()
    }
    fn context_left(&self) -> usize {
        CausalLm::context_left(&*self.lm)
    }
    fn on_token(&mut self) {
        self.arrivals.push(Instant::now());
    }
}

fn prompt() -> Vec<u32> {
    (0..32).map(|i| (i * 7 % 1000) as u32).collect()
}

/// Seconds per decoded token through `generate`.
async fn new_path(gpu: &Gpu, m: &mut Llama, steps: usize, depth: usize, sampling: SamplingParams) -> Result<f64> {
    Ok(timed_generate(gpu, m, &prompt(), steps, depth, sampling)
        .await?
        .per_token)
}

/// What [`timed_generate`] measured.
pub(crate) struct Generated {
    /// Seconds from the call to the first id (prefill of the prompt and the first sample).
    pub first: f64,
    /// Seconds per decoded token after the first id.
    pub per_token: f64,
    /// Median seconds the host spent recording and submitting one decode step
    /// (`CausalLm::submit_step`).
    pub host_per_step: f64,
}

/// `generate` as the public API runs it (GPU sampling, `depth` steps in flight, 0: the default)
/// after `m.reset()`.
pub(crate) async fn timed_generate(
    gpu: &Gpu,
    m: &mut Llama,
    prompt: &[u32],
    steps: usize,
    depth: usize,
    sampling: SamplingParams,
) -> Result<Generated> {
    timed_generate_grouped(gpu, m, prompt, steps, depth, 0, sampling).await
}

/// [`timed_generate`] with `per_submit` decode steps per submission (0: the default).
pub(crate) async fn timed_generate_grouped(
    gpu: &Gpu,
    m: &mut Llama,
    prompt: &[u32],
    steps: usize,
    depth: usize,
    per_submit: usize,
    sampling: SamplingParams,
) -> Result<Generated> {
    m.reset();
    let mut t = Timed {
        lm: m,
        arrivals: Vec::new(),
        host: Vec::new(),
    };
    let opts = GenerateOptions {
        sampling,
        max_tokens: steps + 1,
        ignore_eos: true,
        steps_in_flight: depth,
        steps_per_submit: per_submit,
        ..Default::default()
    };
    let t0 = Instant::now();
    let g = generate(
        &mut t,
        gpu,
        |_: &[u32]| Ok(String::new()),
        prompt,
        &opts,
        &CancelToken::new(),
        &mut |_| {},
    )
    .await?;
    let n = g.tokens.len().min(t.arrivals.len());
    let first = t
        .arrivals
        .first()
        .map_or(f64::NAN, |a| a.duration_since(t0).as_secs_f64());
    let per_token = match (t.arrivals.first(), t.arrivals.get(n.saturating_sub(1))) {
        (Some(a), Some(b)) if n > 1 => b.duration_since(*a).as_secs_f64() / (n - 1) as f64,
        _ => f64::NAN,
    };
    t.host.sort_by(f64::total_cmp);
    let host_per_step = t.host.get(t.host.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(Generated {
        first,
        per_token,
        host_per_step,
    })
}

/// Seconds per decoded token the old way: forward, read every logit back, sample on the CPU.
async fn old_path(gpu: &Gpu, m: &mut Llama, steps: usize, sampling: SamplingParams) -> Result<f64> {
    m.reset();
    let mut sampler = Sampler::new(sampling);
    let mut context = prompt();
    let mut logits = m.forward(gpu, &context).await?;
    let mut tok = sampler.sample(&mut logits, &context).unwrap_or(0);
    let t0 = Instant::now();
    for _ in 0..steps {
        context.push(tok);
        let mut logits = m.forward(gpu, &[tok]).await?;
        tok = sampler.sample(&mut logits, &context).unwrap_or(0);
    }
    Ok(t0.elapsed().as_secs_f64() / steps as f64)
}

async fn one_model(gpu: &Gpu, args: &Args, report: &mut Report, case: &str, m: &mut Llama, bytes: u64) -> Result<()> {
    let steps = if args.quick { 8 } else { 256 };
    let greedy = SamplingParams::default();
    let temp = SamplingParams {
        temperature: 0.7,
        seed: 1,
        ..Default::default()
    };
    let top_p = SamplingParams {
        top_p: 0.9,
        ..temp.clone()
    };
    let all = SamplingParams {
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        repetition_penalty: 1.1,
        ..temp.clone()
    };
    // Warm every pipeline once.
    old_path(gpu, m, 2, greedy.clone()).await?;
    new_path(gpu, m, 2, 2, all.clone()).await?;
    new_path(gpu, m, 2, 2, temp.clone()).await?;
    let mut timings = Vec::new();
    let mut extra = serde_json::Map::new();
    let mut add = |name: String, per: f64, timings: &mut Vec<Timing>| {
        extra.insert(format!("tok_s_{name}"), json!((1.0 / per).round()));
        timings.push(Timing {
            name,
            median_us: per * 1e6,
            min_us: per * 1e6,
        });
    };
    add(
        "old_greedy_logits_readback_cpu_argmax".into(),
        old_path(gpu, m, steps, greedy.clone()).await?,
        &mut timings,
    );
    add(
        "old_top_p_0.9_cpu_sampler".into(),
        old_path(gpu, m, steps, top_p.clone()).await?,
        &mut timings,
    );
    let old_disp = m.dispatches_per_token();
    let mut host_us = f64::NAN;
    for depth in [1, 2, 3, 4, 6] {
        let g = timed_generate(gpu, m, &prompt(), steps, depth, greedy.clone()).await?;
        if depth == 3 {
            host_us = g.host_per_step * 1e6;
        }
        add(format!("new_greedy_gpu_in_flight_{depth}"), g.per_token, &mut timings);
    }
    // Several steps per submission (the per-submit costs paid once a group).
    for (depth, per_submit) in [(4, 2), (6, 3), (8, 4)] {
        let g = timed_generate_grouped(gpu, m, &prompt(), steps, depth, per_submit, greedy.clone()).await?;
        add(
            format!("new_greedy_gpu_in_flight_{depth}_per_submit_{per_submit}"),
            g.per_token,
            &mut timings,
        );
    }
    let new_disp = m.dispatches_per_token();
    add(
        "new_temperature_0.7_gpu_in_flight_3".into(),
        new_path(gpu, m, steps, 3, temp).await?,
        &mut timings,
    );
    add(
        "new_top_p_0.9_gpu_in_flight_3".into(),
        new_path(gpu, m, steps, 3, top_p).await?,
        &mut timings,
    );
    let filtered_disp = {
        let per = new_path(gpu, m, steps, 3, all).await?;
        add(
            "new_top_k_40_top_p_0.9_min_p_penalty_gpu_in_flight_3".into(),
            per,
            &mut timings,
        );
        m.dispatches_per_token()
    };
    // The host side of one step (record + submit, median): above the GPU's step time, decode is
    // CPU-bound.
    extra.insert(
        "host_us_per_step_record_submit_greedy_in_flight_3".into(),
        json!((host_us * 10.0).round() / 10.0),
    );
    extra.insert("dispatches_per_token_old".into(), json!(old_disp));
    extra.insert("dispatches_per_token_new_greedy".into(), json!(new_disp));
    extra.insert("dispatches_per_token_new_top_k_top_p".into(), json!(filtered_disp));
    extra.insert("vocab".into(), json!(m.config().vocab_size));
    extra.insert("weight_bytes".into(), json!(bytes));
    report.add(
        case,
        serde_json::Value::Object(extra),
        bytes as f64,
        0.0,
        "old_greedy_logits_readback_cpu_argmax",
        &timings,
    );
    Ok(())
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let opts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 1024,
    };
    let case = "decode_driver_smollm2_135m_bf16";
    if args.wants(case) {
        let (src, bytes) = synthetic(&MODELS[0]);
        let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
        one_model(gpu, args, report, case, &mut m, bytes).await?;
    }
    let case = "decode_driver_smollm2_135m_q4_1_gguf";
    if args.wants(case) {
        let (src, bytes) = synthetic_gguf(&MODELS[0]);
        let mut m = Llama::load_gguf(gpu, &src, "model.gguf", &opts, &mut |_| {}).await?;
        one_model(gpu, args, report, case, &mut m, bytes).await?;
    }
    let case = "decode_driver_qwen2.5_0.5b_bf16";
    if args.wants(case) {
        let (src, bytes) = synthetic(&MODELS[1]);
        let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
        one_model(gpu, args, report, case, &mut m, bytes).await?;
    }
    Ok(())
}
