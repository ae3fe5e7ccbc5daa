//! The JavaScript API (wasm-bindgen). The only module that knows about JS.
//!
//! This layer is deliberately small: [`WasmEngine`] holds one device, one model and its
//! tokenizer, and exposes promise-returning methods with JSON in and out. The ergonomic API
//! (`Engine.load`, `engine.chat.completions.create` with async iterators, AbortSignal, the Web
//! Worker proxy) is the hand-written ESM wrapper in `js/`, copied into the npm package by
//! `scripts/build_pkg.sh`.
//!
//! Errors reach JS as `Error` objects with `name = "KjarniError"` and a stable `code`
//! ([`crate::Error::code`], plus the JS-side codes `BUSY`, `DISPOSED`, `NOT_LOADED`,
//! `INVALID_ARGUMENT`).
//!
//! Methods are synchronous functions returning a `Promise` (not `async fn` on `&self`): the
//! state lives in an `Rc` and is taken out of its cell for the duration of an operation, so
//! `cancel()`, `stats()` and `dispose()` can be called while a load or a generation runs
//! (wasm-bindgen's own `&self` async methods would hold a borrow across every `await`).

use crate::api::ChatRequest;
use crate::error::Error;
use crate::generate::{CancelToken, CausalLm, FinishReason, GenerateOptions, SamplingParams};
use crate::gpu::memory::MemoryTracker;
use crate::gpu::Gpu;
use crate::load::estimate::{estimate_source, DeviceLimits, EstimateOptions};
use crate::load::{CacheStats, FetchSource, LoadOptions, ModelConfig, Progress};
use crate::models::bert::BertModel;
use crate::models::cross_encoder::CrossEncoder;
use crate::models::gguf::{load_llama_gguf, GgufOptions};
use crate::models::llama::{Llama, LlamaOptions};
use crate::ops::kv_cache::KvDType;
use crate::tokenizer::Tokenizer;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

thread_local! {
    /// The JS function told of a panic (`setPanicHandler`).
    static PANIC_HANDLER: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

/// Installs the panic hook: a bug shows a Rust message in the console (not "unreachable"), and
/// the handler set with `setPanicHandler` is called with it, so that the JS layer can fail every
/// pending call with `INTERNAL` (the wasm instance traps after a panic: its promises would
/// otherwise never settle).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let message = info.to_string();
        let handler = PANIC_HANDLER.with(|h| h.try_borrow().ok().and_then(|h| h.clone()));
        if let Some(f) = handler {
            let _ = f.call1(&JsValue::NULL, &JsValue::from_str(&message));
        }
    }));
}

/// Set (or clear) the function called with the message of a panic, before the instance traps.
#[wasm_bindgen(js_name = setPanicHandler)]
pub fn set_panic_handler(handler: Option<js_sys::Function>) {
    PANIC_HANDLER.with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            *h = handler;
        }
    });
}

/// Testing aid: a promise whose future panics when first polled (the instance is unusable
/// afterwards). The panic hook must fail every pending call with `INTERNAL`.
#[wasm_bindgen(js_name = debugPanic)]
#[allow(clippy::panic)]
pub fn debug_panic() -> js_sys::Promise {
    future_to_promise(async {
        if js_sys::Math::random() < 2.0 {
            panic!("debugPanic: a deliberate panic");
        }
        Ok(JsValue::UNDEFINED)
    })
}

/// `performance.now()` of this JS context (window or worker), or `Date.now()` where there is no
/// `performance`: the clock of [`crate::ops::tune::now_ms`] in the browser and of the
/// generation timings here (only differences are used).
pub(crate) fn now_ms() -> f64 {
    let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = perf.as_ref().and_then(|p| {
        let f = js_sys::Reflect::get(p, &"now".into())
            .ok()?
            .dyn_into::<js_sys::Function>()
            .ok()?;
        f.call0(p).ok()?.as_f64()
    });
    now.unwrap_or_else(js_sys::Date::now)
}

/// A JS `Error` with a stable `code` property.
fn coded_error(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name("KjarniError");
    let _ = js_sys::Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(code));
    err.into()
}

fn js_error(e: Error) -> JsValue {
    coded_error(e.code(), &e.to_string())
}

/// Create a device and return its capabilities (limits, features, chosen kernel variants) as JSON.
#[wasm_bindgen(js_name = capabilities)]
pub async fn capabilities() -> Result<String, JsValue> {
    let gpu = Gpu::new().await.map_err(js_error)?;
    Ok(gpu.caps().to_json())
}

