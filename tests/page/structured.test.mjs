// Structured output through the lazily loaded module (pkg/kjarni_structured_bg.wasm: llguidance,
// notes/structured.md), in the page thread and in a Web Worker: plain chat and embeddings never
// fetch it; the first constrained request loads it (once per JS context) and its output matches
// the pattern; a bad schema is INVALID_ARGUMENT naming its path (before the module is needed); a
// pattern that does not compile is INVALID_ARGUMENT from the module; so is a tool call or JSON
// object the model cannot write (the tiny vocabulary has no '{'); a module that cannot be
// loaded is NETWORK, not a hang. Tiny models (tiny_model.mjs): the plain one, and a copy whose
// tokenizer has a byte-level decoder (constrained decoding needs the tokens' bytes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pageSuite, root } from './harness.mjs';
import { ensureTinyModel } from './tiny_model.mjs';

const PATTERN = '(cat|river|paris|music)+';

/** The tiny model with a byte-level decoder (its words are ASCII: their bytes are their text). */
async function tinyBytes(tiny) {
  const dir = join(root, 'target', 'page-models', 'tiny-llama-bytes');
  await mkdir(dir, { recursive: true });
  for (const f of ['config.json', 'tokenizer_config.json', 'model.safetensors']) await copyFile(join(tiny, f), join(dir, f));
  const tok = JSON.parse(await readFile(join(tiny, 'tokenizer.json'), 'utf8'));
  tok.decoder = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  return dir;
}

const suite = pageSuite(
  async () => {
    const tiny = await ensureTinyModel(join(root, 'target', 'page-models', 'tiny-llama'));
    return {
      '/': join(root, 'tests', 'page', 'fixtures'),
      '/pkg/': join(root, 'pkg'),
      '/models/': join(root, 'models'),
      '/tiny/': tiny,
      '/tiny-bytes/': await tinyBytes(tiny),
    };
  },
  {
    page: true,
    // The page runs one plain chat completion on the tiny model as it loads (esm.js).
    ready: async ({ page, server }) => {
      await page.goto(`${server.url}esm.html?model=/tiny/&max_tokens=2`);
      await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('state').textContent), null, { timeout: 240_000 });
    },
  },
);

/** Requests for the structured module's files so far. */
const structuredFetches = () => suite.server.requests.filter((r) => r.path.includes('kjarni_structured')).map((r) => r.path);

async function inPage(fn, arg) {
  return suite.page.evaluate(`(async () => {
    try {
      return { value: await (${fn.toString()})(${JSON.stringify(arg ?? null)}) };
    } catch (e) {
      return { error: { code: e.code, message: e.message } };
    }
  })()`);
}

