// The chat demo (www/) in headless Chromium, as a user drives it: load SmolLM2 in a Web Worker,
// ask the fixture question (greedy: the reply must be the fixture continuation's prefix), stop a
// long generation, refuse a bad JSON schema from the JSON toggle, compare two sentences with
// MiniLM (the fixture's cosine). Screenshots in
// target/page-artifacts/. SwiftShader takes minutes for SmolLM2's prefill and tens of seconds
// per decoded token, so the fixture reply is limited to KJARNI_PAGE_TOKENS (default 2) tokens
// and the Stop button is exercised on the tiny model (tiny_model.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pageSuite, screenshot, root } from './harness.mjs';
import { ensureTinyModel } from './tiny_model.mjs';

const fixture = async (name) => JSON.parse(await readFile(join(root, 'tests', 'fixtures', name), 'utf8'));
const TOKENS = Number(process.env.KJARNI_PAGE_TOKENS ?? 2);

const suite = pageSuite(
  async () => ({
    '/': join(root, 'www'),
    '/models/': join(root, 'models'),
    '/tiny/': await ensureTinyModel(join(root, 'target', 'page-models', 'tiny-llama')),
  }),
  {
    page: { viewport: { width: 1100, height: 900 } },
    ready: async ({ page, server }) => {
      await page.goto(server.url);
      await page.waitForSelector('#status.ok, #status.error', { timeout: 60_000 });
    },
  },
);

const lastReply = () => suite.page.evaluate(() => [...document.querySelectorAll('.msg.assistant .content')].at(-1)?.textContent ?? '');
const waitChat = (state, timeout) => suite.page.waitForSelector(`body[data-chat="${state}"]`, { state: 'attached', timeout });

test('demo chat: SmolLM2 in a worker answers the fixture question greedily', { timeout: 900_000 }, async () => {
  const smol = await fixture('smollm2.json');
  const chat = smol.cases.find((c) => c.kind === 'chat');
  const expected = chat.greedy_text.replace('<|im_end|>', '');
  assert.equal(await suite.page.textContent('#status'), 'WebGPU device ready.');
  await suite.page.click('#chat-load');
  await waitChat('ready', 300_000);
  assert.match(await suite.page.textContent('#chat-load-status'), /SmolLM2-135M-Instruct ready .* in a Web Worker/);
  assert.equal(await suite.page.evaluate(() => document.getElementById('chat-progress').value), 1);
  await suite.page.fill('#temperature', '0');
  await suite.page.fill('#max-tokens', String(TOKENS));
  await suite.page.fill('#prompt', chat.messages[0].content);
  const t0 = Date.now();
  await suite.page.click('#send');
  await waitChat('generating', 10_000);
  assert.equal(await suite.page.isEnabled('#stop'), true, 'Stop is enabled while generating');
  await waitChat('ready', 840_000);
  const reply = await lastReply();
  console.log(`reply ${JSON.stringify(reply)} in ${((Date.now() - t0) / 1000).toFixed(0)} s; ${await suite.page.textContent('#tps')}`);
  assert.ok(reply.length > 0 && expected.startsWith(reply), `greedy reply ${JSON.stringify(reply)} is a prefix of ${JSON.stringify(expected)}`);
  const reason = await suite.page.getAttribute('#finish', 'data-reason');
  assert.equal(reason, TOKENS >= chat.greedy_ids.length ? 'stop' : 'length');
  assert.match(await suite.page.textContent('#tps'), /tok\/s/);
  await screenshot(suite.page, 'demo-chat');
  assert.deepEqual(suite.errors, []);
});