/// The same as a human-readable report.
#[wasm_bindgen(js_name = capabilitiesReport)]
pub async fn capabilities_report() -> Result<String, JsValue> {
    let gpu = Gpu::new().await.map_err(js_error)?;
    Ok(gpu.caps().to_string())
}

/// JSON `{ live_devices, live_buffers, live_bytes }`: the GPU devices and counted buffers alive in
/// this wasm instance, over every engine (and the temporary devices of `capabilities()`). 0 once
/// every engine is disposed: a device or buffer kept by a disposed engine or an aborted load
/// shows up here, where no engine is left to ask.
#[wasm_bindgen(js_name = gpuMemory)]
pub fn gpu_memory() -> String {
    serde_json::to_string(&crate::gpu::process_memory()).unwrap_or_default()
}

/// Size of this module's WebAssembly memory in bytes (it only grows; a leak shows up here).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| m.buffer().dyn_into::<js_sys::ArrayBuffer>().ok())
        .map(|b| f64::from(b.byte_length()))
        .unwrap_or(0.0)
}

enum Model {
    Decoder { lm: Box<Llama>, tok: Box<Tokenizer> },
    Encoder(Box<BertModel>),
    Reranker(Box<CrossEncoder>),
}

struct Loaded {
    gpu: Gpu,
    model: Model,
}

#[derive(Default)]
struct Shared {
    /// The model, or `None` before `load`, while an operation runs (taken out), after `dispose`.
    loaded: RefCell<Option<Loaded>>,
    busy: Cell<bool>,
    disposed: Cell<bool>,
    /// Set once the device was lost: every later call fails with DEVICE_LOST.
    lost: RefCell<Option<String>>,
    /// The running operation's token (`cancel()` sets it).
    cancel: RefCell<CancelToken>,
    /// The device's buffer counters, kept after `dispose` (they drop to 0).
    tracker: RefCell<Option<Arc<MemoryTracker>>>,
    /// JSON description of the loaded model (kind, config, capabilities).
    info: RefCell<Option<String>>,
    /// The constrained-decoding vocabulary of the loaded decoder, built at its first
    /// `response_format` / `tools` request (a walk over the whole vocabulary).
    vocab: RefCell<Option<crate::structured::Vocab>>,
    /// Without llguidance in this wasm (the npm package's core): the JS function that loads the
    /// structured module (resolves to its initialised namespace; rejects with a coded error),
    /// called at the first constrained request (`setStructuredLoader`).
    #[cfg_attr(feature = "structured", allow(dead_code))]
    structured_loader: RefCell<Option<js_sys::Function>>,
}

impl Shared {
    /// Take the model out for an operation, with a fresh cancellation token.
    fn begin(&self) -> Result<(Loaded, CancelToken), JsValue> {
        if self.disposed.get() {
            return Err(coded_error("DISPOSED", "the engine was disposed; create a new one"));
        }
        if let Some(lost) = self.lost.borrow().as_ref() {
            return Err(js_error(Error::DeviceLost(lost.clone())));
        }
        if self.busy.get() {
            return Err(coded_error(
                "BUSY",
                "another operation is running on this engine (one at a time)",
            ));
        }
        let loaded = self
            .loaded
            .borrow_mut()
            .take()
            .ok_or_else(|| coded_error("NOT_LOADED", "no model loaded: call load() first"))?;
        let token = CancelToken::new();
        *self.cancel.borrow_mut() = token.clone();
        self.busy.set(true);
        Ok((loaded, token))
    }

    /// Put the model back (or drop it when disposed meanwhile or the device was lost).
    fn end<T>(&self, loaded: Loaded, mut result: crate::Result<T>) -> Result<T, JsValue> {
        self.busy.set(false);
        if result.is_err() {
            // A failed read or submit may be the first sign of a lost device: report that.
            if let Err(lost @ Error::DeviceLost(_)) = loaded.gpu.check_errors("after a failed operation") {
                result = Err(lost);
            }
        }
        if let Err(Error::DeviceLost(why)) = &result {
            *self.lost.borrow_mut() = Some(why.clone());
            drop(loaded);
        } else if self.disposed.get() {
            drop(loaded);
        } else {
            *self.loaded.borrow_mut() = Some(loaded);
        }
        result.map_err(js_error)
    }
}

/// Options of [`WasmEngine::load`] (JSON; the JS wrapper fills the defaults).
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LoadOpts {
    /// "f16" (default), "int8" or "f32".
    kv_cache: Option<String>,
    /// Tokens to allocate the KV cache for (default 2048, capped by the model's).
    max_context: Option<usize>,
    /// Cache API name to persist downloaded files in (`None`: no persistence).
    cache: Option<String>,
    /// Bytes of GPU memory the model may use in all (`None`: only the per-buffer limits are
    /// checked; WebGPU reports no memory size). Checked before any weight is downloaded.
    memory_budget: Option<u64>,
    /// Milliseconds a request may make no progress before it is aborted (NETWORK).
    idle_timeout_ms: Option<u32>,
}

