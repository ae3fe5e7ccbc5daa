// The kjarni-web benchmark, through the package's public API only (Engine.load,
// chat.completions.create, embed, stats, capabilities, profileDecodeStep). Shared by the demo's
// Benchmark tab (in the visitor's browser) and benches/dawn.mjs (node + Dawn, Chrome's WebGPU).
// Results are kjarni-bench cases (benches/harness.rs): { case, shape, variants: [{ variant,
// median_us, min_us }] } with the same case and variant names, so the two compare line by line.

/** Plain lowercase words: prompts and sentences, and the generated tokenizers' vocabulary. */
export const WORDS = (
  'the of and to a in is you that it he was for on are as with his they at be this have from or one had by word but not ' +
  'what all were we when your can said there use an each which she do how their if will up other about out many then them ' +
  'these so some her would make like him into time has look two more write go see number no way could people my than first ' +
  'water been call who oil its now find long down day did get come made may part over new sound take only little work know ' +
  'place year live me back give most very after thing our just name good sentence man think say great where help through ' +
  'much before line right too mean old any same tell boy follow came want show also around form three small set put end ' +
  'does another well large must big even such because turn here why ask went men read need land different home us move try ' +
  'kind hand picture again change off play spell air away animal house point page letter mother answer found study still ' +
  'learn should world high every near add food between own below country plant last school father keep tree never start ' +
  'city earth eye light thought head under story saw left few while along might close something seem next hard open example ' +
  'begin life always those both paper together got group often run important until children side feet car mile night walk ' +
  'white sea began grow took river four carry state once book hear stop without second later miss idea enough eat face watch ' +
  'far indian real almost let above girl sometimes mountain cut young talk soon list song being leave family music guitar dragon'
).split(' ');

/** `n` words, deterministic in `seed`. */
export function words(n, seed) {
  let s = (seed * 2654435761 + 12345) >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out.push(WORDS[s % WORDS.length]);
  }
  return out.join(' ');
}

/** The sentences of the embedding case: 32 of 12 words (~14 tokens with [CLS]/[SEP]). */
export function sentences(n = 32) {
  return Array.from({ length: n }, (_, i) => words(12, 1000 + i));
}

/** Settings: full (a real GPU) or quick (a CPU adapter such as SwiftShader). */
export function settings(quick) {
  return quick
    ? { promptTokens: 16, shortPromptWords: 4, decodeTokens: 4, runs: 1, embedRuns: 1, batch: 4, warmTokens: 2, warmMs: 0 }
    : { promptTokens: 512, shortPromptWords: 24, decodeTokens: 128, runs: 7, embedRuns: 15, batch: 32, warmTokens: 128, warmMs: 3000 };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
const round = (x, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

/** One streamed completion: time to first content, wall decode rate, the engine's timings. */
async function streamed(engine, content, maxTokens) {
  const t0 = performance.now();
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: maxTokens, temperature: 0, stream: true });
  let first = 0;
  let last = null;
  for await (const c of stream) {
    if (!first && c.choices[0].delta?.content) first = performance.now();
    if (c.choices[0].finish_reason) last = c;
  }
  const end = performance.now();
  if (!last) throw new Error('the stream ended without a final chunk');
  const n = last.usage.completion_tokens;
  return {
    prompt_tokens: last.usage.prompt_tokens,
    ttft_ms: first ? first - t0 : NaN,
    finish: last.choices[0].finish_reason,
    tokens: n,
    decode_tok_s: last.timings.decode_tokens_per_s,
    decode_tok_s_wall: first && n > 1 ? ((n - 1) * 1000) / (end - first) : NaN,
    timings: last.timings,
  };
}

/**
 * Decoder: decode tok/s (greedy, `decodeTokens` per run), time to first token (short prompt),
 * prefill tok/s (a prompt of `promptTokens` new tokens), GPU memory, and one decode step's
 * per-kernel profile. `label` suffixes the figures (kjarni-bench: the KV cache dtype, "kv_f16").
 * Resolves to { shape: {figures}, variants: [...], profile }.
 */
