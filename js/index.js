// kjarni-web: transformer inference on WebGPU. The JavaScript API.
//
// A thin layer over the wasm-bindgen exports of kjarni_web.js (WasmEngine: promise-returning
// methods with JSON in and out): OpenAI-style chat completions with async iterators,
// AbortSignal, errors with stable codes, and the same API in a Web Worker (`worker: true`).

import init, {
  WasmEngine,
  capabilities as capabilitiesJson,
  capabilitiesReport as capabilitiesReportText,
  wasmMemoryBytes,
  gpuMemory as gpuMemoryJson,
  setPanicHandler,
  debugPanic,
} from './kjarni_web.js';

import { KjarniError, normaliseRequest } from './request.js';

export { KjarniError };

/** Any thrown value as a KjarniError (Rust errors carry `code`; a Rust panic becomes INTERNAL). */
export function toKjarniError(e) {
  if (e instanceof KjarniError) return e;
  if (e && typeof e === 'object' && typeof e.code === 'string') return new KjarniError(e.code, e.message ?? String(e), { field: e.field });
  if (e && e.name === 'AbortError') return new KjarniError('ABORTED', e.message || 'aborted');
  return new KjarniError('INTERNAL', e?.message ?? String(e), { cause: e });
}

let ready = null;
// Set once the wasm module is instantiated (its synchronous exports work from then on).
let instantiated = false;

// A Rust panic traps the wasm instance: the promises of every call in flight would never settle.
// The panic hook calls onPanic first, which rejects them all with INTERNAL; every later call on
// this module fails the same way (load the page / worker again).
let panicked = null;
const inflight = new Set();

function onPanic(message) {
  panicked = new KjarniError('INTERNAL', `kjarni-web crashed (a bug; reload to use it again): ${message}`);
  for (const reject of inflight) reject(panicked);
  inflight.clear();
}

/** Whether the wasm instance of this JS context panicked (it is unusable then). */
export function _panicked() {
  return panicked !== null;
}

/** `promise`, rejected with INTERNAL as soon as the wasm instance panics. */
function guard(promise) {
  if (panicked) return Promise.reject(panicked);
  let reject;
  const p = new Promise((ok, fail) => {
    reject = fail;
    promise.then(ok, fail);
  });
  inflight.add(reject);
  const drop = () => inflight.delete(reject);
  p.then(drop, drop);
  return p;
}

/** Load the wasm module (done by Engine.load; call it yourself to pass another wasm URL). */
export function initialize(wasmUrl) {
  ready ??= init(wasmUrl ? { module_or_path: wasmUrl } : undefined).then(
    (m) => {
      setPanicHandler(onPanic);
      instantiated = true;
      return m;
    },
    (e) => {
      ready = null;
      throw new KjarniError('NETWORK', `loading kjarni_web_bg.wasm failed: ${e?.message ?? e}`, { cause: e });
    },
  );
  return ready;
}

// Constrained decoding (response_format, tools) lives in a second wasm module,
// kjarni_structured_bg.wasm (llguidance; notes/structured.md), loaded at the first request that
// needs it: the engine calls the loader it was given (WasmEngine.setStructuredLoader) after the
// request's own checks. One instance per JS context (page or worker), shared by its engines.
let structured = null;

/**
 * Load the structured module (done at the first constrained request; call it to load it
 * earlier or from another URL). Resolves to its namespace; rejects with NETWORK (and tries
 * again at the next call).
 */
export function preloadStructured(wasmUrl) {
  structured ??= import('./kjarni_structured.js')
    .then(async (m) => {
      await m.default(wasmUrl ? { module_or_path: wasmUrl } : undefined);
      return m;
    })
    .catch((e) => {
      structured = null;
      throw new KjarniError('NETWORK', `loading kjarni_structured_bg.wasm failed: ${e?.message ?? e}`, { cause: e });
    });
  return structured;
}

/** Testing aid: make the wasm instance panic (it is unusable afterwards). Rejects with INTERNAL. */
export async function _panic() {
  await initialize();
  return guard(debugPanic()).catch((e) => {
    throw toKjarniError(e);
  });
}

/** Whether this JS context offers WebGPU (`navigator.gpu`). */
export function hasWebGPU() {
  return typeof navigator !== 'undefined' && !!navigator.gpu;
}

