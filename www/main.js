// The kjarni-web demo: chat (SmolLM2) and sentence similarity (MiniLM), each engine in its own
// Web Worker, a benchmark of this browser's WebGPU (bench.js, the same measurement as the Dawn
// benchmark benches/dawn.mjs), plus the device's capabilities. No inline scripts (CSP).
import { Engine, capabilities, capabilitiesReport, hasWebGPU } from './pkg/index.js';
import { benchDecoder, benchEncoder, profileCase } from './bench.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?worker=0 runs the engines on the page's thread (for debugging).
const useWorker = params.get('worker') !== '0';

function showError(e, where) {
  const el = $('error');
  el.hidden = false;
  const code = e?.code ? `${e.code}: ` : '';
  el.textContent = `${where}: ${code}${e?.message ?? e}`;
  el.dataset.code = e?.code ?? '';
  console.error(where, e);
}
function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

// ---------------------------------------------------------------------------------------------
// Tabs

for (const tab of document.querySelectorAll('[data-tab]')) {
  tab.addEventListener('click', () => {
    for (const t of document.querySelectorAll('[data-tab]')) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      $(`panel-${t.dataset.tab}`).hidden = !on;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Capabilities (a temporary device on the page's thread)

async function probe() {
  const status = $('status');
  try {
    $('report').textContent = await capabilitiesReport();
    $('json').textContent = JSON.stringify(await capabilities(), null, 2);
    status.textContent = 'WebGPU device ready.';
    status.className = 'ok';
  } catch (e) {
    status.textContent = `WebGPU device failed: ${e.code ? `${e.code}: ` : ''}${e.message ?? e}`;
    status.className = 'error';
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

function formatMB(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

async function loadEngine(url, progressEl, statusEl, extra = {}) {
  progressEl.value = 0;
  statusEl.textContent = 'Loading…';
  const t0 = performance.now();
  const engine = await Engine.load(url, {
    worker: useWorker,
    ...extra,
    onProgress: (p) => {
      progressEl.value = p.progress;
      statusEl.textContent = `Loading ${p.file}: ${formatMB(p.loaded)} of ${formatMB(p.total)}`;
    },
  });
  progressEl.value = 1;
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const cfg = engine.info.config;
  statusEl.textContent = `${engine.info.model} ready (${cfg.architecture}, ${cfg.layers} layers${
    cfg.kv_cache ? `, KV cache ${cfg.kv_cache}, context ${cfg.max_context}` : `, ${cfg.dim}-d embeddings`
  }) — loaded in ${secs} s${useWorker ? ' in a Web Worker' : ''}.`;
  return engine;
}

// ---------------------------------------------------------------------------------------------
// Chat

let chat = null; // the chat engine
let history = []; // { role, content }
let running = null; // the current stream

function setChatState(state) {
  document.body.dataset.chat = state;
  const ready = state === 'ready';
  $('prompt').disabled = !ready && state !== 'generating';
  $('send').disabled = !ready;
  $('stop').disabled = state !== 'generating';
  $('chat-load').disabled = state === 'loading' || state === 'generating' || state === 'ready';
  $('chat-unload').disabled = !(state === 'ready' || state === 'generating');
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : 'Assistant';
  const content = document.createElement('div');
  content.className = 'content';
  content.textContent = text;
  div.append(who, content);
  $('messages').append(div);
  $('messages').scrollTop = $('messages').scrollHeight;
  return content;
}

$('chat-model').addEventListener('change', () => {
  $('chat-model-url').hidden = $('chat-model').value !== 'custom';
});

async function unloadChat() {
  running?.abort();
  const e = chat;
  chat = null;
  await e?.dispose().catch(() => {});
}

$('chat-load').addEventListener('click', async () => {
  clearError();
  const url = $('chat-model').value === 'custom' ? $('chat-model-url').value : $('chat-model').value;
  setChatState('loading');
  try {
    await unloadChat();
    chat = await loadEngine(url, $('chat-progress'), $('chat-load-status'), { kvCache: $('kv-cache').value });
    if (chat.info.config.kind !== 'decoder') throw Object.assign(new Error(`${chat.info.model} is not a chat model`), { code: 'UNSUPPORTED' });
    setChatState('ready');
    $('prompt').focus();
  } catch (e) {
    await unloadChat();
    $('chat-load-status').textContent = 'Loading failed.';
    showError(e, 'Loading the chat model');
    setChatState('idle');
  }
});

$('chat-unload').addEventListener('click', async () => {
  await unloadChat();
  $('chat-load-status').textContent = 'No model loaded (GPU memory freed).';
  $('chat-progress').value = 0;
  setChatState('idle');
});

$('clear').addEventListener('click', () => {
  history = [];
  $('messages').replaceChildren();
  $('tps').textContent = '';
  $('finish').textContent = '';
});

$('stop').addEventListener('click', () => running?.abort());

$('json-mode').addEventListener('change', () => {
  $('json-schema-box').hidden = !$('json-mode').checked;
});

/** The response_format of the JSON toggle (null when off); a schema that is not JSON throws. */
function responseFormat() {
  if (!$('json-mode').checked) return null;
  const text = $('json-schema').value.trim();
  if (!text) return { type: 'json_object' };
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (e) {
    throw Object.assign(new Error(`the schema is not JSON: ${e.message}`), { code: 'INVALID_ARGUMENT' });
  }
  return { type: 'json_schema', json_schema: { name: 'demo', schema, strict: true } };
}

$('prompt').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    $('chat-form').requestSubmit();
  }
});

/** A rate with 2 significant digits below 10 (CPU adapters manage 0.02 tok/s). */
function rate(x) {
  return x >= 10 ? x.toFixed(0) : x.toPrecision(2);
}

function numberInput(id, fallback) {
  const v = Number($(id).value);
  return Number.isFinite(v) ? v : fallback;
}

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('prompt').value.trim();
  if (!text || !chat || document.body.dataset.chat !== 'ready') return;
  clearError();
  $('prompt').value = '';
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const out = addMessage('assistant', '');
  out.classList.add('typing');
  setChatState('generating');
  $('finish').textContent = '';
  $('tps').textContent = '';
  let reply = '';
  try {
    const format = responseFormat();
    running = await chat.chat.completions.create({
      ...(format ? { response_format: format } : {}),
      messages: history,
      stream: true,
      temperature: numberInput('temperature', 0.7),
      top_p: numberInput('top-p', 0.9),
      max_tokens: Math.max(1, Math.floor(numberInput('max-tokens', 256))),
      seed: Math.floor(Math.random() * 2 ** 32),
    });
    let finish = null;
    let last = null;
    for await (const c of running) {
      const delta = c.choices[0].delta.content;
      if (delta) {
        reply += delta;
        out.textContent = reply;
        $('messages').scrollTop = $('messages').scrollHeight;
      }
      if (c.choices[0].finish_reason) {
        finish = c.choices[0].finish_reason;
        last = c;
      }
    }
    history.push({ role: 'assistant', content: reply });
    $('finish').textContent = finish === 'abort' ? 'stopped' : finish === 'length' ? (last?.incomplete ? 'max tokens reached: the JSON is incomplete' : 'max tokens reached') : 'done';
    $('finish').dataset.reason = finish;
    if (last?.timings) {
      const t = last.timings;
      $('tps').textContent = `${last.usage.completion_tokens} tokens · ${rate(t.decode_tokens_per_s)} tok/s · prefill ${Math.round(t.prefill_ms)} ms (${last.usage.prompt_tokens - t.cached_prompt_tokens} new prompt tokens)`;
    }
    setChatState('ready');
  } catch (e) {
    history.pop();
    showError(e, 'Generation');
    if (e.code === 'DEVICE_LOST' || e.code === 'WORKER_ERROR') {
      await unloadChat();
      $('chat-load-status').textContent = 'The GPU device was lost: press Load to start a new engine.';
      setChatState('idle');
    } else {
      setChatState('ready');
    }
  } finally {
    out.classList.remove('typing');
    running = null;
  }
});

// ---------------------------------------------------------------------------------------------
// Embeddings

let embedder = null;

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

$('embed-load').addEventListener('click', async () => {
  clearError();
  document.body.dataset.embed = 'loading';
  $('embed-load').disabled = true;
  try {
    await embedder?.dispose();
    embedder = await loadEngine($('embed-model').value, $('embed-progress'), $('embed-load-status'));
    $('compare').disabled = false;
    document.body.dataset.embed = 'ready';
  } catch (e) {
    embedder = null;
    $('embed-load-status').textContent = 'Loading failed.';
    showError(e, 'Loading the embedding model');
    document.body.dataset.embed = 'idle';
  } finally {
    $('embed-load').disabled = false;
  }
});

$('compare').addEventListener('click', async () => {
  if (!embedder) return;
  clearError();
  $('compare').disabled = true;
  document.body.dataset.embed = 'working';
  try {
    const t0 = performance.now();
    const [a, b] = await embedder.embed([$('sent-a').value, $('sent-b').value]);
    $('similarity').textContent = cosine(a, b).toFixed(6);
    $('embed-time').textContent = `(${a.length}-d, ${Math.round(performance.now() - t0)} ms)`;
  } catch (e) {
    showError(e, 'Embedding');
  } finally {
    $('compare').disabled = false;
    document.body.dataset.embed = 'ready';
  }
});


// ---------------------------------------------------------------------------------------------
// Benchmark (bench.js: the same measurement benches/dawn.mjs runs under node + Dawn)

let benchReport = null;

for (const kind of ['decoder', 'encoder']) {
  $(`bench-${kind}`).addEventListener('change', () => {
    $(`bench-${kind}-url`).hidden = $(`bench-${kind}`).value !== 'custom';
  });
}

function benchUrl(kind) {
  const v = $(`bench-${kind}`).value;
  return v === 'custom' ? $(`bench-${kind}-url`).value.trim() : v;
}

function addRow(tbody, cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.append(td);
  }
  tbody.append(tr);
}

const FIGURES = [
  [/^decode_tok_s_kv/, 'decode tok/s'],
  [/^decode_tok_s_wall/, 'decode tok/s (wall clock, with streaming)'],
  [/^prefill_\d+_tok_s_kv/, 'prefill tok/s'],
  [/^ttft_ms/, 'time to first token, ms'],
  [/^dispatches_per_token$/, 'dispatches per token'],
  [/^gpu_peak_bytes/, 'GPU memory, peak MB'],
  [/^embeddings_per_s_batch_/, 'embeddings/s'],
  [/^load_ms/, 'load, ms'],
];

function showBenchCase(c, label) {
  const tbody = $('bench-results').querySelector('tbody');
  if (c.error) {
    addRow(tbody, [label, 'failed', c.error]);
    return;
  }
  for (const [k, v] of Object.entries(c.shape)) {
    const f = FIGURES.find(([re]) => re.test(k));
    if (!f || v == null) continue;
    const value = /bytes/.test(k) ? (v / 1e6).toFixed(1) : typeof v === 'number' ? rate(v) : String(v);
    addRow(tbody, [label, `${f[1]} (${k})`, value]);
  }
}

function showProfile(p) {
  const box = $('bench-profile');
  const tbody = box.querySelector('tbody');
  tbody.replaceChildren();
  box.hidden = false;
  const total = p.total_gpu_us;
  $('bench-profile-note').textContent = !p.timestamps
    ? `${p.dispatches} dispatches; this device has no timestamp queries: counts only.`
    : `${p.dispatches} dispatches, ${total.toFixed(1)} µs of GPU time (each dispatch in a compute pass of its own).` +
      (p.quantized ? ' The browser quantises timestamps: the times are not measurements (Chrome: enable chrome://flags/#enable-webgpu-developer-features).' : '');
  for (const k of p.kernels) {
    addRow(tbody, [k.label, String(k.count), k.gpu_us == null ? '–' : k.gpu_us.toFixed(1), k.gpu_us == null || !total ? '–' : `${((100 * k.gpu_us) / total).toFixed(1)} %`]);
  }
}

async function runBench() {
  clearError();
  const quick = $('bench-quick').checked;
  const status = $('bench-status');
  $('bench-run').disabled = true;
  $('bench-copy').disabled = true;
  document.body.dataset.bench = 'running';
  $('bench-results').hidden = false;
  $('bench-results').querySelector('tbody').replaceChildren();
  $('bench-profile').hidden = true;
  const report = {
    engine: `kjarni-web in the browser${useWorker ? ' (Web Worker)' : ''}`,
    user_agent: navigator.userAgent,
    quick,
    worker: useWorker,
    adapter: null,
    variants_chosen: null,
    cases: [],
  };
  const log = (line) => (status.textContent = line.trim());
  try {
    const caps = await capabilities();
    Object.assign(report, { adapter: caps.adapter, backend: caps.backend, variants_chosen: caps.variants, capabilities: caps });
    $('bench-variants').textContent = `Adapter ${caps.adapter}: subgroups ${caps.subgroups ? `yes (${caps.subgroup_min_size}–${caps.subgroup_max_size})` : 'no'}, shader-f16 ${caps.f16 ? 'yes' : 'no'}, timestamps ${caps.timestamps ? 'yes' : 'no'}; variants: ${Object.entries(caps.variants).map(([k, v]) => `${k} ${v}`).join(', ')}.`;
    const decoder = benchUrl('decoder');
    if (decoder) {
      const name = `decoder ${decoder.replace(/\/$/, '').split('/').pop()}`;
      status.textContent = `Loading ${decoder}…`;
      const engine = await Engine.load(decoder, { worker: useWorker, kvCache: 'f16', maxContext: 1024 });
      try {
        const c = { case: name, shape: {}, variants: [] };
        const r = await benchDecoder(engine, { quick, label: 'kv_f16', log });
        Object.assign(c.shape, r.shape);
        c.variants.push(...r.variants);
        report.cases.push(c);
        showBenchCase(c, name);
        const p = profileCase(name, r.profile);
        if (p) {
          report.cases.push(p);
          showProfile(r.profile);
        }
      } finally {
        await engine.dispose();
      }
    }
    const encoder = benchUrl('encoder');
    if (encoder) {
      const name = `encoder ${encoder.replace(/\/$/, '').split('/').pop()}`;
      status.textContent = `Loading ${encoder}…`;
      const engine = await Engine.load(encoder, { worker: useWorker });
      try {
        const r = await benchEncoder(engine, { quick, log });
        const c = { case: name, shape: r.shape, variants: r.variants };
        report.cases.push(c);
        showBenchCase(c, name);
      } finally {
        await engine.dispose();
      }
    }
    status.textContent = 'Done.';
    document.body.dataset.bench = 'done';
  } catch (e) {
    report.error = `${e?.code ? `${e.code}: ` : ''}${e?.message ?? e}`;
    status.textContent = 'Failed.';
    showError(e, 'Benchmark');
    document.body.dataset.bench = 'failed';
  } finally {
    benchReport = report;
    $('bench-json').textContent = JSON.stringify(report, null, 1);
    $('bench-run').disabled = false;
    $('bench-copy').disabled = false;
  }
}

$('bench-run').addEventListener('click', runBench);
$('bench-copy').addEventListener('click', async () => {
  const text = JSON.stringify(benchReport, null, 1);
  try {
    await navigator.clipboard.writeText(text);
    $('bench-status').textContent = 'Report copied to the clipboard.';
  } catch {
    // No clipboard permission (e.g. an insecure origin): select the JSON for a manual copy.
    const pre = $('bench-json');
    pre.closest('details').open = true;
    getSelection().selectAllChildren(pre);
    $('bench-status').textContent = 'Clipboard unavailable: the report is selected, copy it with Ctrl+C.';
  }
});

// ---------------------------------------------------------------------------------------------

if (!hasWebGPU()) {
  $('webgpu-missing').hidden = false;
  $('status').textContent = 'WebGPU is not available in this browser (Chrome/Edge 113+, or enable it in your browser flags).';
  $('status').className = 'error';
  for (const b of ['chat-load', 'embed-load', 'bench-run']) $(b).disabled = true;
} else {
  setChatState('idle');
  probe();
  if (params.get('load') === 'chat') $('chat-load').click();
}