export async function benchDecoder(engine, { quick = false, label = 'kv_f16', log = () => {} } = {}) {
  const cfg = settings(quick);
  const shape = {};
  // Warm-up: pipelines for prefill and decode, and a whole decode run (on the H200 under Dawn the
  // first 128-token run after a load decoded at half the speed of the next ones: clocks ramping).
  // Then more whole runs until `warmMs` have passed: two runs of the same report drifted by 10–30 %
  // with a single warm-up run (GPU clocks settle over seconds, not one run).
  const warm0 = performance.now();
  do {
    await engine.chat.completions.create({ messages: [{ role: 'user', content: words(cfg.shortPromptWords, 1) }], max_tokens: cfg.warmTokens, temperature: 0 });
  } while (performance.now() - warm0 < cfg.warmMs);
  // Decode and time to first token.
  const runs = [];
  for (let r = 0; r < cfg.runs; r++) {
    const run = await streamed(engine, words(cfg.shortPromptWords, 10 + r), cfg.decodeTokens);
    log(`  decode run ${r}: ${run.tokens} tokens, ${round(run.decode_tok_s, 1)} tok/s (wall ${round(run.decode_tok_s_wall, 1)}), first token ${round(run.ttft_ms, 1)} ms, ${run.finish}`);
    runs.push(run);
  }
  const decode = median(runs.map((r) => r.decode_tok_s));
  shape[`decode_tok_s_${label}`] = round(decode, 1);
  // Best of the runs beside the median: Dawn's run-to-run spread (up to 32 % between whole
  // benchmark runs on the H100) is mostly slow runs, so the best run is the steadier figure.
  shape[`decode_tok_s_best_${label}`] = round(Math.max(...runs.map((r) => r.decode_tok_s)), 1);
  shape[`decode_tok_s_wall_${label}`] = round(median(runs.map((r) => r.decode_tok_s_wall)), 1);
  shape[`ttft_ms_${label}`] = round(median(runs.map((r) => r.ttft_ms)), 2);
  shape[`decode_tokens_${label}`] = runs[0].tokens;
  // Prefill: grow the prompt until it is `promptTokens` new tokens (the chat template and the
  // tokenizer decide how many tokens a word makes), then time it.
  // First guess: the template's tokens as the decode runs saw them, one token per word.
  const seen = runs[0].timings;
  const overhead = runs[0].prompt_tokens - seen.cached_prompt_tokens - cfg.shortPromptWords;
  let n = Math.max(1, cfg.promptTokens - Math.max(0, overhead));
  const prefill = [];
  let newTokens = 0;
  for (let i = 0; i < cfg.runs + 4 && prefill.length < cfg.runs; i++) {
    // A different first word each time (no cached prefix beyond the template's), the same
    // continuation (so the token count follows n closely).
    const content = `${words(1, 100 + i)} ${words(n - 1, 7)}`;
    const c = await engine.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: 1, temperature: 0 });
    newTokens = c.usage.prompt_tokens - c.timings.cached_prompt_tokens;
    if (newTokens === cfg.promptTokens || i >= 3) prefill.push(c.timings.prefill_tokens_per_s);
    else n += cfg.promptTokens - newTokens;
  }
  shape[`prefill_${cfg.promptTokens}_tok_s_${label}`] = round(Math.max(...prefill), 1);
  shape[`prefill_${cfg.promptTokens}_tok_s_median_${label}`] = round(median(prefill), 1);
  shape.prefill_new_tokens = newTokens;
  log(`  prefill ${newTokens} tokens: ${round(Math.max(...prefill), 1)} tok/s (best of ${prefill.length})`);
  // One decode step, per kernel.
  let profile = null;
  if (typeof engine.profileDecodeStep === 'function') {
    // A short context (~50 tokens with the template, as kjarni-bench's 48-token prompt), not the
    // 512 of the last prefill: decode attention depends on the context length.
    await engine.chat.completions.create({ messages: [{ role: 'user', content: words(cfg.shortPromptWords, 3) }], max_tokens: 1, temperature: 0 });
    profile = await engine.profileDecodeStep();
    shape.dispatches_per_token = profile.dispatches;
  }
  const st = await engine.stats();
  shape[`gpu_live_bytes_${label}`] = st.liveBytes;
  shape[`gpu_peak_bytes_${label}`] = st.peakBytes;
  const us = 1e6 / decode;
  const variants = [{ variant: `decode_${label}`, median_us: round(us), min_us: round(1e6 / Math.max(...runs.map((r) => r.decode_tok_s))) }];
  return { shape, variants, profile };
}

