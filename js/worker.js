// kjarni-web's Web Worker: one Engine per worker, driven by WorkerEngine (index.js) through
// messages { id, op, args } → { id, type: 'progress' | 'chunk' | 'result' | 'error', ... }.
import { Engine, initialize, toKjarniError, _panic, _panicked } from './index.js';

let engine = null;
const controllers = new Map(); // request id → AbortController

const post = (m, transfer) => self.postMessage(m, transfer ?? []);
const fail = (id, e) => {
  const err = toKjarniError(e);
  post({ id, type: 'error', error: { code: err.code, message: err.message, field: err.field } });
};

function needEngine() {
  if (!engine) throw Object.assign(new Error('no model loaded'), { code: 'NOT_LOADED' });
  return engine;
}

async function handle(id, op, args) {
  switch (op) {
    case 'load': {
      if (engine) throw Object.assign(new Error('this worker already has a model'), { code: 'BUSY' });
      const signal = controllers.get(id).signal;
      if (args.options.wasmUrl) await initialize(args.options.wasmUrl);
      engine = await Engine.load(args.url, {
        ...args.options,
        worker: false,
        signal,
        onProgress: (progress) => post({ id, type: 'progress', progress }),
      });
      return engine.info;
    }
    case 'chat': {
      const e = needEngine();
      const signal = controllers.get(id).signal;
      if (!args.request.stream) return e.chat.completions.create({ ...args.request, signal });
      const stream = await e.chat.completions.create({ ...args.request, signal });
      for await (const chunk of stream) post({ id, type: 'chunk', chunk });
      return null;
    }
    case 'embed': {
      const rows = await needEngine().embed(args.texts);
      const dim = rows[0]?.length ?? 0;
      const flat = new Float32Array(rows.length * dim);
      rows.forEach((r, i) => flat.set(r, i * dim));
      return { value: flat, transfer: [flat.buffer] };
    }
    case 'profile':
      return needEngine().profileDecodeStep();
    case 'rerank': {
      const scores = await needEngine().rerank(args.query, args.docs);
      return { value: scores, transfer: [scores.buffer] };
    }
    case 'stats':
      return engine ? engine.stats() : null;
    case 'dispose': {
      const e = engine;
      engine = null;
      const last = e ? (await e.dispose(), await e.stats()) : null;
      return last;
    }
    case 'loseDevice':
      return needEngine()._loseDevice();
    case 'panic':
      return _panic();
    case 'block': {
      const end = Date.now() + args.ms;
      while (Date.now() < end);
      return null;
    }
    default:
      throw Object.assign(new Error(`unknown op ${op}`), { code: 'INVALID_ARGUMENT' });
  }
}

// After a panic every pending call was answered with INTERNAL; the trap that follows ("unreachable")
// must not reach the page as a worker error (WORKER_ERROR would hide the INTERNAL answers).
const afterPanic = (ev) => {
  if (_panicked()) ev.preventDefault();
};
self.addEventListener('error', afterPanic);
self.addEventListener('unhandledrejection', afterPanic);

self.onmessage = async ({ data }) => {
  const { id, op, args } = data;
  if (op === 'abort') {
    controllers.get(args.target)?.abort();
    return;
  }
  controllers.set(id, new AbortController());
  try {
    const out = await handle(id, op, args);
    if (out && out.transfer) post({ id, type: 'result', value: out.value }, out.transfer);
    else post({ id, type: 'result', value: out ?? null });
  } catch (e) {
    fail(id, e);
  } finally {
    controllers.delete(id);
  }
};
