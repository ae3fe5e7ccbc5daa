// Unhappy paths of the npm package in Chromium (issue 19): a panic fails every pending call with
// INTERNAL (page thread and worker), dispose() of a stuck worker, a stalled server (idle timeout,
// AbortSignal reaching the network), INVALID_ARGUMENT from the JS and the Rust layer. Each page
// gets a fresh wasm instance (a panic leaves its instance unusable).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pageSuite, root } from './harness.mjs';
import { ensureTinyModel } from './tiny_model.mjs';

const suite = pageSuite(async () => ({
  '/': join(root, 'tests', 'page', 'fixtures'),
  '/pkg/': join(root, 'pkg'),
  '/tiny/': await ensureTinyModel(join(root, 'target', 'page-models', 'tiny-llama')),
}));
let stall;
const stalled = [];

before(async () => {
  // Answers every request with headers and the first bytes of its body, then nothing.
  stall = createServer((req, res) => {
    stalled.push(req.url);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100000', 'access-control-allow-origin': '*' });
    res.write('{"model_type": "llama", ');
  });
  await new Promise((ok) => stall.listen(0, '127.0.0.1', ok));
});

after(async () => {
  stall?.closeAllConnections?.();
  await new Promise((ok) => stall?.close(ok));
});

/** A fresh page with the package; runs `fn(arg)` in it: { value } or { error: { code, field, message } }. */
async function inFreshPage(fn, arg) {
  const page = await suite.browser.newPage();
  try {
    await page.goto(`${suite.server.url}harden.html`);
    await page.waitForFunction(() => document.title === 'ready', null, { timeout: 60_000 });
    return await page.evaluate(`(async () => {
      try {
        return { value: await (${fn.toString()})(${JSON.stringify(arg ?? null)}) };
      } catch (e) {
        return { error: { code: e.code, field: e.field, message: e.message } };
      }
    })()`);
  } finally {
    await page.close();
  }
}

const settle = (p) => p.then((v) => ({ ok: v }), (e) => ({ code: e.code, message: e.message }));

