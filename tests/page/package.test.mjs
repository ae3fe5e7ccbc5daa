// The npm package (pkg/, built by scripts/build_pkg.sh) imported by a plain ES module page without
// a bundler (tests/page/fixtures/esm.html), on a tiny random Llama (tiny_model.mjs): SmolLM2 takes
// tens of seconds per token in SwiftShader, so the API mechanics are checked on the tiny model and
// the SmolLM2 fixture in chat.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pageSuite, screenshot, root } from './harness.mjs';
import { ensureTinyModel } from './tiny_model.mjs';

const suite = pageSuite(
  async () => ({
    '/': join(root, 'tests', 'page', 'fixtures'),
    '/pkg/': join(root, 'pkg'),
    '/models/': join(root, 'models'),
    '/tiny/': await ensureTinyModel(join(root, 'target', 'page-models', 'tiny-llama')),
  }),
  {
    page: true,
    ready: ({ page }) => {
      page.on('console', (m) => m.type() === 'error' && !/404/.test(m.text()) && console.log('console:', m.text()));
    },
  },
);

/** Run `fn` in the page, returning { value } or { error: { code, message, isKjarni } }. */
async function inPage(fn, arg) {
  // A string expression: evaluated by the DevTools protocol, so the page's CSP (no eval) allows it.
  return suite.page.evaluate(`(async () => {
    try {
      return { value: await (${fn.toString()})(${JSON.stringify(arg ?? null)}) };
    } catch (e) {
      return { error: { code: e.code, message: e.message, isKjarni: e instanceof window.kjarni.KjarniError } };
    }
  })()`);
}

test('a plain ESM page imports the package and runs a chat completion', { timeout: 300_000 }, async () => {
  await suite.page.goto(`${suite.server.url}esm.html?model=/tiny/&max_tokens=4`);
  await suite.page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('state').textContent), null, { timeout: 240_000 });
  const failure = await suite.page.evaluate(() => window.failure);
  assert.equal(failure, undefined, JSON.stringify(failure));
  const c = await suite.page.evaluate(() => window.completion);
  assert.equal(c.object, 'chat.completion');
  assert.equal(c.model, 'tiny');
  assert.equal(c.choices[0].message.role, 'assistant');
  assert.ok(c.choices[0].message.content.length > 0);
  assert.equal(c.choices[0].finish_reason, 'length');
  assert.equal(c.usage.completion_tokens, 4);
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + 4);
  await screenshot(suite.page, 'package-esm-page');
  // Capabilities and stats.
  const caps = await suite.page.evaluate(() => window.engine.capabilities());
  assert.ok(caps.max_workgroup_storage >= 16384 && caps.variants, JSON.stringify(caps));
  const stats = await suite.page.evaluate(() => window.engine.stats());
  assert.ok(stats.liveBuffers > 0 && stats.liveBytes > 0 && stats.wasmMemoryBytes > 0, JSON.stringify(stats));
});

test('streaming gives OpenAI chunks whose text equals the non-streaming completion', { timeout: 120_000 }, async () => {
  const r = await inPage(async () => {
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const stream = await window.engine.chat.completions.create({ messages, stream: true, max_tokens: 4, temperature: 0 });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    return { chunks, text: window.completion.choices[0].message.content };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const { chunks, text } = r.value;
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id && c.model === 'tiny'));
  const last = chunks.at(-1);
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.equal(last.usage.completion_tokens, 4);
  assert.ok(last.timings.cached_prompt_tokens > 0, 'the same prompt reuses the KV cache');
  assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
  assert.equal(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), text, 'greedy: same text streamed or not');
});