fn kv_dtype(name: Option<&str>) -> Result<KvDType, JsValue> {
    match name.unwrap_or("f16") {
        "f16" => Ok(KvDType::F16),
        "int8" => Ok(KvDType::Int8),
        "f32" => Ok(KvDType::F32),
        other => Err(coded_error(
            "INVALID_ARGUMENT",
            &format!("kvCache must be 'f16', 'int8' or 'f32', not '{other}'"),
        )),
    }
}

fn model_name(url: &str) -> String {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url).to_string()
}

async fn load_model(
    url: &str,
    opts: &LoadOpts,
    kv: KvDType,
    on_progress: Option<&js_sys::Function>,
    cancel: &CancelToken,
) -> crate::Result<(Loaded, CacheStats)> {
    let gpu = Gpu::new().await?;
    let max_context = opts.max_context.unwrap_or(2048).max(1);
    let path = url.split(['?', '#']).next().unwrap_or(url);
    if crate::load::gguf::is_gguf(path) {
        // One .gguf file is a whole model: weights, hyper-parameters, tokenizer, chat template.
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        let source = FetchSource::new(dir)
            .with_cache(opts.cache.as_deref())
            .with_cancel(Some(cancel.clone()))
            .with_idle_timeout(
                opts.idle_timeout_ms
                    .unwrap_or(crate::load::source::DEFAULT_IDLE_TIMEOUT_MS),
            );
        let gguf = GgufOptions {
            load: LoadOptions {
                cancel: Some(cancel.clone()),
                ..Default::default()
            },
            limits: Some(DeviceLimits::of(&gpu, opts.memory_budget)),
            ..Default::default()
        };
        let lopts = LlamaOptions {
            kv_cache: kv,
            max_context,
        };
        let loaded = load_llama_gguf(&gpu, &source, file, &lopts, &gguf, &mut progress_reporter(on_progress)).await?;
        for w in &loaded.warnings {
            web_sys::console::warn_1(&JsValue::from_str(&format!("kjarni-web: {file}: {w}")));
        }
        if cancel.is_cancelled() {
            return Err(Error::Cancelled(format!("loading {url}")));
        }
        source.flush_cache().await;
        let stats = report_cache(&source, on_progress);
        let model = Model::Decoder {
            lm: Box::new(loaded.model),
            tok: Box::new(loaded.tokenizer),
        };
        return Ok((Loaded { gpu, model }, stats));
    }
    let source = FetchSource::new(url)
        .with_cache(opts.cache.as_deref())
        .with_cancel(Some(cancel.clone()))
        .with_idle_timeout(
            opts.idle_timeout_ms
                .unwrap_or(crate::load::source::DEFAULT_IDLE_TIMEOUT_MS),
        );
    // Fail early (before any weight is downloaded) when the model cannot fit.
    let est_opts = EstimateOptions {
        max_context,
        kv_dtype: kv,
        ..EstimateOptions::default()
    };
    let limits = DeviceLimits::of(&gpu, opts.memory_budget);
    estimate_source(&source, &est_opts, &limits)
        .await?
        .check_budget(&limits)?;
    let load = LoadOptions {
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let mut report = progress_reporter(on_progress);
    let model = match ModelConfig::load(&source).await? {
        ModelConfig::Decoder(_) => {
            let tok = Tokenizer::load(&source).await?;
            let lopts = LlamaOptions {
                kv_cache: kv,
                max_context,
            };
            let lm = Llama::load_with(&gpu, &source, &lopts, &load, &mut report).await?;
            Model::Decoder {
                lm: Box::new(lm),
                tok: Box::new(tok),
            }
        }
        ModelConfig::Bert(c) if c.is_classifier() => Model::Reranker(Box::new(
            CrossEncoder::load_with(&gpu, &source, &load, &mut report).await?,
        )),
        ModelConfig::Bert(_) => {
            Model::Encoder(Box::new(BertModel::load_with(&gpu, &source, &load, &mut report).await?))
        }
    };
    if cancel.is_cancelled() {
        return Err(Error::Cancelled(format!("loading {url}")));
    }
    // Files fetched on a cache miss are written to the Cache API in the background: finish
    // (or fail quietly, the model is loaded either way) before reporting the load done.
    source.flush_cache().await;
    let stats = report_cache(&source, on_progress);
    Ok((Loaded { gpu, model }, stats))
}

/// The cache statistics of a finished load; a write skipped or failed for the storage quota
/// is reported once to `on_progress(done, total, file, note)` with note `"quota-exceeded"`
/// (done, total and file 0, 0, "").
fn report_cache(source: &FetchSource, on_progress: Option<&js_sys::Function>) -> CacheStats {
    let stats = source.cache_stats();
    if stats.quota_skipped > 0 {
        if let Some(f) = on_progress {
            let args = js_sys::Array::of4(
                &JsValue::from_f64(0.0),
                &JsValue::from_f64(0.0),
                &JsValue::from_str(""),
                &JsValue::from_str("quota-exceeded"),
            );
            let _ = f.apply(&JsValue::NULL, &args);
        }
    }
    stats
}

/// The load progress callback: `on_progress(done, total, file)` in bytes.
fn progress_reporter(on_progress: Option<&js_sys::Function>) -> impl FnMut(&Progress) + '_ {
    move |p: &Progress| {
        if let Some(f) = on_progress {
            let _ = f.call3(
                &JsValue::NULL,
                &JsValue::from_f64(p.done as f64),
                &JsValue::from_f64(p.total as f64),
                &JsValue::from_str(p.file),
            );
        }
    }
}