test('demo chat: the JSON toggle sends the schema; a schema that is not JSON or not supported is INVALID_ARGUMENT, named', { timeout: 600_000 }, async () => {
  // SmolLM2 (loaded by the first test; loaded here when run alone): both refusals come before
  // any token, so SwiftShader's slow prefill never runs.
  if ((await suite.page.getAttribute('body', 'data-chat')) !== 'ready') {
    await suite.page.click('#chat-load');
    await waitChat('ready', 300_000);
  }
  await suite.page.click('#clear');
  assert.equal(await suite.page.isVisible('#json-schema-box'), false, 'no schema editor while JSON is off');
  await suite.page.check('#json-mode');
  assert.equal(await suite.page.isVisible('#json-schema-box'), true, 'the schema editor shows with JSON on');
  const send = async (schema) => {
    await suite.page.fill('#json-schema', schema);
    await suite.page.fill('#prompt', 'name a city');
    await suite.page.click('#send');
    await suite.page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    await waitChat('ready', 60_000);
    return { code: await suite.page.getAttribute('#error', 'data-code'), text: await suite.page.textContent('#error') };
  };
  // Refused in the page before the request.
  let e = await send('{ "type": "object", ');
  assert.equal(e.code, 'INVALID_ARGUMENT', e.text);
  assert.match(e.text, /schema is not JSON/);
  // Refused by the engine before any token, naming the schema path of the unsupported keyword.
  e = await send('{ "type": "object", "properties": { "city": { "type": "string" } }, "not": { "required": ["city"] } }');
  assert.equal(e.code, 'INVALID_ARGUMENT', e.text);
  assert.match(e.text, /response_format\.json_schema\.schema\/not/);
  await screenshot(suite.page, 'demo-chat-json-schema');
  assert.deepEqual(await suite.page.evaluate(() => [...document.querySelectorAll('.msg.assistant .content')].map((c) => c.textContent)), ['', '']);
  await suite.page.uncheck('#json-mode');
  assert.equal(await suite.page.isVisible('#json-schema-box'), false, 'the schema editor hides with JSON off');
  assert.deepEqual(suite.errors, []);
});

/** Load the tiny model (tiny_model.mjs) in the chat tab, unless it is loaded already. */
async function loadTiny() {
  const state = await suite.page.getAttribute('body', 'data-chat');
  if (state === 'ready' && (await suite.page.inputValue('#chat-model-url')) === '/tiny/') return;
  if (state === 'ready') {
    await suite.page.click('#chat-unload');
    await waitChat('idle', 30_000);
  }
  await suite.page.selectOption('#chat-model', 'custom');
  await suite.page.fill('#chat-model-url', '/tiny/');
  await suite.page.click('#chat-load');
  await waitChat('ready', 120_000);
}

test('demo chat: Stop ends a long generation', { timeout: 300_000 }, async () => {
  await loadTiny();
  await suite.page.click('#clear');
  await suite.page.fill('#max-tokens', '2000');
  await suite.page.fill('#prompt', 'tell me a long story about a dragon');
  await suite.page.click('#send');
  assert.equal(await suite.page.isHidden('#error'), true, 'an error of an earlier request is cleared');
  await suite.page.waitForFunction(() => {
    const c = [...document.querySelectorAll('.msg.assistant .content')].at(-1);
    return c && c.textContent.split(' ').length >= 3;
  }, null, { timeout: 120_000 });
  await suite.page.click('#stop');
  await waitChat('ready', 60_000);
  assert.equal(await suite.page.getAttribute('#finish', 'data-reason'), 'abort');
  assert.equal(await suite.page.textContent('#finish'), 'stopped');
  const stopped = await lastReply();
  await suite.page.waitForTimeout(1500);
  assert.equal(await lastReply(), stopped, 'no text after Stop');
  assert.ok(stopped.split(' ').length < 100, `stopped early: ${stopped.split(' ').length} words`);
  await screenshot(suite.page, 'demo-chat-stopped');
  assert.deepEqual(suite.errors, []);
});

test('demo embeddings: MiniLM similarity of two sentences matches the fixture', { timeout: 300_000 }, async () => {
  const mini = await fixture('minilm.json');
  const [i, j] = [1, 2];
  await suite.page.click('#tab-embed');
  await suite.page.fill('#sent-a', mini.cases[i].text);
  await suite.page.fill('#sent-b', mini.cases[j].text);
  await suite.page.click('#embed-load');
  await suite.page.waitForSelector('body[data-embed="ready"]', { state: 'attached', timeout: 180_000 });
  await suite.page.click('#compare');
  await suite.page.waitForFunction(() => document.getElementById('similarity').textContent !== '–', null, { timeout: 120_000 });
  await suite.page.waitForSelector('body[data-embed="ready"]', { state: 'attached', timeout: 60_000 });
  const got = Number(await suite.page.textContent('#similarity'));
  const want = mini.cosine[i][j];
  // 1e-3: the fixture's own rounding is 1e-6; f32 GPU vs f32 PyTorch agree to ~1e-6 (notes/bert.md).
  assert.ok(Math.abs(got - want) < 1e-3, `cosine ${got} vs fixture ${want}`);
  await screenshot(suite.page, 'demo-embeddings');
  assert.deepEqual(suite.errors, []);
});