test('an AbortSignal and leaving the loop early stop a generation', { timeout: 180_000 }, async () => {
  const r = await inPage(async () => {
    const messages = [{ role: 'user', content: 'tell me a long story about a dragon' }];
    const ctl = new AbortController();
    const stream = await window.engine.chat.completions.create({ messages, stream: true, max_tokens: 500, temperature: 0, signal: ctl.signal });
    let pieces = 0;
    let last;
    for await (const c of stream) {
      if (c.choices[0].delta.content) pieces += 1;
      if (pieces === 2) ctl.abort();
      last = c;
    }
    // break out of a for-await: the generation is cancelled and the engine is free again.
    const s2 = await window.engine.chat.completions.create({ messages, stream: true, max_tokens: 500, temperature: 0 });
    for await (const c of s2) if (c.choices[0].delta.content) break;
    const t0 = performance.now();
    const next = await window.engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    return { last, pieces, next: next.choices[0].finish_reason, waitedMs: performance.now() - t0 };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.value.last.choices[0].finish_reason, 'abort');
  assert.ok(r.value.last.usage.completion_tokens < 10, `stopped after ${r.value.last.usage.completion_tokens} tokens`);
  assert.equal(r.value.next, 'length');
});

test('errors are KjarniErrors with stable codes', { timeout: 240_000 }, async () => {
  const missing = await inPage(() => window.kjarni.Engine.load('/models/no-such-model/'));
  assert.equal(missing.error?.code, 'NOT_FOUND', JSON.stringify(missing));
  assert.ok(missing.error.isKjarni);
  const aborted = await inPage(() => {
    const ctl = new AbortController();
    return window.kjarni.Engine.load('/tiny/', { signal: ctl.signal, onProgress: (p) => p.loaded > 0 && ctl.abort() });
  });
  assert.equal(aborted.error?.code, 'ABORTED', JSON.stringify(aborted));
  const gguf = await inPage(() => window.kjarni.Engine.load('/tiny/no-such-model.gguf', { cache: false }));
  assert.equal(gguf.error?.code, 'NOT_FOUND', JSON.stringify(gguf));
  const overflow = await inPage(() =>
    window.engine.chat.completions.create({ messages: [{ role: 'user', content: 'the cat '.repeat(400) }], max_tokens: 1 }),
  );
  assert.equal(overflow.error?.code, 'CONTEXT_OVERFLOW', JSON.stringify(overflow));
  const embed = await inPage(() => window.engine.embed(['a']));
  assert.equal(embed.error?.code, 'UNSUPPORTED');
  const bad = await inPage(() => window.engine.chat.completions.create({ messages: [] }));
  assert.equal(bad.error?.code, 'INVALID_ARGUMENT');
  const kv = await inPage(() => window.kjarni.Engine.load('/tiny/', { kvCache: 'int4' }));
  assert.equal(kv.error?.code, 'INVALID_ARGUMENT');
  // The engine still works after all that.
  const ok = await inPage(() => window.engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }));
  assert.equal(ok.value?.choices[0].finish_reason, 'length', JSON.stringify(ok));
});

test('Cache API: a second load downloads no weights; a memory budget fails before the download', { timeout: 300_000 }, async () => {
  // Downloads only: a cached file is revalidated with a HEAD (tests/page/cache.test.mjs).
  const weights = () => suite.server.requests.filter((r) => r.path === '/models/all-MiniLM-L6-v2/model.safetensors' && r.method !== 'HEAD');
  const load = (opts) => inPage(async (o) => {
    const e = await window.kjarni.Engine.load('/models/all-MiniLM-L6-v2/', o);
    const stats = await e.stats();
    await e.dispose();
    return stats;
  }, opts);
  const first = await load({ cache: 'kjarni-test-cache' });
  assert.equal(first.error, undefined, JSON.stringify(first.error));
  const afterFirst = weights().length;
  assert.ok(weights().some((r) => r.status === 200), `the first load downloads the file: ${JSON.stringify(weights())}`);
  const second = await load({ cache: 'kjarni-test-cache' });
  assert.equal(second.error, undefined, JSON.stringify(second.error));
  assert.equal(weights().length, afterFirst, `no request for the weights on the second load: ${JSON.stringify(weights().slice(afterFirst))}`);
  // The estimate reads config.json and the safetensors header only, then refuses.
  const before = weights().length;
  const tooBig = await load({ cache: false, memoryBudget: 1_000_000 });
  assert.equal(tooBig.error?.code, 'MODEL_TOO_LARGE', JSON.stringify(tooBig));
  assert.match(tooBig.error.message, /memory budget/);
  const reads = weights().slice(before);
  assert.ok(reads.every((r) => /^bytes=\d+-\d+$/.test(r.range ?? '')), `only bounded header reads: ${JSON.stringify(reads)}`);
});