fn info_json(url: &str, loaded: &Loaded, cache: &CacheStats) -> String {
    let caps: serde_json::Value = serde_json::from_str(&loaded.gpu.caps().to_json()).unwrap_or(serde_json::Value::Null);
    let model = match &loaded.model {
        Model::Decoder { lm, tok } => {
            let c = lm.config();
            serde_json::json!({
                "kind": "decoder",
                "architecture": format!("{:?}", c.arch),
                "layers": c.num_hidden_layers,
                "hidden_size": c.hidden_size,
                "vocab_size": tok.vocab_size(),
                "max_context": lm.max_context(),
                "kv_cache": match lm.kv_dtype() { KvDType::F32 => "f32", KvDType::F16 => "f16", KvDType::Int8 => "int8" },
                "chat_templates": tok.template_names(),
                "tool_call_format": crate::structured::CallFormat::of(tok),
                "tool_call_start": crate::structured::CallFormat::of(tok).call_start().to_string(),
            })
        }
        Model::Encoder(b) => serde_json::json!({
            "kind": "encoder",
            "architecture": "Bert",
            "layers": b.config().num_hidden_layers,
            "hidden_size": b.config().hidden_size,
            "dim": b.dim(),
            "max_tokens": b.max_tokens(),
            "pooling": format!("{:?}", b.head().pooling),
            "normalize": b.head().normalize,
        }),
        Model::Reranker(c) => serde_json::json!({
            "kind": "reranker",
            "architecture": "BertForSequenceClassification",
            "layers": c.encoder().config().num_hidden_layers,
            "hidden_size": c.encoder().config().hidden_size,
            "labels": c.labels(),
            "max_tokens": c.encoder().max_tokens(),
        }),
    };
    serde_json::json!({ "model": model_name(url), "url": url, "config": model, "capabilities": caps, "cache": cache.to_json() }).to_string()
}

/// A decoder behind [`CausalLm`] that reuses the KV cache's common prefix for the prompt and
/// times the prefill (until the first id arrives) and the decode steps (ids after the first).
struct Session<'a> {
    lm: &'a mut Llama,
    first: bool,
    reused: usize,
    started: f64,
    first_token: Option<f64>,
    prefill_ms: f64,
    decode_ms: f64,
    decode_steps: usize,
}

