// The Cache API copy of a model (issue 19, item 4): revalidated once per load, so a model
// changed on the server is seen on the next load and its cached files are never mixed with the
// new ones; offline, the cached copy still loads; a full storage quota is reported once per
// load (onProgress + info.cache), not retried as a failing write on every load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pageSuite, root } from './harness.mjs';
import { ensureTinyModel } from './tiny_model.mjs';

const FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'];
const work = join(root, 'target', 'page-models', 'cache-versions');
const live = join(work, 'live');
const v2 = join(work, 'v2');
let tiny;

/** The tiny model with every lm_head weight negated: same size, other greedy text. */
async function writeV2(dir) {
  await mkdir(dir, { recursive: true });
  for (const f of FILES) await copyFile(join(tiny, f), join(dir, f));
  const buf = await readFile(join(tiny, 'model.safetensors'));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString());
  const [a, e] = header['lm_head.weight'].data_offsets;
  for (let i = 8 + n + a; i < 8 + n + e; i += 4) buf.writeFloatLE(-buf.readFloatLE(i), i);
  await writeFile(join(dir, 'model.safetensors'), buf);
}

const suite = pageSuite(async () => {
  tiny = await ensureTinyModel(join(root, 'target', 'page-models', 'tiny-llama'));
  await rm(work, { recursive: true, force: true });
  await mkdir(live, { recursive: true });
  for (const f of FILES) await copyFile(join(tiny, f), join(live, f));
  await writeV2(v2);
  return { '/': join(root, 'tests', 'page', 'fixtures'), '/pkg/': join(root, 'pkg'), '/live/': live, '/v2/': v2 };
});

async function newPage() {
  const context = await suite.browser.newContext();
  const page = await context.newPage();
  await page.goto(`${suite.server.url}harden.html`);
  await page.waitForFunction(() => document.title === 'ready', null, { timeout: 60_000 });
  return page;
}

/** Load `url` in `page`, generate 6 greedy tokens: { text, cache (info.cache), notes (onProgress cache notes) }. */
async function generate(page, url, options) {
  const r = await page.evaluate(async ([url, options]) => {
    try {
      const notes = [];
      const e = await window.kjarni.Engine.load(url, { ...options, onProgress: (p) => p.cache && notes.push(p) });
      const c = await e.chat.completions.create({ messages: [{ role: 'user', content: 'the cat' }], max_tokens: 6, temperature: 0 });
      const out = { text: c.choices[0].message.content, cache: e.info.cache, notes };
      await e.dispose();
      return out;
    } catch (e) {
      return { error: { code: e.code, message: e.message } };
    }
  }, [url, options]);
  return r; // { error } is asserted by the caller (after the text checks)
}

const weightGets = (from) =>
  suite.server.requests.slice(from).filter((r) => r.path === '/live/model.safetensors' && r.method === 'GET');

test('a model changed on the server is seen on the next load, never mixed; offline the cache still loads', { timeout: 600_000 }, async () => {
  const page = await newPage();
  const cache = { cache: 'kjarni-test-versions' };
  const headOf = (from) => suite.server.requests.slice(from).filter((r) => r.path === '/live/model.safetensors' && r.method === 'HEAD');
  const ref = await generate(page, '/v2/', { cache: false });
  const first = await generate(page, '/live/', cache);
  // Unchanged: every cached file is checked (HEAD) and used; the weights are not downloaded.
  let mark = suite.server.requests.length;
  const second = await generate(page, '/live/', cache);
  const secondGets = weightGets(mark);
  const secondHeads = headOf(mark);
  // New weights on the server (same size, new mtime → new ETag and Last-Modified).
  await copyFile(join(v2, 'model.safetensors'), join(live, 'model.safetensors'));
  const later = new Date(Date.now() + 60_000);
  await utimes(join(live, 'model.safetensors'), later, later);
  mark = suite.server.requests.length;
  const third = await generate(page, '/live/', cache);
  const thirdGets = weightGets(mark);
  const fourth = await generate(page, '/live/', cache);
  // Offline: every request fails; the cached (new) version loads.
  await page.route('**/live/**', (route) => route.abort('internetdisconnected'));
  const offline = await generate(page, '/live/', cache);
  await page.unroute('**/live/**');
  await page.evaluate(() => caches.delete('kjarni-test-versions'));
  await page.context().close();

  assert.notEqual(first.text, ref.text, 'the two versions generate different text');
  for (const r of [ref, first, second, third, fourth]) assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(second.text, first.text);
  assert.equal(third.text, ref.text, 'the new version is used on the load after the change');
  assert.equal(fourth.text, ref.text);
  assert.equal(offline.text, ref.text, 'offline, the cached new version');
  assert.equal(offline.error, undefined, JSON.stringify(offline.error));
  assert.ok(first.cache.stored >= 4, JSON.stringify(first.cache));
  assert.equal(second.cache.stale, 0, JSON.stringify(second.cache));
  assert.ok(second.cache.revalidated >= 4 && second.cache.hits >= 4, JSON.stringify(second.cache));
  assert.deepEqual(secondGets, [], 'weights from the cache');
  assert.ok(secondHeads.length > 0, 'revalidated with HEAD');
  assert.equal(third.cache.stale, 1, JSON.stringify(third.cache));
  assert.ok(thirdGets.length > 0, 'the new weights were downloaded');
  assert.equal(fourth.cache.stale, 0, JSON.stringify(fourth.cache));
  assert.ok(offline.cache.offline >= 1, JSON.stringify(offline.cache));
  assert.equal(offline.cache.misses, 0, JSON.stringify(offline.cache));
});

test('a full storage quota is reported once per load, and the write is not retried', { timeout: 600_000 }, async () => {
  const page = await newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: suite.server.url.replace(/\/$/, ''), quotaSize: 64 * 1024 });
  const cache = { cache: 'kjarni-test-quota' };
  const first = await generate(page, '/v2/', cache);
  assert.equal(first.error, undefined, JSON.stringify(first.error));
  assert.equal(first.notes.length, 1, JSON.stringify(first.notes));
  assert.equal(first.notes[0].cache, 'quota-exceeded');
  assert.equal(first.cache.quotaExceeded, true, JSON.stringify(first.cache));
  const second = await generate(page, '/v2/', cache);
  assert.equal(second.error, undefined, JSON.stringify(second.error));
  assert.equal(second.notes.length, 1, JSON.stringify(second.notes));
  assert.equal(second.cache.quotaExceeded, true, JSON.stringify(second.cache));
  assert.equal(second.cache.failed, 0, 'no failing write again');
  assert.equal(second.text, first.text);
  await page.evaluate(() => caches.delete('kjarni-test-quota'));
  await page.context().close();
});