test('a .gguf URL is a whole model: SmolLM2 Q4_1 loads with its tokenizer and chat template', { timeout: 300_000 }, async () => {
  const r = await inPage(async () => {
    const e = await window.kjarni.Engine.load('/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf', { cache: false, maxContext: 256 });
    const info = e.info;
    const stats = await e.stats();
    await e.dispose();
    return { info, stats };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const c = r.value.info.config;
  assert.equal(c.kind, 'decoder');
  assert.equal(c.layers, 30);
  assert.equal(c.vocab_size, 49152);
  assert.ok(c.chat_templates.length > 0, JSON.stringify(c));
  // Q4_1 blocks stay as stored: far less GPU memory than the 269 MB of bf16 weights.
  assert.ok(r.value.stats.liveBytes < 200e6, JSON.stringify(r.value.stats));
});

test('100 consecutive generations: GPU buffers and wasm memory do not grow', { timeout: 300_000 }, async () => {
  const r = await inPage(async () => {
    const e = window.engine;
    const run = () => e.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    for (let i = 0; i < 3; i++) await run();
    const before = await e.stats();
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) await run();
    const ms = performance.now() - t0;
    return { before, after: await e.stats(), ms };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const { before, after: a, ms } = r.value;
  console.log(`100 generations in ${(ms / 1000).toFixed(1)} s; before ${JSON.stringify(before)}; after ${JSON.stringify(a)}`);
  assert.equal(a.liveBuffers, before.liveBuffers, 'live GPU buffers');
  assert.equal(a.liveBytes, before.liveBytes, 'live GPU bytes');
  assert.equal(a.wasmMemoryBytes, before.wasmMemoryBytes, 'wasm memory');
});

test('device loss is reported as DEVICE_LOST; a new engine works; dispose frees the GPU memory', { timeout: 240_000 }, async () => {
  const r = await inPage(async () => {
    const { Engine } = window.kjarni;
    const e = window.engine;
    await e._loseDevice();
    let lost;
    try {
      await e.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    } catch (err) {
      lost = err.code;
    }
    const lostStats = await e.stats();
    await e.dispose();
    const fresh = await Engine.load('/tiny/', { kvCache: 'int8' });
    const c = await fresh.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    const live = await fresh.stats();
    await fresh.dispose();
    const disposed = await fresh.stats();
    let afterDispose;
    try {
      await fresh.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }] });
    } catch (err) {
      afterDispose = err.code;
    }
    return { lost, lostStats, finish: c.choices[0].finish_reason, kv: fresh.info.config.kv_cache, live, disposed, afterDispose };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const v = r.value;
  assert.equal(v.lost, 'DEVICE_LOST');
  assert.equal(v.lostStats.deviceLost, true);
  assert.equal(v.finish, 'length');
  assert.equal(v.kv, 'int8');
  assert.ok(v.live.liveBuffers > 0);
  assert.equal(v.disposed.liveBuffers, 0, 'dispose drops every counted buffer');
  assert.equal(v.disposed.liveBytes, 0);
  assert.equal(v.afterDispose, 'DISPOSED');
});

test('the same API in a Web Worker (worker: true)', { timeout: 240_000 }, async () => {
  const r = await inPage(async () => {
    const { Engine } = window.kjarni;
    let progressed = 0;
    const w = await Engine.load('/tiny/', { worker: true, onProgress: () => progressed++ });
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const c = await w.chat.completions.create({ messages, max_tokens: 4, temperature: 0 });
    const ctl = new AbortController();
    const stream = await w.chat.completions.create({ messages, stream: true, max_tokens: 500, temperature: 0, signal: ctl.signal });
    let text = '';
    let last;
    for await (const ch of stream) {
      text += ch.choices[0].delta.content ?? '';
      if (text) ctl.abort();
      last = ch;
    }
    const stats = await w.stats();
    const caps = w.capabilities();
    await w.dispose();
    return { kind: w.constructor.name, progressed, text: c.choices[0].message.content, finish: last.choices[0].finish_reason, stats, caps: !!caps.variants };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const v = r.value;
  assert.equal(v.kind, 'WorkerEngine');
  assert.ok(v.progressed > 0);
  const main = await suite.page.evaluate(() => window.completion.choices[0].message.content);
  assert.equal(v.text, main, 'the worker computes the same greedy completion');
  assert.equal(v.finish, 'abort');
  assert.ok(v.stats.liveBuffers > 0 && v.caps);
  assert.deepEqual(suite.errors, []);
});