impl CausalLm for Session<'_> {
    fn submit_prompt(
        &mut self,
        gpu: &Gpu,
        ids: &[u32],
        sampling: &SamplingParams,
        out: &crate::gpu::Buffer,
    ) -> crate::Result<()> {
        self.started = now_ms();
        self.first = false;
        let common = self.lm.cached_ids().iter().zip(ids).take_while(|(a, b)| a == b).count();
        // At least one token must run to produce logits.
        self.reused = common.min(ids.len().saturating_sub(1));
        self.lm.truncate(self.reused)?;
        self.lm.submit_prefill(gpu, &ids[self.reused..], ids, sampling, out)
    }
    fn submit_step(&mut self, gpu: &Gpu, out: &crate::gpu::Buffer) -> crate::Result<()> {
        self.lm.submit_decode(gpu, out)
    }
    fn submit_steps(&mut self, gpu: &Gpu, outs: &[&crate::gpu::Buffer]) -> crate::Result<()> {
        self.lm.submit_decode_many(gpu, outs)
    }
    fn submit_logits(&mut self, gpu: &Gpu) -> crate::Result<bool> {
        self.lm.submit_decode_logits(gpu)?;
        Ok(true)
    }
    fn submit_sample(&mut self, gpu: &Gpu, out: &crate::gpu::Buffer) -> crate::Result<()> {
        self.lm.submit_decode_sample(gpu, out)
    }
    fn set_logit_mask(&mut self, gpu: &Gpu, mask: Option<&[u32]>) -> crate::Result<()> {
        self.lm.set_logit_mask(gpu, mask)
    }
    fn finish(&mut self, accepted: &[u32]) -> crate::Result<()> {
        self.lm.finish_generation(accepted)
    }
    fn eos_ids(&self) -> Vec<u32> {
        CausalLm::eos_ids(&*self.lm)
    }
    fn context_left(&self) -> usize {
        if self.first {
            // The prompt replaces whatever is cached (its common prefix is kept, not re-added).
            self.lm.max_context()
        } else {
            CausalLm::context_left(&*self.lm)
        }
    }
    fn on_token(&mut self) {
        let now = now_ms();
        match self.first_token {
            None => {
                self.first_token = Some(now);
                self.prefill_ms = now - self.started;
            }
            Some(t) => {
                self.decode_ms = now - t;
                self.decode_steps += 1;
            }
        }
    }
}

async fn run_chat(
    loaded: &mut Loaded,
    req: &ChatRequest,
    cancel: &CancelToken,
    on_text: &js_sys::Function,
    vocab: &RefCell<Option<crate::structured::Vocab>>,
    #[cfg_attr(feature = "structured", allow(unused_variables))] loader: Option<js_sys::Function>,
) -> crate::Result<String> {
    let Loaded { gpu, model } = loaded;
    let Model::Decoder { lm, tok } = model else {
        return Err(Error::Unsupported {
            kernel: "chat.completions.create",
            variant: "an encoder model".into(),
            why: "chat needs a decoder (e.g. SmolLM2); encoders support embed()".into(),
        });
    };
    // Structured output: the request's own errors (INVALID_ARGUMENT naming the schema path)
    // first, then what the model cannot do, all before any token is generated.
    // Without llguidance in this wasm: the request's own checks, then the model's token bytes
    // (UNSUPPORTED for this model), then the structured module (loaded by JS at the first
    // constrained request: NETWORK if it cannot be), which builds the vocabulary.
    #[cfg(not(feature = "structured"))]
    if vocab.borrow().is_none()
        && crate::structured::is_constrained(req.response_format.as_ref(), &req.tools, &req.tool_choice)
    {
        crate::structured::check(req.response_format.as_ref(), &req.tools, &req.tool_choice)?;
        let tokens = crate::structured::TokenBytes::new(tok, lm.config().vocab_size, &CausalLm::eos_ids(&**lm))?;
        let module = load_structured(loader.as_ref()).await?;
        if cancel.is_cancelled() {
            return Err(Error::Cancelled("the completion was aborted".into()));
        }
        *vocab.borrow_mut() = Some(crate::structured::Vocab::js(tokens, &module)?);
    }
    let mut cached = vocab.borrow().clone();
    let mut prepared = crate::structured::prepare_chat(
        tok,
        lm.config().vocab_size,
        &CausalLm::eos_ids(&**lm),
        &mut cached,
        &req.messages,
        req.response_format.as_ref(),
        &req.tools,
        &req.tool_choice,
    )?;
    *vocab.borrow_mut() = cached;
    let prompt = prepared.prompt(tok)?;
    let opts = GenerateOptions {
        sampling: req.sampling.clone(),
        max_tokens: req.max_tokens.unwrap_or(0),
        stop: req.stop.clone(),
        ..Default::default()
    };
    let mut session = Session {
        lm: &mut **lm,
        first: true,
        reused: 0,
        started: 0.0,
        first_token: None,
        prefill_ms: 0.0,
        decode_ms: 0.0,
        decode_steps: 0,
    };
    let mut emit = |s: &str| {
        let _ = on_text.call1(&JsValue::NULL, &JsValue::from_str(s));
    };
    let tok_ref: &Tokenizer = &**tok;
    let constraint = prepared.constraint.as_mut();
    let g = crate::structured::generate(
        &mut session,
        gpu,
        |ids: &[u32]| tok_ref.decode(ids, true),
        &prompt,
        &opts,
        cancel,
        &mut emit,
        constraint,
    )
    .await?;
    let finish = match g.finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "abort",
    };
    let constrained = prepared.constraint.is_some();
    let outcome = constrained.then(|| prepared.finish(&g));
    let mask = prepared.constraint.as_ref().map(|c| c.mask_time());
    Ok(serde_json::json!({
        "text": g.text,
        "finish_reason": outcome.as_ref().map_or(finish, |o| o.finish_reason),
        "tool_calls": outcome.as_ref().map(|o| &o.tool_calls).filter(|c| !c.is_empty()),
        "incomplete": outcome.as_ref().and_then(|o| o.incomplete.as_deref()),
        "mask_ms": mask.map(|m| m.0),
        "prompt_tokens": prompt.len(),
        "completion_tokens": g.tokens.len(),
        "cached_prompt_tokens": session.reused,
        "prefill_ms": session.prefill_ms,
        "decode_ms": session.decode_ms,
        "decode_steps": session.decode_steps,
    })
    .to_string())
}