/** The profile as a kjarni-bench case (`profile_<decoder case>`). */
export function profileCase(caseName, profile) {
  if (!profile) return null;
  return {
    case: `profile_${caseName}`,
    shape: {
      dispatches: profile.dispatches,
      timestamps: profile.timestamps,
      quantized: profile.quantized,
      context_tokens: profile.context_tokens,
    },
    variants: [{ variant: 'decode_step_gpu_total', median_us: round(profile.total_gpu_us), min_us: round(profile.total_gpu_us) }],
    kernels: profile.kernels.map((k) => ({ label: k.label, count: k.count, gpu_us: round(k.gpu_us) })),
  };
}

/**
 * Encoder: sentence embeddings per second one at a time and in a batch (`batch` sentences,
 * 32 on a GPU). Resolves to { shape, variants } (µs per sentence).
 */
export async function benchEncoder(engine, { quick = false, log = () => {} } = {}) {
  const cfg = settings(quick);
  const list = sentences(cfg.batch);
  await engine.embed(list.slice(0, 2));
  // Warm-up for `warmMs` (GPU clocks settle over seconds; see benchDecoder).
  const warm0 = performance.now();
  do await engine.embed(list);
  while (performance.now() - warm0 < cfg.warmMs);
  const one = [];
  for (let r = 0; r < cfg.embedRuns; r++) {
    for (const s of list) {
      const t = performance.now();
      await engine.embed([s]);
      one.push(performance.now() - t);
    }
  }
  const batch = [];
  for (let r = 0; r < cfg.embedRuns; r++) {
    const t = performance.now();
    const rows = await engine.embed(list);
    batch.push(performance.now() - t);
    if (rows.length !== list.length || !rows.every((v) => v.length > 0 && v.every(Number.isFinite))) throw new Error('embed returned a wrong or non-finite result');
  }
  const us1 = median(one) * 1000;
  const usB = (median(batch) * 1000) / list.length;
  log(`  embed: ${round(1e6 / us1, 1)} sentences/s one at a time, ${round(1e6 / usB, 1)}/s in batches of ${list.length}`);
  const st = await engine.stats();
  return {
    shape: {
      sentences: list.length,
      embeddings_per_s_batch_1: round(1e6 / us1, 1),
      [`embeddings_per_s_batch_${list.length}`]: round(1e6 / usB, 1),
      gpu_live_bytes: st.liveBytes,
      gpu_peak_bytes: st.peakBytes,
    },
    variants: [
      { variant: 'embed_batch_1', median_us: round(us1), min_us: round(Math.min(...one) * 1000) },
      { variant: `embed_batch_${list.length}`, median_us: round(usB), min_us: round((Math.min(...batch) * 1000) / list.length) },
    ],
  };
}

/** Human-readable lines of a report's cases. */
export function summary(report) {
  const lines = [];
  for (const c of report.cases) {
    if (c.error) {
      lines.push(`${c.case}: FAILED ${c.error}`);
    } else if (c.kernels) {
      lines.push(`${c.case}: ${c.shape.dispatches} dispatches, GPU ${c.variants[0].median_us ?? '–'} µs${c.shape.quantized ? ' (quantised timestamps)' : ''}`);
      for (const k of c.kernels.slice(0, 8)) lines.push(`    ${String(k.gpu_us ?? '–').padStart(9)} µs  ${String(k.count).padStart(4)}×  ${k.label}`);
    } else {
      const figs = Object.entries(c.shape).filter(([k]) => /tok_s|ttft|per_s|dispatches/.test(k) && !/median|wall/.test(k));
      lines.push(`${c.case}: ${figs.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    }
  }
  return lines.join('\n');
}
