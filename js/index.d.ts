// Types of kjarni-web's JavaScript API (js/index.js).

/** Stable error codes (error.code). */
export type KjarniErrorCode =
  | 'WEBGPU_UNAVAILABLE'
  | 'DEVICE_REQUEST_FAILED'
  | 'DEVICE_LOST'
  | 'MODEL_TOO_LARGE'
  | 'LIMIT_EXCEEDED'
  | 'NETWORK'
  | 'NOT_FOUND'
  | 'BAD_MODEL_FILE'
  | 'UNSUPPORTED_MODEL'
  | 'UNSUPPORTED'
  | 'CONTEXT_OVERFLOW'
  | 'ABORTED'
  | 'TOKENIZER'
  | 'GPU_ERROR'
  | 'SHAPE'
  | 'ALIASED'
  | 'BAD_INPUT'
  | 'DTYPE'
  | 'BAD_DATA'
  | 'INVALID_ARGUMENT'
  | 'BUSY'
  | 'DISPOSED'
  | 'NOT_LOADED'
  | 'WORKER_ERROR'
  | 'INTERNAL';

export class KjarniError extends Error {
  constructor(code: KjarniErrorCode | string, message: string, options?: { cause?: unknown; field?: string });
  readonly name: 'KjarniError';
  readonly code: KjarniErrorCode;
  /** For INVALID_ARGUMENT: the request field that was refused (e.g. `messages[0].role`). */
  readonly field?: string;
}

/** How long WorkerEngine.dispose() waits for its worker before terminating it (ms). */
export const DISPOSE_TIMEOUT_MS: number;

export function toKjarniError(e: unknown): KjarniError;

/** Load the wasm module (Engine.load does it; call it to use another wasm URL). */
export function initialize(wasmUrl?: string | URL): Promise<unknown>;
/**
 * Load the structured-output module (kjarni_structured_bg.wasm: constrained decoding for
 * `response_format` and `tools`) now instead of at the first request that needs it. Rejects
 * with NETWORK if it cannot be loaded (a later request tries again). Engines in a Web Worker
 * load their own copy: pass `preloadStructured: true` to Engine.load instead.
 */
export function preloadStructured(wasmUrl?: string | URL): Promise<unknown>;
/** Whether this JS context offers WebGPU. */
export function hasWebGPU(): boolean;
/** Capabilities of this device, probed with a temporary device. */
export function capabilities(): Promise<Capabilities>;
/** The same as a human-readable report. */
export function capabilitiesReport(): Promise<string>;
/** Size of the wasm memory of this JS context, in bytes. */
export function wasmMemorySize(): number;
/** GPU devices and counted GPU buffers alive in this JS context's wasm instance, over every
 *  engine of it (all 0 once every engine is disposed; a WorkerEngine's are in its worker). */
export function gpuMemory(): { liveDevices: number; liveBuffers: number; liveBytes: number };

export interface Capabilities {
  adapter: string;
  backend: string;
  max_workgroup_storage: number;
  max_invocations: number;
  max_storage_binding: number;
  max_buffer_size: number;
  subgroups: boolean;
  f16: boolean;
  variants: Record<string, unknown>;
  [key: string]: unknown;
}

export interface LoadProgress {
  /** Bytes of weights loaded so far. */
  loaded: number;
  /** Bytes of weights in all files. */
  total: number;
  /** loaded / total, 0 … 1. */
  progress: number;
  /** The file being read. */
  file: string;
  /**
   * Set on the one report of a load whose files could not all be written to the Cache API
   * because the storage quota is exceeded (loaded, total: 0; file: ''). Those writes are not
   * retried on later loads of this page until a cache is cleared.
   */
  cache?: 'quota-exceeded';
}

/** What the Cache API did during a load (the `cache` load option). */
export interface CacheInfo {
  /** Files read from the cache. */
  hits: number;
  /** Files the cache did not have (or had a stale version of). */
  misses: number;
  /** Files written to the cache. */
  stored: number;
  /** Writes that failed (interrupted download, size mismatch). */
  failed: number;
  /** Requests resumed after a dropped stream. */
  resumed: number;
  /** Cached files the server confirmed current (ETag / Last-Modified / length). */
  revalidated: number;
  /** Cached files the server has a new version of: the model's cached files were dropped. */
  stale: number;
  /** Revalidations that failed with a network error: the cached copy was used (offline). */
  offline: number;
  /** A write was skipped or failed because the storage quota is exceeded. */
  quotaExceeded: boolean;
  /** Files not written for the quota. */
  quotaSkipped: number;
}