/// The structured module's namespace from `loader` (a JS function returning a promise).
#[cfg(not(feature = "structured"))]
async fn load_structured(loader: Option<&js_sys::Function>) -> crate::Result<JsValue> {
    let failed = |e: JsValue| {
        let prop = |k: &str| {
            js_sys::Reflect::get(&e, &JsValue::from_str(k))
                .ok()
                .and_then(|v| v.as_string())
        };
        Error::Network {
            url: "kjarni_structured_bg.wasm".into(),
            detail: prop("message")
                .or_else(|| e.as_string())
                .unwrap_or_else(|| format!("{e:?}")),
        }
    };
    let loader = loader.ok_or_else(|| {
        Error::Internal(
            "constrained decoding: this wasm has no llguidance and no structured module loader was set".into(),
        )
    })?;
    let p = loader
        .call0(&JsValue::NULL)
        .map_err(failed)?
        .dyn_into::<js_sys::Promise>()
        .map_err(|_| Error::Internal("the structured module loader did not return a promise".into()))?;
    wasm_bindgen_futures::JsFuture::from(p).await.map_err(failed)
}

/// One decode step of the loaded decoder with per-dispatch GPU times ([`crate::gpu::profile`]).
/// The step runs after the cached tokens (after one token of its own when none are cached) and
/// appends its token to the cache, as generation would.
async fn profile_decode(loaded: &mut Loaded) -> crate::Result<String> {
    let Loaded { gpu, model } = loaded;
    let Model::Decoder { lm, .. } = model else {
        return Err(Error::Unsupported {
            kernel: "profileDecodeStep",
            variant: "an encoder model".into(),
            why: "the decode-step profile needs a decoder".into(),
        });
    };
    let token = lm.cached_ids().last().copied().unwrap_or(0);
    if lm.cached_ids().is_empty() {
        lm.forward(gpu, &[token]).await?;
    }
    // Room for the warm-up step and the profiled one.
    if lm.cached_tokens() + 2 > lm.max_context() {
        lm.truncate(lm.max_context().saturating_sub(2))?;
    }
    // A step before the profiled one compiles the one-token pipelines and fills the caches.
    lm.forward(gpu, &[token]).await?;
    gpu.begin_profile()?;
    let step = lm.forward(gpu, &[token]).await;
    let profile = gpu.end_profile().await?;
    step?;
    let mut json: serde_json::Value = serde_json::from_str(&profile.to_json()).unwrap_or(serde_json::Value::Null);
    json["adapter"] = serde_json::json!(gpu.caps().adapter);
    json["variants"] = serde_json::to_value(&gpu.caps().variants).unwrap_or(serde_json::Value::Null);
    json["context_tokens"] = serde_json::json!(lm.cached_tokens());
    Ok(json.to_string())
}

/// One model on one GPU device. Build it with `new WasmEngine()`, then `load(url, …)`.
#[wasm_bindgen]
pub struct WasmEngine {
    s: Rc<Shared>,
}

impl Default for WasmEngine {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl WasmEngine {
    /// An empty engine.
    #[wasm_bindgen(constructor)]
    pub fn new() -> WasmEngine {
        WasmEngine {
            s: Rc::new(Shared::default()),
        }
    }