function requireWebGPU() {
  if (!hasWebGPU()) {
    throw new KjarniError(
      'WEBGPU_UNAVAILABLE',
      'WebGPU is not available in this browser (Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows; on Linux Chrome needs --enable-unsafe-webgpu).',
    );
  }
}

/** Capabilities of this device (adapter, limits, features, chosen kernel variants). */
export async function capabilities() {
  requireWebGPU();
  await initialize();
  try {
    return JSON.parse(await guard(capabilitiesJson()));
  } catch (e) {
    throw toKjarniError(e);
  }
}

/** The same as a human-readable report. */
export async function capabilitiesReport() {
  requireWebGPU();
  await initialize();
  try {
    return await guard(capabilitiesReportText());
  } catch (e) {
    throw toKjarniError(e);
  }
}

/** Size of the wasm memory of this JS context, in bytes. */
export function wasmMemorySize() {
  return instantiated ? wasmMemoryBytes() : 0;
}

/**
 * GPU devices and counted GPU buffers alive in this JS context's wasm instance, over every
 * engine of it: { liveDevices, liveBuffers, liveBytes }, all 0 once every engine is disposed
 * (a disposed engine or an aborted load that kept GPU memory would show here). A WorkerEngine's
 * device lives in its worker: see its stats().
 */
export function gpuMemory() {
  if (!instantiated) return { liveDevices: 0, liveBuffers: 0, liveBytes: 0 };
  const s = JSON.parse(gpuMemoryJson());
  return { liveDevices: s.live_devices, liveBuffers: s.live_buffers, liveBytes: s.live_bytes };
}

function resolveUrl(url) {
  const base = globalThis.location?.href;
  try {
    return base ? new URL(url, base).href : new URL(url).href;
  } catch {
    return String(url);
  }
}

/** Cache API store the engine keeps downloaded model files in (`cache: false` turns it off). */
export const DEFAULT_CACHE = 'kjarni-models-v1';

function loadOptions(options) {
  const cache = options.cache === false ? null : (typeof options.cache === 'string' ? options.cache : DEFAULT_CACHE);
  return {
    kvCache: options.kvCache ?? 'f16',
    maxContext: options.maxContext ?? null,
    cache,
    memoryBudget: options.memoryBudget ?? null,
    idleTimeoutMs: options.idleTimeoutMs ?? null,
  };
}

function abortedError(what) {
  return new KjarniError('ABORTED', `${what} was aborted`);
}

/** How long WorkerEngine.dispose() waits for the worker before terminating it. */
export const DISPOSE_TIMEOUT_MS = 5000;

let nextId = 0;
const makeId = () => `chatcmpl-${Date.now().toString(36)}${(nextId++).toString(36)}`;

/**
 * An async iterable of chat.completion.chunk objects, fed by pushes. `abort()` stops the
 * generation (the last chunk then has finish_reason "abort"); leaving a `for await` loop early
 * does the same.
 */
export class ChatCompletionStream {
  #chunks = [];
  #waiting = null;
  #done = false;
  #error = null;
  #onAbort;

  constructor(onAbort) {
    this.#onAbort = onAbort;
    this.controller = { abort: () => this.abort() };
  }

  /** Stop generating. */
  abort() {
    this.#onAbort?.();
  }