export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  /** KV cache storage: f16 (default), int8 (≈ half of f16) or f32. */
  kvCache?: 'f16' | 'int8' | 'f32';
  /** Context length to allocate (default 2048, capped by the model's). */
  maxContext?: number;
  /** Abort the download; the promise rejects with code ABORTED and everything is freed. */
  signal?: AbortSignal;
  /** Run the engine in a dedicated Web Worker (same API; the page never blocks). */
  worker?: boolean;
  /**
   * Cache API store for downloaded files, reused by the next load (default `DEFAULT_CACHE`;
   * `false`: always download). Files are stored only when complete and size-checked.
   */
  cache?: string | false;
  /**
   * Bytes of GPU memory the model (weights + KV cache + activations) may use; checked before any
   * weight is downloaded (code MODEL_TOO_LARGE). Buffers over the device limits always are.
   */
  memoryBudget?: number;
  /** Abort a request that makes no progress for this long (ms, default 30000): NETWORK. */
  idleTimeoutMs?: number;
  /** Where kjarni_web_bg.wasm is (default: next to index.js). */
  wasmUrl?: string | URL;
  /** Where worker.js is (default: next to index.js). */
  workerUrl?: string | URL;
  /** Where kjarni_structured_bg.wasm is (default: next to kjarni_structured.js, next to index.js). */
  structuredWasmUrl?: string | URL;
  /**
   * Load the structured-output module with the model instead of at the first `response_format`
   * / `tools` request (default false: plain chat and embeddings never download it).
   */
  preloadStructured?: boolean;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  /** May be null on an assistant message that has `tool_calls`. */
  content: string | Array<{ type: 'text'; text: string }> | null;
  /** The calls an assistant message made (a previous completion's `message.tool_calls`). */
  tool_calls?: ToolCall[];
  /** On a `tool` message: the id of the call it answers. */
  tool_call_id?: string;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  /** Most new tokens (default: until EOS or the end of the context). */
  max_tokens?: number;
  max_completion_tokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
  stop?: string | string[];
  /** Constrain the output (llguidance; an invalid or unsupported schema is INVALID_ARGUMENT
   *  naming its path, before any token is generated). */
  response_format?: ResponseFormat;
  /** Functions the model may call; the arguments are constrained by each `parameters` schema.
   *  Where the chat template defines tool calls (Qwen2.5's `<tool_call>`, Llama 3.1's
   *  `{"name", "parameters"}`) the template renders the tools and the call is written its way;
   *  otherwise a generic JSON call (`info.config.tool_call_format`). */
  tools?: Tool[];
  /** Default 'auto' (text or one call); 'required' or a named function forces a call. */
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };
  signal?: AbortSignal;
}

/** OpenAI's response formats, plus `regex` (whole output) and `grammar` (Lark, llguidance's
 *  dialect: a `start` rule, `%json { schema }` for embedded JSON). */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; schema: object; strict?: boolean } }
  | { type: 'regex'; pattern: string }
  | { type: 'grammar'; grammar: string };

export interface Tool {
  type: 'function';
  function: { name: string; description?: string; parameters?: object };
}

export interface ToolCall {
  id: string;
  type: 'function';
  /** `arguments` is JSON text, valid under the tool's `parameters`. */
  function: { name: string; arguments: string };
}

/** "abort": stopped by an AbortSignal or stream.abort() (the text so far is kept).
 *  "length" with a response_format or tools: the output was cut before it was complete
 *  (the completion's `incomplete` says so). "tool_calls": the answer is a call. */
export type FinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface Timings {
  prefill_ms: number;
  decode_ms: number;
  /** Prompt tokens whose KV cache was reused from the previous turn. */
  cached_prompt_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string; tool_calls?: Array<ToolCall & { index: number }> };
    logprobs: null;
    finish_reason: FinishReason | null;
  }>;
  /** On the last chunk. */
  usage?: Usage;
  /** On the last chunk. */
  timings?: Timings;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] };
    logprobs: null;
    finish_reason: FinishReason;
  }>;
  usage: Usage;
  timings: Timings;
  /** Why a constrained output is not complete (finish_reason "length"). */
  incomplete?: string;
}

export class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  /** Stop generating (the last chunk has finish_reason "abort"). */
  abort(): void;
  readonly controller: { abort(): void };
  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk>;
}