    /// Load an HF-style model directory at `url` (config.json, tokenizer files, safetensors
    /// weights). `options`: JSON `{ kvCache, maxContext, cache }`. `on_progress(done, total,
    /// file)` is called as weights stream in. Resolves to the model's description (JSON).
    /// `cancel()` stops the download and frees what was allocated (code ABORTED).
    pub fn load(&self, url: String, options: String, on_progress: Option<js_sys::Function>) -> js_sys::Promise {
        let s = self.s.clone();
        // Checked and started synchronously, so that `cancel()` right after reaches this load.
        let started = (|| {
            let opts: LoadOpts = serde_json::from_str(&options)
                .map_err(|e| coded_error("INVALID_ARGUMENT", &format!("load options: {e}")))?;
            let kv = kv_dtype(opts.kv_cache.as_deref())?;
            if s.disposed.get() {
                return Err(coded_error("DISPOSED", "the engine was disposed; create a new one"));
            }
            if s.busy.get() || s.loaded.borrow().is_some() {
                return Err(coded_error(
                    "BUSY",
                    "this engine is loading or has a model; create a new engine",
                ));
            }
            let token = CancelToken::new();
            *s.cancel.borrow_mut() = token.clone();
            s.busy.set(true);
            Ok((opts, kv, token))
        })();
        future_to_promise(async move {
            let (opts, kv, token) = started?;
            let r = load_model(&url, &opts, kv, on_progress.as_ref(), &token).await;
            s.busy.set(false);
            let (loaded, cache) = r.map_err(js_error)?;
            if s.disposed.get() {
                return Err(coded_error("ABORTED", "the engine was disposed while loading"));
            }
            let info = info_json(&url, &loaded, &cache);
            *s.tracker.borrow_mut() = Some(loaded.gpu.memory.clone());
            *s.info.borrow_mut() = Some(info.clone());
            *s.vocab.borrow_mut() = None;
            *s.loaded.borrow_mut() = Some(loaded);
            Ok(JsValue::from_str(&info))
        })
    }

    /// Run a chat completion. `request`: JSON with OpenAI field names (`messages`, `max_tokens`,
    /// `temperature`, `top_p`, `top_k`, `min_p`, `repetition_penalty`, `seed`, `stop`,
    /// `response_format`, `tools`, `tool_choice`; src/structured). Adds `tool_calls` (a call's
    /// text is not streamed), `incomplete` (why a constrained output was cut) and `mask_ms`.
    /// `on_text(delta)` receives the text as it is generated. Resolves to JSON `{ text,
    /// finish_reason ("stop" | "length" | "abort"), prompt_tokens, completion_tokens,
    /// cached_prompt_tokens, prefill_ms, decode_ms, decode_steps }`.
    pub fn generate(&self, request: String, on_text: js_sys::Function) -> js_sys::Promise {
        let s = self.s.clone();
        // Parse and take the model now, synchronously: a `cancel()` right after this call then
        // reaches this generation's token.
        // Checked field by field (INVALID_ARGUMENT naming the field), max_tokens against the
        // loaded model's context.
        let started = s.begin().and_then(|(loaded, cancel)| {
            let context = match &loaded.model {
                Model::Decoder { lm, .. } => lm.max_context(),
                Model::Encoder(_) | Model::Reranker(_) => usize::MAX,
            };
            match ChatRequest::parse(&request, context) {
                Ok(req) => Ok((req, loaded, cancel)),
                Err(e) => {
                    s.end(loaded, Ok(()))?;
                    Err(js_error(e))
                }
            }
        });
        future_to_promise(async move {
            let (req, mut loaded, cancel) = started?;
            let loader = s.structured_loader.borrow().clone();
            let r = run_chat(&mut loaded, &req, &cancel, &on_text, &s.vocab, loader).await;
            s.end(loaded, r).map(|json| JsValue::from_str(&json))
        })
    }

    /// Set the function that loads the structured module (constrained decoding) in a build
    /// without llguidance: called with no arguments at the first `response_format` / `tools`
    /// request, it resolves to the initialised namespace of kjarni_structured.js (a rejection is
    /// reported as NETWORK). A build with llguidance ignores it.
    #[wasm_bindgen(js_name = setStructuredLoader)]
    pub fn set_structured_loader(&self, loader: Option<js_sys::Function>) {
        *self.s.structured_loader.borrow_mut() = loader;
    }

    /// Whether this wasm has constrained decoding compiled in (else it needs the structured
    /// module: `setStructuredLoader`).
    #[wasm_bindgen(js_name = hasStructured)]
    pub fn has_structured() -> bool {
        cfg!(feature = "structured")
    }