test('a panic rejects every pending call with INTERNAL, in the page and in a worker', { timeout: 300_000 }, async () => {
  const r = await inFreshPage(async () => {
    const { Engine, _panic } = window.kjarni;
    const settle = (p) => p.then((v) => ({ ok: v }), (e) => ({ code: e.code, message: e.message }));
    const messages = [{ role: 'user', content: 'hi' }];
    // Worker first (its own wasm instance), then the page thread's.
    const w = await Engine.load('/tiny/', { worker: true });
    const wPending = settle(w.chat.completions.create({ messages, max_tokens: 2000 }));
    await new Promise((ok) => setTimeout(ok, 300));
    const wPanic = await settle(w._panic());
    const wGen = await wPending;
    const wAfter = await settle(w.chat.completions.create({ messages, max_tokens: 1 }));
    await w.dispose();
    const e = await Engine.load('/tiny/');
    const pending = settle(e.chat.completions.create({ messages, max_tokens: 2000 }));
    await new Promise((ok) => setTimeout(ok, 300));
    const panic = await settle(_panic());
    const gen = await pending;
    const after = await settle(e.chat.completions.create({ messages, max_tokens: 1 }));
    await e.dispose();
    return { wPanic, wGen, wAfter, panic, gen, after };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  for (const [k, v] of Object.entries(r.value)) {
    assert.equal(v.code, 'INTERNAL', `${k}: ${JSON.stringify(v)}`);
  }
  assert.match(r.value.gen.message, /debugPanic/);
});

test('dispose() terminates a worker stuck in a synchronous step after its timeout', { timeout: 240_000 }, async () => {
  const r = await inFreshPage(async () => {
    const w = await window.kjarni.Engine.load('/tiny/', { worker: true });
    const stuck = w._block(60_000).then(() => 'finished', (e) => e.code);
    await new Promise((ok) => setTimeout(ok, 200));
    const t0 = performance.now();
    await w.dispose({ timeoutMs: 1000 });
    const ms = performance.now() - t0;
    return { ms, stuck: await stuck };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.ok(r.value.ms < 5000, `dispose took ${r.value.ms} ms`);
  assert.equal(r.value.stuck, 'DISPOSED');
});

test('a stalled server: the idle timeout fails the load (NETWORK); an AbortSignal reaches the network', { timeout: 120_000 }, async () => {
  const url = `http://127.0.0.1:${stall.address().port}/model/`;
  const r = await inFreshPage(async (url) => {
    const { Engine } = window.kjarni;
    const settle = (p) => p.then(() => ({ ok: true }), (e) => ({ code: e.code, message: e.message }));
    let t0 = performance.now();
    const idle = await settle(Engine.load(url, { cache: false, idleTimeoutMs: 1500 }));
    const idleMs = performance.now() - t0;
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 500);
    t0 = performance.now();
    const aborted = await settle(Engine.load(url, { cache: false, signal: ctl.signal }));
    const abortMs = performance.now() - t0;
    return { idle, idleMs, aborted, abortMs };
  }, url);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const v = r.value;
  assert.equal(v.idle.code, 'NETWORK', JSON.stringify(v.idle));
  assert.match(v.idle.message, /stalled/);
  assert.ok(v.idleMs < 10_000, `idle timeout after ${v.idleMs} ms`);
  assert.equal(v.aborted.code, 'ABORTED', JSON.stringify(v.aborted));
  assert.ok(v.abortMs < 5_000, `abort after ${v.abortMs} ms`);
  assert.ok(stalled.length >= 2);
});

test('bad requests are INVALID_ARGUMENT naming the field, from the JS API and from the Rust JSON layer', { timeout: 240_000 }, async () => {
  const r = await inFreshPage(async () => {
    const { Engine } = window.kjarni;
    const settle = (p) => p.then(() => ({ ok: true }), (e) => ({ code: e.code, field: e.field, message: e.message }));
    const e = await Engine.load('/tiny/', { maxContext: 64 });
    const user = [{ role: 'user', content: 'hi' }];
    const js = {
      empty: await settle(e.chat.completions.create({ messages: [] })),
      role: await settle(e.chat.completions.create({ messages: [{ role: 'wizard', content: 'x' }] })),
      zero: await settle(e.chat.completions.create({ messages: user, max_tokens: 0 })),
      beyond: await settle(e.chat.completions.create({ messages: user, max_tokens: 65 })),
      seed: await settle(e.chat.completions.create({ messages: user, seed: 2 ** 53 })),
    };
    const surrogate = await e.chat.completions.create({ messages: [{ role: 'user', content: 'a\uD800' }], max_tokens: 1 });
    await e.dispose();
    // The Rust layer on its own (kjarni-web/raw).
    const w = new window.raw.WasmEngine();
    await w.load(new URL('/tiny/', location.href).href, JSON.stringify({ maxContext: 64 }), null);
    const rs = {};
    for (const [k, body] of Object.entries({
      role: { messages: [{ role: 'wizard', content: 'x' }] },
      zero: { messages: user, max_tokens: 0 },
      beyond: { messages: user, max_tokens: 65 },
      nan: { messages: user, temperature: 'NaN' },
      stop: { messages: user, stop: [''] },
    })) {
      rs[k] = await settle(w.generate(JSON.stringify(body), () => {}));
    }
    rs.lone = await settle(w.generate('{"messages":[{"role":"user","content":"\\ud800"}]}', () => {}));
    w.dispose();
    w.free();
    return { js, rs, surrogate: surrogate.choices[0].finish_reason };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const { js, rs, surrogate } = r.value;
  const want = { empty: 'messages', role: 'messages[0].role', zero: 'max_tokens', beyond: 'max_tokens', seed: 'seed' };
  for (const [k, field] of Object.entries(want)) {
    assert.equal(js[k].code, 'INVALID_ARGUMENT', `${k}: ${JSON.stringify(js[k])}`);
    assert.equal(js[k].field, field, k);
  }
  const rwant = { role: 'messages[0].role', zero: 'max_tokens', beyond: 'max_tokens', nan: 'temperature', stop: 'stop[0]', lone: 'request' };
  for (const [k, field] of Object.entries(rwant)) {
    assert.equal(rs[k].code, 'INVALID_ARGUMENT', `${k}: ${JSON.stringify(rs[k])}`);
    assert.ok(rs[k].message.startsWith(field), `${k}: ${rs[k].message}`);
  }
  assert.equal(surrogate, 'length', 'a lone surrogate is repaired, not refused, by the JS API');
});