export interface ModelInfo {
  model: string;
  url: string;
  config:
    | { kind: 'decoder'; architecture: string; layers: number; hidden_size: number; vocab_size: number; max_context: number; kv_cache: string; chat_templates: string[];
        /** How this model writes a tool call, and the first character of one (a stream holds text starting with it back). */
        tool_call_format: 'generic' | 'hermes' | 'llama3'; tool_call_start: string }
    | { kind: 'encoder'; architecture: string; layers: number; hidden_size: number; dim: number; max_tokens: number; pooling: 'Mean' | 'Cls' | 'LastToken'; normalize: boolean }
    | { kind: 'reranker'; architecture: string; layers: number; hidden_size: number; labels: number; max_tokens: number };
  capabilities: Capabilities;
  /** What the Cache API did during the load. */
  cache: CacheInfo;
}

export interface EngineStats {
  /** GPU buffers alive (counted by the runtime); 0 after dispose(). */
  liveBuffers: number;
  liveBytes: number;
  peakBytes: number;
  createdBuffers: number;
  /** Size of the engine's WebAssembly.Memory (it only grows). */
  wasmMemoryBytes: number;
  deviceLost: boolean;
}

/** GPU time of one decode step, per dispatch (timestamp queries; times null without them). */
export interface DecodeProfile {
  /** The device has timestamp-query: times were measured. */
  timestamps: boolean;
  /** Every time is a multiple of 65.536 µs: the browser quantises timestamps (Chrome does unless
   *  chrome://flags "WebGPU Developer Features" is on), so per-kernel times are not meaningful. */
  quantized: boolean;
  /** Dispatches of the step (= dispatches per decoded token). */
  dispatches: number;
  total_gpu_us: number | null;
  /** Per pipeline label (`kernel::entry[variant constants]`), the most expensive first. */
  kernels: Array<{ label: string; count: number; gpu_us: number | null }>;
  /** Every dispatch, in order. */
  trace: Array<{ label: string; gpu_us: number | null }>;
  adapter: string;
  variants: Capabilities['variants'];
  context_tokens: number;
}

export interface Chat {
  completions: {
    create(request: ChatCompletionRequest & { stream: true }): Promise<ChatCompletionStream>;
    create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    create(request: ChatCompletionRequest): Promise<ChatCompletion | ChatCompletionStream>;
  };
}

interface EngineApi {
  readonly info: ModelInfo;
  readonly chat: Chat;
  /** Adapter, limits, features and the chosen kernel variants of this engine's device. */
  capabilities(): Capabilities;
  /** Sentence embeddings (encoder models): one vector per text, pooled and normalised as the model's sentence-transformers files say. */
  embed(texts: string | string[]): Promise<Float32Array[]>;
  /** Relevance of each document to `query` (cross-encoder models): one score per document, in order; higher is more relevant (the first logit). */
  rerank(query: string, docs: string | string[]): Promise<Float32Array>;
  /** After dispose(): the last stats (buffer counts 0), or null if a worker did not answer. */
  stats(): Promise<EngineStats>;
  /** Decoder models: run one decode step with a GPU timestamp around every dispatch (each in
   *  a compute pass of its own) and return the per-kernel times. Appends one token to the KV
   *  cache, as generation would. */
  profileDecodeStep(): Promise<DecodeProfile>;
  /** Free the model and destroy the GPU device. */
  dispose(): Promise<void>;
}

/** The Cache API store used when `cache` is not given. */
export const DEFAULT_CACHE: string;

export class Engine implements EngineApi {
  static load(baseUrl: string | URL, options?: LoadOptions): Promise<Engine | WorkerEngine>;
  readonly info: ModelInfo;
  readonly chat: Chat;
  capabilities(): Capabilities;
  embed(texts: string | string[]): Promise<Float32Array[]>;
  rerank(query: string, docs: string | string[]): Promise<Float32Array>;
  stats(): Promise<EngineStats>;
  profileDecodeStep(): Promise<DecodeProfile>;
  dispose(): Promise<void>;
}

export class WorkerEngine implements EngineApi {
  static load(baseUrl: string | URL, options?: LoadOptions): Promise<WorkerEngine>;
  readonly info: ModelInfo;
  readonly chat: Chat;
  capabilities(): Capabilities;
  embed(texts: string | string[]): Promise<Float32Array[]>;
  rerank(query: string, docs: string | string[]): Promise<Float32Array>;
  stats(): Promise<EngineStats>;
  profileDecodeStep(): Promise<DecodeProfile>;
  /** Terminates the worker; one that does not answer within `timeoutMs` (default DISPOSE_TIMEOUT_MS) is terminated anyway. */
  dispose(options?: { timeoutMs?: number }): Promise<void>;
}