test('plain chat (page and worker), streaming, a text response_format and embeddings do not fetch the structured module', { timeout: 300_000 }, async () => {
  assert.equal(await suite.page.evaluate(() => window.failure), undefined);
  const r = await inPage(async () => {
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const e = window.engine;
    await e.chat.completions.create({ messages, max_tokens: 2, temperature: 0, response_format: { type: 'text' } });
    const stream = await e.chat.completions.create({ messages, max_tokens: 2, stream: true });
    for await (const _ of stream);
    const w = await window.kjarni.Engine.load('/tiny/', { worker: true });
    const c = await w.chat.completions.create({ messages, max_tokens: 2, temperature: 0 });
    await w.dispose();
    const m = await window.kjarni.Engine.load('/models/all-MiniLM-L6-v2/');
    const v = await m.embed(['a cat', 'a dog']);
    await m.dispose();
    return { text: c.choices[0].message.content, dim: v[0].length };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.equal(r.value.dim, 384);
  assert.deepEqual(structuredFetches(), []);
  assert.deepEqual(suite.errors, []);
});

test('a bad schema is INVALID_ARGUMENT naming its path, before the structured module is needed', { timeout: 120_000 }, async () => {
  const r = await inPage(async () => {
    const messages = [{ role: 'user', content: 'name a city' }];
    return window.engine.chat.completions.create({
      messages,
      response_format: { type: 'json_schema', json_schema: { schema: { type: 'object', properties: { a: { type: 'array', uniqueItems: true } } } } },
    });
  });
  assert.equal(r.error?.code, 'INVALID_ARGUMENT', JSON.stringify(r));
  assert.match(r.error.message, /^response_format\.json_schema\.schema\/properties\/a\/uniqueItems /);
  assert.deepEqual(structuredFetches(), []);
});

test('a regex response_format loads the structured module once (page thread); the output matches', { timeout: 300_000 }, async () => {
  const r = await inPage(async (pattern) => {
    const e = await window.kjarni.Engine.load('/tiny-bytes/');
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const out = [];
    for (const seed of [1, 2]) {
      const c = await e.chat.completions.create({ messages, max_tokens: 6, temperature: 1, seed, response_format: { type: 'regex', pattern } });
      out.push({ text: c.choices[0].message.content, finish: c.choices[0].finish_reason, incomplete: c.incomplete });
    }
    // A pattern that does not compile: refused by the module, before any token, typed and named.
    let refused = null;
    try {
      await e.chat.completions.create({ messages, response_format: { type: 'regex', pattern: '(cat' } });
    } catch (err) {
      refused = { code: err.code, message: err.message };
    }
    await e.dispose();
    return { out, refused };
  }, PATTERN);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  for (const o of r.value.out) {
    assert.match(o.text, new RegExp(`^${PATTERN}$`), JSON.stringify(o));
    assert.ok(['stop', 'length'].includes(o.finish), JSON.stringify(o));
  }
  assert.equal(r.value.refused?.code, 'INVALID_ARGUMENT', JSON.stringify(r.value.refused));
  assert.match(r.value.refused.message, /^response_format\.pattern cannot be compiled/);
  const fetched = structuredFetches();
  assert.deepEqual(fetched.filter((p) => p.endsWith('.wasm')), ['/pkg/kjarni_structured_bg.wasm'], JSON.stringify(fetched));
  assert.deepEqual(suite.errors, []);
});

test('in a Web Worker the structured module loads in the worker; a module that cannot be loaded is NETWORK', { timeout: 300_000 }, async () => {
  const before = structuredFetches().length;
  const r = await inPage(async (pattern) => {
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const rf = { type: 'regex', pattern };
    const w = await window.kjarni.Engine.load('/tiny-bytes/', { worker: true });
    const c = await w.chat.completions.create({ messages, max_tokens: 6, temperature: 1, seed: 1, response_format: rf });
    await w.dispose();
    const bad = await window.kjarni.Engine.load('/tiny-bytes/', { worker: true, structuredWasmUrl: '/pkg/missing/kjarni_structured_bg.wasm' });
    let failure = null;
    try {
      await bad.chat.completions.create({ messages, max_tokens: 2, response_format: rf });
    } catch (err) {
      failure = { code: err.code, message: err.message };
    }
    // The engine still works for plain chat.
    const plain = await bad.chat.completions.create({ messages, max_tokens: 2, temperature: 0 });
    await bad.dispose();
    return { text: c.choices[0].message.content, failure, plain: plain.choices[0].finish_reason };
  }, PATTERN);
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  assert.match(r.value.text, new RegExp(`^${PATTERN}$`));
  assert.equal(r.value.failure?.code, 'NETWORK', JSON.stringify(r.value.failure));
  assert.match(r.value.failure.message, /kjarni_structured_bg\.wasm/);
  assert.equal(r.value.plain, 'length');
  const fetched = structuredFetches().slice(before);
  assert.ok(fetched.includes('/pkg/kjarni_structured_bg.wasm') && fetched.includes('/pkg/missing/kjarni_structured_bg.wasm'), JSON.stringify({ fetched, failure: r.value.failure }));
  assert.deepEqual(suite.errors, []);
});

test('a tool call or JSON object the model cannot write (no token starting with "{") is INVALID_ARGUMENT from the module', { timeout: 300_000 }, async () => {
  const r = await inPage(async () => {
    const e = await window.kjarni.Engine.load('/tiny-bytes/');
    const messages = [{ role: 'user', content: 'add one and two' }];
    const tools = [{ type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer' } } } } }];
    const requests = [
      { tools, tool_choice: 'required' },
      { tools, tool_choice: { type: 'function', function: { name: 'add' } } },
      { response_format: { type: 'json_object' } },
    ];
    const out = [];
    for (const req of requests) {
      try {
        const c = await e.chat.completions.create({ messages, max_tokens: 4, temperature: 0, ...req });
        out.push({ finish: c.choices[0].finish_reason, content: c.choices[0].message.content });
      } catch (err) {
        out.push({ code: err.code, message: err.message });
      }
    }
    // Under `auto` the call is optional: the model answers in text.
    const auto = await e.chat.completions.create({ messages, max_tokens: 2, temperature: 0, tools });
    await e.dispose();
    return { out, auto: auto.choices[0].finish_reason };
  });
  assert.equal(r.error, undefined, JSON.stringify(r.error));
  const [required, named, object] = r.value.out;
  for (const e of [required, named]) {
    assert.equal(e.code, 'INVALID_ARGUMENT', JSON.stringify(e));
    assert.match(e.message, /^tool_choice cannot be written by this model: its output must start with `\{"name": "/, e.message);
    assert.match(e.message, /but the model's vocabulary has no token starting with '\{'$/, e.message);
  }
  assert.equal(object.code, 'INVALID_ARGUMENT', JSON.stringify(object));
  assert.equal(
    object.message,
    "response_format cannot be written by this model: its output must start with `{`, but the model's vocabulary has no token starting with '{'",
  );
  assert.ok(['stop', 'length'].includes(r.value.auto), r.value.auto);
  assert.deepEqual(suite.errors, []);
});