    /// Sentence embeddings of `texts` (JSON array of strings) with an encoder model: resolves to
    /// one `Float32Array` of `texts.length × dim` values (each row unit-length).
    pub fn embed(&self, texts: String) -> js_sys::Promise {
        let s = self.s.clone();
        let started = serde_json::from_str::<Vec<String>>(&texts)
            .map_err(|e| coded_error("INVALID_ARGUMENT", &format!("embed expects an array of strings: {e}")))
            .and_then(|texts| s.begin().map(|(loaded, _)| (texts, loaded)));
        future_to_promise(async move {
            let (texts, loaded) = started?;
            let r = match &loaded.model {
                Model::Encoder(b) => {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    b.embed(&loaded.gpu, &refs).await
                }
                _ => Err(Error::Unsupported {
                    kernel: "embed",
                    variant: "a decoder or reranker model".into(),
                    why: "embeddings need an encoder (e.g. all-MiniLM-L6-v2)".into(),
                }),
            };
            let rows = s.end(loaded, r)?;
            let flat: Vec<f32> = rows.into_iter().flatten().collect();
            Ok(js_sys::Float32Array::from(flat.as_slice()).into())
        })
    }

    /// Profile one decode step of the loaded decoder: resolves to JSON `{ timestamps,
    /// quantized, dispatches, total_gpu_us, kernels: [{ label, count, gpu_us }], trace: [{
    /// label, gpu_us }], adapter, variants, context_tokens }` (times `null` where the device has
    /// no `timestamp-query`).
    #[wasm_bindgen(js_name = profileDecodeStep)]
    pub fn profile_decode_step(&self) -> js_sys::Promise {
        let s = self.s.clone();
        let started = s.begin();
        future_to_promise(async move {
            let (mut loaded, _) = started?;
            let r = profile_decode(&mut loaded).await;
            s.end(loaded, r).map(|json| JsValue::from_str(&json))
        })
    }

    /// Relevance scores of `docs` (JSON array of strings) for `query` with a cross-encoder
    /// (reranker) model: resolves to a `Float32Array` with one score (the first logit) per
    /// document, in their order.
    pub fn rerank(&self, query: String, docs: String) -> js_sys::Promise {
        let s = self.s.clone();
        let started = serde_json::from_str::<Vec<String>>(&docs)
            .map_err(|e| coded_error("INVALID_ARGUMENT", &format!("rerank expects an array of strings: {e}")))
            .and_then(|docs| s.begin().map(|(loaded, _)| (docs, loaded)));
        future_to_promise(async move {
            let (docs, loaded) = started?;
            let r = match &loaded.model {
                Model::Reranker(c) => {
                    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
                    c.rerank(&loaded.gpu, &query, &refs).await
                }
                _ => Err(Error::Unsupported {
                    kernel: "rerank",
                    variant: "a model without a classification head".into(),
                    why: "reranking needs a cross-encoder (BertForSequenceClassification, e.g. ms-marco-MiniLM-L-6-v2)"
                        .into(),
                }),
            };
            let scores = s.end(loaded, r)?;
            Ok(js_sys::Float32Array::from(scores.as_slice()).into())
        })
    }

    /// Stop the running load or generation (a generation ends with finish_reason "abort").
    pub fn cancel(&self) {
        self.s.cancel.borrow().cancel();
    }

    /// JSON description of the loaded model (kind, config, capabilities), or `undefined`.
    pub fn info(&self) -> Option<String> {
        self.s.info.borrow().clone()
    }

    /// JSON `{ live_buffers, live_bytes, peak_bytes, created_buffers, wasm_memory_bytes }`:
    /// GPU buffers counted by the runtime (0 after `dispose`) and the wasm memory size.
    pub fn stats(&self) -> String {
        let mem = self.s.tracker.borrow().as_ref().map(|t| t.stats());
        let (live_buffers, live_bytes, peak_bytes, created) = mem
            .map(|m| (m.live_buffers, m.live_bytes, m.peak_bytes, m.created_buffers))
            .unwrap_or_default();
        serde_json::json!({
            "live_buffers": live_buffers,
            "live_bytes": live_bytes,
            "peak_bytes": peak_bytes,
            "created_buffers": created,
            "wasm_memory_bytes": wasm_memory_bytes(),
            "busy": self.s.busy.get(),
            "disposed": self.s.disposed.get(),
            "device_lost": self.s.lost.borrow().is_some(),
        })
        .to_string()
    }

    /// Free the model and destroy the device (now, or when the running operation returns).
    pub fn dispose(&self) {
        self.s.disposed.set(true);
        self.s.cancel.borrow().cancel();
        let loaded = self.s.loaded.borrow_mut().take();
        drop(loaded);
    }

    /// Testing aid: destroy the GPU device as a driver reset would, so that the next call
    /// reports DEVICE_LOST.
    #[wasm_bindgen(js_name = debugLoseDevice)]
    pub fn debug_lose_device(&self) {
        if let Some(l) = self.s.loaded.borrow().as_ref() {
            l.gpu.device().destroy();
        }
    }
}