  /** @internal */ _push(chunk) {
    this.#chunks.push(chunk);
    this.#wake();
  }
  /** @internal */ _end(error) {
    this.#done = true;
    this.#error = error ?? null;
    this.#wake();
  }
  #wake() {
    const w = this.#waiting;
    this.#waiting = null;
    w?.();
  }

  async *[Symbol.asyncIterator]() {
    let finished = false;
    try {
      for (;;) {
        if (this.#chunks.length) {
          yield this.#chunks.shift();
          continue;
        }
        if (this.#done) {
          finished = true;
          if (this.#error) throw this.#error;
          return;
        }
        await new Promise((ok) => (this.#waiting = ok));
      }
    } finally {
      if (!finished) this.abort();
    }
  }
}

function chunk(id, created, model, delta, finish, extra) {
  return { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra };
}

function usageOf(r) {
  return { prompt_tokens: r.prompt_tokens, completion_tokens: r.completion_tokens, total_tokens: r.prompt_tokens + r.completion_tokens };
}

function timingsOf(r) {
  return {
    prefill_ms: r.prefill_ms,
    decode_ms: r.decode_ms,
    cached_prompt_tokens: r.cached_prompt_tokens,
    prefill_tokens_per_s: r.prefill_ms > 0 ? ((r.prompt_tokens - r.cached_prompt_tokens) * 1000) / r.prefill_ms : 0,
    decode_tokens_per_s: r.decode_ms > 0 ? (r.decode_steps * 1000) / r.decode_ms : 0,
  };
}

/** A model on a GPU device in this JS context. Use Engine.load(). */
export class Engine {
  #w;
  #info;
  #lock = Promise.resolve();
  #final = null;

  /** @internal */ constructor(w, info) {
    this.#w = w;
    this.#info = info;
    const create = (req) => this.#create(req);
    this.chat = { completions: { create } };
  }

  /**
   * Load an HF-style model directory (config.json, tokenizer.json, tokenizer_config.json,
   * model.safetensors or model.safetensors.index.json + shards).
   * options: { onProgress({loaded, total, progress, file}), kvCache: 'f16'|'int8'|'f32',
   *            maxContext, signal, worker, cache, memoryBudget, wasmUrl, workerUrl,
   *            structuredWasmUrl, preloadStructured }
   * preloadStructured: load the structured-output module (kjarni_structured_bg.wasm) now; by
   *   default it is loaded at the first response_format / tools request (plain chat and
   *   embeddings never download it).
   * cache: Cache API store for the downloaded files (default DEFAULT_CACHE; false: no caching).
   *   Cached files are revalidated once per load (HEAD: ETag / Last-Modified); info.cache has
   *   the counts; a full storage quota is reported once with onProgress({ cache: 'quota-exceeded' }).
   * memoryBudget: bytes of GPU memory the model may use; checked before any weight is fetched
   * (MODEL_TOO_LARGE). Buffers over the device's limits are always refused early.
   */
  static async load(baseUrl, options = {}) {
    if (options.worker) return WorkerEngine.load(baseUrl, options);
    requireWebGPU();
    await initialize(options.wasmUrl);
    const { signal, onProgress } = options;
    if (signal?.aborted) throw abortedError('loading');
    const url = resolveUrl(baseUrl);
    const w = new WasmEngine();
    const structuredUrl = options.structuredWasmUrl ? resolveUrl(options.structuredWasmUrl) : undefined;
    w.setStructuredLoader(() => preloadStructured(structuredUrl));
    if (options.preloadStructured) preloadStructured(structuredUrl).catch(() => {}); // retried when needed
    const onAbort = () => w.cancel();
    const progress = onProgress
      ? (loaded, total, file, note) =>
          onProgress(note
            ? { loaded, total, progress: total > 0 ? loaded / total : 0, file, cache: note } // once per load: 'quota-exceeded'
            : { loaded, total, progress: total > 0 ? loaded / total : 0, file })
      : undefined;
    const opts = loadOptions(options);
    try {
      const pending = guard(w.load(url, JSON.stringify(opts), progress)); // cancellable from here on
      signal?.addEventListener('abort', onAbort, { once: true });
      const info = JSON.parse(await pending);
      return new Engine(w, info);
    } catch (e) {
      w.free();
      throw toKjarniError(e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The model's description: { model, url, config: { kind, ... }, capabilities }. */
  get info() {
    return this.#info;
  }

  /** Adapter, limits, features and the chosen kernel variants of this engine's device. */
  capabilities() {
    return this.#info.capabilities;
  }

  /** Run `fn` after the previous operation (one at a time per engine). */
  #run(fn) {
    const next = this.#lock.then(() => {
      if (panicked) throw panicked;
      if (!this.#w) throw new KjarniError('DISPOSED', 'the engine was disposed; create a new one');
      return fn(this.#w);
    });
    this.#lock = next.catch(() => {});
    return next;
  }

  /** Run one generation, calling onDelta(text) for each piece; resolves to the Rust result. */
  #generate(body, signal, onDelta, stream) {
    return this.#run(async (w) => {
      if (signal?.aborted || stream?.abortedEarly) {
        // Aborted while waiting for the previous operation: nothing was generated.
        return { text: '', finish_reason: 'abort', prompt_tokens: 0, completion_tokens: 0, cached_prompt_tokens: 0, prefill_ms: 0, decode_ms: 0, decode_steps: 0 };
      }
      const onAbort = () => w.cancel();
      try {
        // generate() takes the model synchronously: a cancel() from now on reaches it.
        const pending = guard(w.generate(JSON.stringify(body), onDelta));
        signal?.addEventListener('abort', onAbort, { once: true });
        if (stream) stream.hook = onAbort;
        return JSON.parse(await pending);
      } catch (e) {
        throw toKjarniError(e);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    });
  }

  async #create(request) {
    const body = normaliseRequest(request, this.#info.config.max_context);
    const model = this.#info.model;
    const id = makeId();
    const created = Math.floor(Date.now() / 1000);
    if (this.#info.config.kind !== 'decoder') {
      throw new KjarniError('UNSUPPORTED', `${model} is an encoder: use embed(), not chat completions`);
    }
    if (request.stream) {
      if (request.signal?.aborted) throw abortedError('the completion');
      // The stream's abort() reaches the generation once it runs (hook.hook), or marks it
      // aborted while it waits for a previous operation.
      const hook = { hook: null, abortedEarly: false };
      const stream = new ChatCompletionStream(() => (hook.hook ? hook.hook() : (hook.abortedEarly = true)));
      stream._push(chunk(id, created, model, { role: 'assistant', content: '' }, null));
      // With tools, an answer starting with the model's call character ('{', or '<' for a
      // <tool_call> template: free text cannot start with it) is a call: its text is held back
      // and sent as delta.tool_calls at the end.
      const mayCall = body.tools?.length > 0 && body.tool_choice !== 'none';
      const callStart = this.#info.config.tool_call_start ?? '{';
      let held = null;
      let sent = false;
      const onText = (text) => {
        if (mayCall && !sent && (held !== null || text.startsWith(callStart))) {
          held = (held ?? '') + text;
          return;
        }
        sent = true;
        stream._push(chunk(id, created, model, { content: text }, null));
      };
      this.#generate(body, request.signal, onText, hook).then(
        (r) => {
          if (r.tool_calls) {
            const calls = r.tool_calls.map((c, index) => ({ index, ...c }));
            stream._push(chunk(id, created, model, { tool_calls: calls }, null));
          } else if (held !== null) {
            stream._push(chunk(id, created, model, { content: held }, null));
          }
          stream._push(chunk(id, created, model, {}, r.finish_reason, { usage: usageOf(r), timings: timingsOf(r), ...(r.incomplete ? { incomplete: r.incomplete } : {}) }));
          stream._end();
        },
        (e) => stream._end(toKjarniError(e)),
      );
      return stream;
    }
    if (request.signal?.aborted) throw abortedError('the completion');
    const r = await this.#generate(body, request.signal, () => {});
    return {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{
        index: 0,
        message: r.tool_calls ? { role: 'assistant', content: null, tool_calls: r.tool_calls } : { role: 'assistant', content: r.text },
        logprobs: null,
        finish_reason: r.finish_reason,
      }],
      usage: usageOf(r),
      timings: timingsOf(r),
      ...(r.incomplete ? { incomplete: r.incomplete } : {}),
    };
  }

  /** Sentence embeddings (encoder models): one unit-length Float32Array per text. */
  async embed(texts) {
    const list = typeof texts === 'string' ? [texts] : Array.from(texts ?? [], String);
    if (this.#info.config.kind !== 'encoder') {
      throw new KjarniError('UNSUPPORTED', `${this.#info.model} is a decoder: embed() needs an encoder model (e.g. all-MiniLM-L6-v2)`);
    }
    if (list.length === 0) return [];
    const flat = await this.#run(async (w) => {
      try {
        return await guard(w.embed(JSON.stringify(list)));
      } catch (e) {
        throw toKjarniError(e);
      }
    });
    const dim = flat.length / list.length;
    return list.map((_, i) => flat.subarray(i * dim, (i + 1) * dim));
  }

  /**
   * Decoder models: one decode step with a GPU timestamp around every dispatch; resolves to
   * { timestamps, quantized, dispatches, total_gpu_us, kernels: [{ label, count, gpu_us }],
   * trace, adapter, variants, context_tokens }. Appends one token to the KV cache.
   */
  async profileDecodeStep() {
    if (this.#info.config.kind !== 'decoder') {
      throw new KjarniError('UNSUPPORTED', `${this.#info.model} is an encoder: profileDecodeStep() needs a decoder`);
    }
    return this.#run(async (w) => {
      try {
        return JSON.parse(await w.profileDecodeStep());
      } catch (e) {
        throw toKjarniError(e);
      }
    });
  }

  /**
   * Relevance of each document to `query` (cross-encoder / reranker models, e.g.
   * ms-marco-MiniLM-L-6-v2): one score per document, in their order (higher is more relevant;
   * the model's first logit, apply a sigmoid for sentence-transformers' 0..1 scores).
   */
  async rerank(query, docs) {
    const list = typeof docs === 'string' ? [docs] : Array.from(docs ?? [], String);
    if (this.#info.config.kind !== 'reranker') {
      throw new KjarniError('UNSUPPORTED', `${this.#info.model} is not a cross-encoder: rerank() needs one (e.g. ms-marco-MiniLM-L-6-v2)`);
    }
    if (list.length === 0) return new Float32Array(0);
    return this.#run(async (w) => {
      try {
        return await w.rerank(String(query), JSON.stringify(list));
      } catch (e) {
        throw toKjarniError(e);
      }
    });
  }

  /** GPU buffers counted by the runtime and the wasm memory size (bytes). */
  async stats() {
    if (!this.#w) return this.#final;
    const s = JSON.parse(this.#w.stats());
    return {
      liveBuffers: s.live_buffers,
      liveBytes: s.live_bytes,
      peakBytes: s.peak_bytes,
      createdBuffers: s.created_buffers,
      wasmMemoryBytes: s.wasm_memory_bytes,
      deviceLost: s.device_lost,
    };
  }

  /** Free the model and destroy the GPU device. The engine cannot be used afterwards. */
  async dispose() {
    const w = this.#w;
    if (!w) return;
    try {
      w.dispose(); // cancels a running operation; the device is destroyed when it returns
    } catch {
      // the instance panicked: nothing more to free here
    }
    await this.#lock;
    try {
      this.#final = await this.stats();
    } catch {
      this.#final = null;
    }
    this.#w = null;
    try {
      w.free();
    } catch {
      // as above
    }
  }

  /** Testing aid: destroy the device as a driver reset would (the next call fails with DEVICE_LOST). */
  async _loseDevice() {
    this.#w?.debugLoseDevice();
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

/**
 * The same API with the engine in a dedicated Web Worker (the page never blocks). Created by
 * Engine.load(url, { worker: true }). One worker per engine; dispose() terminates it.
 */
export class WorkerEngine {
  #worker;
  #info;
  #final = null;
  #pending = new Map();
  #next = 1;
  #dead = null;

  /** @internal */ constructor(worker) {
    this.#worker = worker;
    worker.onmessage = (ev) => this.#onMessage(ev.data);
    const fail = (why) => {
      this.#dead = new KjarniError('WORKER_ERROR', why);
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      fail(`the engine's worker failed: ${ev.message ?? 'error'}`);
    };
    worker.onmessageerror = () => fail('a message from the worker could not be read');
    const create = (req) => this.#create(req);
    this.chat = { completions: { create } };
  }

  static async load(baseUrl, options = {}) {
    const { signal, onProgress, workerUrl, worker: _w, ...rest } = options;
    if (signal?.aborted) throw abortedError('loading');
    if (typeof Worker === 'undefined') throw new KjarniError('UNSUPPORTED', 'Web Workers are not available here');
    const worker = new Worker(workerUrl ?? new URL('./worker.js', import.meta.url), { type: 'module' });
    const engine = new WorkerEngine(worker);
    try {
      const wasmUrl = rest.wasmUrl ? resolveUrl(rest.wasmUrl) : undefined;
      const structuredWasmUrl = rest.structuredWasmUrl ? resolveUrl(rest.structuredWasmUrl) : undefined;
      const opts = { kvCache: rest.kvCache, maxContext: rest.maxContext, cache: rest.cache, memoryBudget: rest.memoryBudget, idleTimeoutMs: rest.idleTimeoutMs, wasmUrl, structuredWasmUrl, preloadStructured: !!rest.preloadStructured };
      engine.#info = await engine.#call('load', { url: resolveUrl(baseUrl), options: opts }, { signal, onProgress });
      return engine;
    } catch (e) {
      worker.terminate();
      throw toKjarniError(e);
    }
  }

  #onMessage(m) {
    const p = this.#pending.get(m.id);
    if (!p) return;
    switch (m.type) {
      case 'progress':
        p.onProgress?.(m.progress);
        break;
      case 'chunk':
        p.onChunk?.(m.chunk);
        break;
      case 'result':
        this.#pending.delete(m.id);
        p.resolve(m.value);
        break;
      case 'error':
        this.#pending.delete(m.id);
        p.reject(new KjarniError(m.error.code, m.error.message, { field: m.error.field }));
        break;
    }
  }

  #call(op, args, { signal, onProgress, onChunk, transfer } = {}) {
    if (this.#dead) return Promise.reject(this.#dead);
    if (!this.#worker) return Promise.reject(new KjarniError('DISPOSED', 'the engine was disposed; create a new one'));
    const id = this.#next++;
    const abort = () => this.#worker?.postMessage({ id: this.#next++, op: 'abort', args: { target: id } });
    return new Promise((resolve, reject) => {
      const done = (f) => (v) => {
        signal?.removeEventListener('abort', abort);
        f(v);
      };
      this.#pending.set(id, { resolve: done(resolve), reject: done(reject), onProgress, onChunk });
      signal?.addEventListener('abort', abort, { once: true });
      this.#worker.postMessage({ id, op, args }, transfer ?? []);
      if (onChunk) onChunk.abort = abort;
    });
  }

  get info() {
    return this.#info;
  }

  capabilities() {
    return this.#info.capabilities;
  }

  async #create(request) {
    const body = normaliseRequest(request, this.#info?.config?.max_context);
    const { signal } = request;
    // As Engine: an already aborted signal never fires its 'abort' event, so it must be looked
    // at here (else the worker would run the whole generation).
    if (signal?.aborted) throw abortedError('the completion');
    const req = { ...body, stream: !!request.stream };
    if (!request.stream) return this.#call('chat', { request: req }, { signal });
    let abort = null;
    let abortedEarly = false;
    const stream = new ChatCompletionStream(() => (abort ? abort() : (abortedEarly = true)));
    const onChunk = (c) => stream._push(c);
    this.#call('chat', { request: req }, { signal, onChunk }).then(
      () => stream._end(),
      (e) => stream._end(toKjarniError(e)),
    );
    abort = onChunk.abort;
    if (abortedEarly) abort();
    return stream;
  }

  async embed(texts) {
    const list = typeof texts === 'string' ? [texts] : Array.from(texts ?? [], String);
    const flat = await this.#call('embed', { texts: list });
    const dim = list.length ? flat.length / list.length : 0;
    return list.map((_, i) => flat.subarray(i * dim, (i + 1) * dim));
  }

  async rerank(query, docs) {
    const list = typeof docs === 'string' ? [docs] : Array.from(docs ?? [], String);
    return this.#call('rerank', { query: String(query), docs: list });
  }

  /** The worker engine's stats (its own wasm memory); after dispose(), those its dispose answered (null if it did not). */
  async stats() {
    if (!this.#worker) return this.#final;
    return this.#call('stats', {});
  }

  async profileDecodeStep() {
    return this.#call('profile', {});
  }

  /**
   * Free the model and terminate the worker. A worker that does not answer within
   * `timeoutMs` (default 5 s; e.g. stuck in a long synchronous step) is terminated anyway;
   * calls still pending then reject with DISPOSED.
   */
  async dispose({ timeoutMs = DISPOSE_TIMEOUT_MS } = {}) {
    if (!this.#worker) return;
    let timer;
    try {
      if (!this.#dead) {
        const late = new Promise((ok) => (timer = setTimeout(ok, timeoutMs)));
        const last = this.#call('dispose', {}).then((st) => (this.#final = st), () => {});
        await Promise.race([last, late]);
      }
    } finally {
      clearTimeout(timer);
      this.#worker.terminate();
      this.#worker = null;
      const gone = new KjarniError('DISPOSED', 'the engine was disposed (its worker was terminated)');
      for (const p of this.#pending.values()) p.reject(gone);
      this.#pending.clear();
    }
  }

  async _loseDevice() {
    return this.#call('loseDevice', {});
  }

  /** Testing aid: make the worker's wasm instance panic (every pending call rejects with INTERNAL). */
  async _panic() {
    return this.#call('panic', {});
  }

  /** Testing aid: keep the worker's thread busy for `ms` (a stuck synchronous step). */
  _block(ms) {
    return this.#call('block', { ms });
  }
}
