//! [`FetchSource`]: a model directory over HTTP(S) with `fetch`, Range requests, resume after a
//! dropped connection, and an optional persistent copy of every completely downloaded file in
//! the browser's Cache API.
//!
//! **Cache (off by default; `with_cache(Some(name))`).** Every open first asks
//! `caches.open(name)` for the file's URL. A hit is served from the cached `Response` as a
//! `Blob`: `blob.slice(a, b).stream()`, so a range costs one chunked stream and memory stays
//! bounded (Chrome keeps cached bodies on disk; the Blob is a handle, not a copy). A miss for a
//! read that runs to the end of the file (the data section of a safetensors file, or a whole
//! small file such as `config.json`) fetches the **whole file without Range** and `tee()`s the
//! body: one branch feeds the loader (the header prefix is skipped), the other goes to
//! `cache.put`. The data is downloaded once. Smaller reads (the 8-byte length, the JSON
//! header) go to the network uncached.
//!
//! Integrity: only responses with a known length are stored, under a `X-Kjarni-Length`
//! header: the `Content-Length` of the 200 answer (without `Content-Encoding`), or, for
//! chunked answers, the end of the read that asked for the file's tail (≥ [`MIN_TEE_BYTES`]),
//! which the loader computed from the header. `cache.put` commits only
//! when the body stream completes (a network error errors the tee branch and the put rejects:
//! nothing is stored), and both after the put and on every hit the stored Blob's size is
//! compared with that header; a mismatch deletes the entry and reads from the network. An
//! interrupted download that was resumed is **not** cached (its bytes came from two responses);
//! the next load downloads it again. sha256 is not checked: `crypto.subtle.digest` is one-shot
//! (it would need the whole file in one ArrayBuffer), and safetensors indexes carry no hashes.
//!
//! **Revalidation.** An entry also keeps the server's `ETag` and `Last-Modified` of the
//! version it holds (`X-Kjarni-ETag`, `X-Kjarni-Last-Modified`). Before a cached file is used
//! the first time in a load (per [`FetchSource`] and its clones), a `HEAD` (or, where `HEAD`
//! is refused with 405 / 501, a `GET` of byte 0 whose body is not read; both past the HTTP
//! cache) asks the server for its current version: same `ETag` (weak marker ignored), else
//! same `Last-Modified` and length, else same length → the cached copy is used. A different
//! version (or 404 / 410) makes the **whole cached set of the model directory stale**: every
//! entry under the base URL is deleted, so files of two versions are never mixed (also not
//! later, offline), and the file is read from the network (and stored again). A network error
//! on the check means offline: the cached set is used unchecked for the rest of the load,
//! unless a file was already found changed in it (then the load fails with
//! [`Error::Network`]). Cross-origin, `ETag` is readable only where the server exposes it
//! (`Access-Control-Expose-Headers`, as Hugging Face does); `Last-Modified` always is.
//!
//! **Quota.** A write that fails with `QuotaExceededError`, or a file larger than what
//! `navigator.storage.estimate()` says is left, is not written and counted in
//! [`CacheStats::quota_skipped`]; after a `QuotaExceededError` no further writes are tried in
//! this JS context until [`clear_cache`] or [`FetchSource::evict`].
//!
//! **Resume.** When the body stream errors (or ends early while the length is known), the
//! reader asks again from the next byte it has not delivered, with `Range: bytes=N-` (or
//! `bytes=N-M`), up to `retries` times per open (default 3, with 250 ms × attempt pauses).
//! A 206 must start at N; a 200 (server ignoring Range) is skipped to N; an `ETag` that
//! changed between the answers is an error (the file changed on the server). After the retries
//! the stream error is returned as [`Error::Network`], or, for a stream that keeps ending
//! early, the loader's truncation [`Error::BadModelFile`]: partial weights are never used.

use super::{check_relative, content_range, ByteSource, RangeReader};
use crate::error::{Error, Result};
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Blob, Cache, CacheStorage, Headers, ReadableStream, ReadableStreamDefaultReader, Request,
    RequestInit, Response, ResponseInit,
};

/// The header a cached response carries: the file's length in bytes.
pub const LENGTH_HEADER: &str = "X-Kjarni-Length";

/// The header a cached response carries: the server's `ETag` of the stored version.
pub const ETAG_HEADER: &str = "X-Kjarni-ETag";

/// The header a cached response carries: the server's `Last-Modified` of the stored version.
pub const MODIFIED_HEADER: &str = "X-Kjarni-Last-Modified";

/// The header of a cached marker saying the server has no such file (404 / 410): an optional
/// file (`chat_template.jinja`, an index) is then known to be absent offline too.
pub const ABSENT_HEADER: &str = "X-Kjarni-Absent";

/// A read of a file of unknown length at least this large is taken as the file's tail (the
/// cache path downloads the whole file for it).
pub const MIN_TEE_BYTES: u64 = 1 << 20;

/// Resumed requests per open, by default.
pub const DEFAULT_RETRIES: u32 = 3;

/// A request whose answer or body makes no progress for this long is aborted ([`Error::Network`]),
/// by default: a stalled server must not hold a load forever.
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 30_000;

/// How often a waiting request looks at the cancel token and the idle clock.
const WATCH_TICK_MS: i32 = 200;

/// What a waiting request watches: the load's cancel token (its `abort()` reaches the network at
/// once: the fetch is aborted) and the idle timeout.
#[derive(Debug, Clone)]
struct Watch {
    cancel: Option<crate::generate::CancelToken>,
    idle_ms: u32,
}

/// A promise resolving to `value` after `ms` milliseconds (setTimeout of the global).
fn timer(ms: i32, value: &JsValue) -> Promise {
    let global = js_sys::global();
    Promise::new(&mut |resolve, _| {
        if let Ok(f) = Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .and_then(|f| f.dyn_into::<Function>().map_err(JsValue::from))
        {
            let _ = f.call3(&global, &resolve, &JsValue::from(ms), value);
        }
    })
}

/// Await `promise` while watching `watch`: a cancelled token aborts the request and returns
/// [`Error::Cancelled`]; no settlement for `idle_ms` aborts it and returns [`Error::Network`].
/// Otherwise the promise's own outcome.
async fn watched(
    url: &str,
    promise: &Promise,
    abort: Option<&AbortController>,
    watch: &Watch,
) -> Result<std::result::Result<JsValue, JsValue>> {
    let start = js_sys::Date::now();
    let tick = JsValue::from(js_sys::Object::new());
    loop {
        let race = Promise::race(&Array::of2(promise, &timer(WATCH_TICK_MS, &tick)));
        match JsFuture::from(race).await {
            Ok(v) if v == tick => {}
            other => return Ok(other),
        }
        if watch.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            if let Some(a) = abort {
                a.abort();
            }
            return Err(Error::Cancelled(format!("loading {url}")));
        }
        if js_sys::Date::now() - start > f64::from(watch.idle_ms) {
            if let Some(a) = abort {
                a.abort();
            }
            return Err(Error::Network {
                url: url.to_string(),
                detail: format!(
                    "no data for {} ms (stalled server?); the request was aborted",
                    watch.idle_ms
                ),
            });
        }
    }
}

/// What the cache did for one [`FetchSource`] (and its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Opens served from the cache.
    pub hits: u32,
    /// Opens the cache did not have.
    pub misses: u32,
    /// Files written to the cache (put completed and size verified).
    pub stored: u32,
    /// Writes that failed (stream error, quota, size mismatch): nothing stored.
    pub failed: u32,
    /// Resumed requests after a dropped stream.
    pub resumed: u32,
    /// Cached files the server confirmed current (a `HEAD` whose `ETag` / `Last-Modified` /
    /// length matched the stored one).
    pub revalidated: u32,
    /// Cached files the server has a different version of: the model's whole cached set was
    /// deleted (never mixed with new files) and the file came from the network.
    pub stale: u32,
    /// Revalidations that failed with a network error (offline): the cached copy was used.
    pub offline: u32,
    /// Files not written because the storage quota is exceeded (the write failed with
    /// `QuotaExceededError`, or the storage estimate said it cannot fit): not retried.
    pub quota_skipped: u32,
}

impl CacheStats {
    /// The statistics as JSON (camelCase, for the JS API).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "hits": self.hits,
            "misses": self.misses,
            "stored": self.stored,
            "failed": self.failed,
            "resumed": self.resumed,
            "revalidated": self.revalidated,
            "stale": self.stale,
            "offline": self.offline,
            "quotaExceeded": self.quota_skipped > 0,
            "quotaSkipped": self.quota_skipped,
        })
    }
}

/// What revalidation learnt so far in one load (all files of one [`FetchSource`] and clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Freshness {
    /// Nothing checked yet, or every file checked was current.
    #[default]
    Online,
    /// A check failed with a network error: the cached set is used as it is.
    Offline,
    /// A file changed on the server: the cached set was dropped; cached files are no longer
    /// used without a successful check.
    Changed,
}

thread_local! {
    /// A cache write of this JS context failed with `QuotaExceededError`: later writes are
    /// skipped (and counted) instead of failing again on every load.
    static QUOTA_FULL: Cell<bool> = const { Cell::new(false) };
}

#[derive(Debug, Default)]
struct Shared {
    /// File lengths learnt from earlier answers (URL → bytes).
    lens: RefCell<HashMap<String, u64>>,
    /// Cache writes in flight.
    writes: RefCell<Vec<Promise>>,
    stats: Cell<CacheStats>,
    /// URLs whose cached copy was checked against the server in this load.
    checked: RefCell<std::collections::HashSet<String>>,
    freshness: Cell<Freshness>,
    /// Storage left (quota − usage), when the estimate was read; written files subtract.
    room: Cell<Option<f64>>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

/// A model directory served over HTTP(S): `base` + file name, read with `fetch`.
///
/// Ranges are asked for with a `Range` header; a server that ignores it (answers 200 with
/// the whole file) is handled by skipping the prefix of the stream, so every server works
/// and Range-capable ones transfer only what is needed. Clones share the cache statistics and
/// pending cache writes.
#[derive(Debug, Clone)]
pub struct FetchSource {
    base: String,
    cache: Option<String>,
    retries: u32,
    watch: Watch,
    shared: Rc<Shared>,
}

impl FetchSource {
    /// Files under `base` (an absolute URL, or one relative to the page / worker script).
    /// No cache, [`DEFAULT_RETRIES`] resumes.
    pub fn new(base: &str) -> Self {
        let mut base = base.to_string();
        if !base.is_empty() && !base.ends_with('/') {
            base.push('/');
        }
        let watch = Watch {
            cancel: None,
            idle_ms: DEFAULT_IDLE_TIMEOUT_MS,
        };
        FetchSource {
            base,
            cache: None,
            retries: DEFAULT_RETRIES,
            watch,
            shared: Rc::default(),
        }
    }

    /// Abort the request in flight as soon as `cancel` is set (the load then fails with
    /// [`Error::Cancelled`] without waiting for the server).
    pub fn with_cancel(mut self, cancel: Option<crate::generate::CancelToken>) -> Self {
        self.watch.cancel = cancel;
        self
    }

    /// Abort a request whose answer or body makes no progress for `ms` milliseconds
    /// (default [`DEFAULT_IDLE_TIMEOUT_MS`]).
    pub fn with_idle_timeout(mut self, ms: u32) -> Self {
        self.watch.idle_ms = ms.max(1);
        self
    }

    /// Keep completely downloaded files in the Cache API cache `name` (e.g.
    /// `"kjarni-models-v1"`) and serve later reads from it; `None`: network only.
    pub fn with_cache(mut self, name: Option<&str>) -> Self {
        self.cache = name.map(str::to_string);
        self
    }

    /// Resumed requests allowed per open after a dropped stream (0: none).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The base URL (ends with `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// What the cache did so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.stats.get()
    }

    /// Wait until every cache write started by this source (and its clones) has finished
    /// (stored or failed). A load returns as soon as the loader has its bytes; the cache branch
    /// of the stream may still be writing.
    pub async fn flush_cache(&self) {
        loop {
            let pending: Vec<Promise> = self.shared.writes.borrow_mut().drain(..).collect();
            if pending.is_empty() {
                return;
            }
            for p in pending {
                let _ = JsFuture::from(p).await;
            }
        }
    }

    /// Delete this model directory's files from the cache. Returns how many were removed.
    pub async fn evict(&self) -> Result<u32> {
        let Some(name) = &self.cache else { return Ok(0) };
        let Some(cache) = open_cache(name).await else {
            return Ok(0);
        };
        QUOTA_FULL.with(|q| q.set(false));
        self.shared.room.set(None);
        let prefix = absolute(&self.base);
        let mut n = 0;
        for url in cache_keys(&cache).await? {
            if url.starts_with(&prefix) {
                let _ = JsFuture::from(cache.delete_with_str(&url)).await;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Delete the whole cache `name` (all models). Returns whether it existed.
pub async fn clear_cache(name: &str) -> Result<bool> {
    let Some(storage) = cache_storage() else {
        return Ok(false);
    };
    QUOTA_FULL.with(|q| q.set(false));
    let v = JsFuture::from(storage.delete(name))
        .await
        .map_err(|e| cache_error(name, &e))?;
    Ok(v.as_bool().unwrap_or(false))
}

/// The files in cache `name`: (absolute URL, bytes), sorted by URL (markers of absent files
/// left out).
pub async fn cached_files(name: &str) -> Result<Vec<(String, u64)>> {
    let Some(cache) = open_cache(name).await else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for url in cache_keys(&cache).await? {
        let response = match JsFuture::from(cache.match_with_str(&url)).await {
            Ok(v) => v.dyn_into::<Response>().ok(),
            Err(_) => None,
        };
        if response.as_ref().is_some_and(|r| header(r, ABSENT_HEADER).is_some()) {
            continue; // a marker for a file the server does not have
        }
        let len = response
            .and_then(|r| header(&r, LENGTH_HEADER))
            .and_then(|s| s.parse().ok());
        out.push((url, len.unwrap_or(0)));
    }
    out.sort();
    Ok(out)
}

fn cache_error(name: &str, e: &JsValue) -> Error {
    Error::Network {
        url: format!("cache '{name}'"),
        detail: js_detail(e),
    }
}

async fn cache_keys(cache: &Cache) -> Result<Vec<String>> {
    let keys = JsFuture::from(cache.keys())
        .await
        .map_err(|e| cache_error("keys", &e))?;
    let keys: Array = keys.dyn_into().map_err(|e| cache_error("keys", &e))?;
    Ok(keys
        .iter()
        .filter_map(|k| k.dyn_into::<Request>().ok())
        .map(|r| r.url())
        .collect())
}

/// `caches` of the global (Window or Worker); absent outside secure contexts.
fn cache_storage() -> Option<CacheStorage> {
    let v = Reflect::get(&js_sys::global(), &JsValue::from_str("caches")).ok()?;
    v.dyn_into::<CacheStorage>().ok()
}

async fn open_cache(name: &str) -> Option<Cache> {
    let storage = cache_storage()?;
    JsFuture::from(storage.open(name)).await.ok()?.dyn_into::<Cache>().ok()
}

/// A URL made absolute against the page / worker location.
fn absolute(url: &str) -> String {
    Request::new_with_str(url)
        .map(|r| r.url())
        .unwrap_or_else(|_| url.to_string())
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).ok().flatten()
}

fn js_detail(v: &JsValue) -> String {
    v.as_string()
        .or_else(|| v.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{v:?}"))
}

/// What a cached entry says about the version it holds.
#[derive(Debug, Clone, Default)]
struct Validators {
    etag: Option<String>,
    modified: Option<String>,
    len: u64,
    /// A marker: the server had no such file.
    absent: bool,
}

/// The cached copy of `url`, when complete (its size equals the stored length), with the
/// server's validators it was stored with; an entry that fails the check is deleted.
async fn cached_entry(cache: &Cache, url: &str) -> Option<(Blob, Validators)> {
    let hit = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    let response = hit.dyn_into::<Response>().ok()?;
    if header(&response, ABSENT_HEADER).is_some() {
        let blob = Blob::new().ok()?;
        return Some((
            blob,
            Validators {
                absent: true,
                ..Default::default()
            },
        ));
    }
    let want: Option<u64> = header(&response, LENGTH_HEADER).and_then(|s| s.parse().ok());
    let blob = match response.blob() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|b| b.dyn_into::<Blob>().ok()),
        Err(_) => None,
    };
    match (blob, want) {
        (Some(b), Some(w)) if b.size() as u64 == w => {
            let v = Validators {
                etag: header(&response, ETAG_HEADER),
                modified: header(&response, MODIFIED_HEADER),
                len: w,
                absent: false,
            };
            Some((b, v))
        }
        _ => {
            let _ = JsFuture::from(cache.delete_with_str(url)).await;
            None
        }
    }
}

async fn cached_blob(cache: &Cache, url: &str) -> Option<Blob> {
    cached_entry(cache, url)
        .await
        .filter(|(_, v)| !v.absent)
        .map(|(b, _)| b)
}

/// Remember in `cache` that the server has no file at `url` (best effort; not counted).
async fn store_absent(cache: &Cache, url: &str) {
    let Ok(headers) = Headers::new() else { return };
    if headers.set(ABSENT_HEADER, "1").is_err() {
        return;
    }
    let init = ResponseInit::new();
    init.set_headers(&headers);
    if let Ok(r) = Response::new_with_opt_str_and_init(Some(""), &init) {
        let _ = JsFuture::from(cache.put_with_str(url, &r)).await;
    }
}

/// An `ETag` without its weak marker (a proxy that compresses may turn a strong one weak).
fn etag_value(e: &str) -> &str {
    let e = e.trim();
    e.strip_prefix("W/").unwrap_or(e)
}

/// Whether the server's answer (`HEAD`, or a 1-byte ranged `GET`) describes the version `v`
/// holds: the `ETag`s when both are known, else `Last-Modified`, else the length; nothing to
/// compare counts as the same.
fn same_version(v: &Validators, response: &Response) -> bool {
    let encoded = header(response, "Content-Encoding").is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    let len = match response.status() {
        206 => header(response, "Content-Range")
            .and_then(|r| content_range(&r))
            .and_then(|(_, total)| total),
        _ if encoded => None,
        _ => header(response, "Content-Length").and_then(|l| l.trim().parse::<u64>().ok()),
    };
    let same_len = len.is_none_or(|l| l == v.len);
    if let (Some(a), Some(b)) = (&v.etag, header(response, "ETag")) {
        return etag_value(a) == etag_value(&b);
    }
    if let (Some(a), Some(b)) = (&v.modified, header(response, "Last-Modified")) {
        return a.trim() == b.trim() && same_len;
    }
    same_len
}

/// Ask the server about `url` without its body: `HEAD`, or `GET` of byte 0 where `HEAD` is not
/// allowed (the body is not read). Past the browser's HTTP cache.
async fn probe(url: &str, watch: &Watch) -> Result<Response> {
    let net = |e: JsValue| Error::Network {
        url: url.to_string(),
        detail: js_detail(&e),
    };
    let mut last = None;
    for method in ["HEAD", "GET"] {
        let abort = AbortController::new().map_err(net)?;
        let init = RequestInit::new();
        init.set_method(method);
        init.set_signal(Some(&abort.signal()));
        init.set_cache(web_sys::RequestCache::NoStore);
        let request = Request::new_with_str_and_init(url, &init).map_err(net)?;
        if method == "GET" {
            request.headers().set("Range", "bytes=0-0").map_err(net)?;
        }
        let response = global_fetch(url, &request, &abort, watch).await?;
        if method == "GET" {
            abort.abort();
        }
        if matches!(response.status(), 405 | 501) {
            last = Some(response);
            continue;
        }
        return Ok(response);
    }
    last.ok_or_else(|| Error::Network {
        url: url.to_string(),
        detail: "no answer".into(),
    })
}

/// The name of a JS error (`QuotaExceededError`, ...).
fn js_error_name(e: &JsValue) -> Option<String> {
    Reflect::get(e, &JsValue::from_str("name")).ok()?.as_string()
}

/// Bytes the origin may still store (`navigator.storage.estimate()`: quota − usage), when known.
async fn storage_room() -> Option<f64> {
    let global = js_sys::global();
    let nav = Reflect::get(&global, &JsValue::from_str("navigator")).ok()?;
    let storage = Reflect::get(&nav, &JsValue::from_str("storage")).ok()?;
    let estimate: Function = Reflect::get(&storage, &JsValue::from_str("estimate"))
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: Promise = estimate.call0(&storage).ok()?.dyn_into().ok()?;
    let e = JsFuture::from(promise).await.ok()?;
    let quota = Reflect::get(&e, &JsValue::from_str("quota")).ok()?.as_f64()?;
    let usage = Reflect::get(&e, &JsValue::from_str("usage")).ok()?.as_f64()?;
    Some(quota - usage)
}

/// `fetch(request)` through the global's `fetch` property (looked up at call time, so a
/// page's or test's wrapper of `globalThis.fetch` sees the request). Works in Window and Worker.
async fn global_fetch(url: &str, request: &Request, abort: &AbortController, watch: &Watch) -> Result<Response> {
    let net = |e: JsValue| Error::Network {
        url: url.to_string(),
        detail: js_detail(&e),
    };
    let global = js_sys::global();
    let f = Reflect::get(&global, &JsValue::from_str("fetch")).map_err(net)?;
    let f: Function = f.dyn_into().map_err(|_| Error::Network {
        url: url.to_string(),
        detail: "no fetch in this JS context".into(),
    })?;
    let promise: Promise = f.call1(&global, request).map_err(net)?.dyn_into().map_err(net)?;
    watched(url, &promise, Some(abort), watch)
        .await?
        .map_err(net)?
        .dyn_into::<Response>()
        .map_err(net)
}

/// Wait `ms` milliseconds (setTimeout of the global).
async fn sleep(ms: i32) {
    let global = js_sys::global();
    let promise = Promise::new(&mut |resolve, _| {
        if let Ok(f) = Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .and_then(|f| f.dyn_into::<Function>().map_err(JsValue::from))
        {
            let _ = f.call2(&global, &resolve, &JsValue::from(ms));
        } else {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// One HTTP answer, checked: the body, bytes to skip (server ignored Range), file length.
struct Answer {
    response: Response,
    skip: u64,
    len: Option<u64>,
    whole: bool,
}

/// GET `url` from byte `start` (to `end`, exclusive; `None`: to the end). `ranged: false` asks
/// for the whole file (the cache path).
async fn request(
    url: &str,
    start: u64,
    end: Option<u64>,
    ranged: bool,
    abort: &AbortController,
    watch: &Watch,
) -> Result<Answer> {
    let net = |e: JsValue| Error::Network {
        url: url.to_string(),
        detail: js_detail(&e),
    };
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_signal(Some(&abort.signal()));
    let request = Request::new_with_str_and_init(url, &init).map_err(net)?;
    if ranged && (start > 0 || end.is_some()) {
        let value = match end {
            Some(e) if e > start => format!("bytes={start}-{}", e - 1),
            _ => format!("bytes={start}-"),
        };
        request.headers().set("Range", &value).map_err(net)?;
    }
    let response = global_fetch(url, &request, abort, watch).await?;
    let status = response.status();
    let length = header(&response, "Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let encoded = header(&response, "Content-Encoding").is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    let (skip, len, whole) = match status {
        404 | 410 => return Err(Error::NotFound { file: url.to_string() }),
        206 => {
            let (first, total) = header(&response, "Content-Range")
                .and_then(|v| content_range(&v))
                .ok_or_else(|| Error::Network {
                    url: url.to_string(),
                    detail: "206 response without a valid Content-Range".into(),
                })?;
            if first != start {
                return Err(Error::Network {
                    url: url.to_string(),
                    detail: format!("asked for bytes from {start}, the server sent bytes from {first}"),
                });
            }
            (0, total, false)
        }
        // The whole file: the server ignored Range (or none was asked for).
        200 => (start, if encoded { None } else { length }, true),
        416 => {
            return Err(Error::BadModelFile {
                file: url.to_string(),
                detail: format!("bytes from {start} are past the end of the file (HTTP 416)"),
            })
        }
        s => {
            return Err(Error::Network {
                url: url.to_string(),
                detail: format!("HTTP {s} {}", response.status_text()),
            })
        }
    };
    Ok(Answer {
        response,
        skip,
        len,
        whole,
    })
}

fn stream_reader(url: &str, body: &ReadableStream) -> Result<ReadableStreamDefaultReader> {
    body.get_reader()
        .dyn_into::<ReadableStreamDefaultReader>()
        .map_err(|o| Error::Network {
            url: url.to_string(),
            detail: js_detail(&o.into()),
        })
}

impl FetchSource {
    fn learn_len(&self, url: &str, len: Option<u64>) {
        if let Some(l) = len {
            self.shared.lens.borrow_mut().insert(url.to_string(), l);
        }
    }

    /// Start writing the `tee`d branch of a whole-file answer into the cache, with the answer's
    /// validators (`ETag`, `Last-Modified`) for later revalidation.
    fn store(&self, cache: Cache, url: &str, body: ReadableStream, len: u64, answer: &Response) -> Result<()> {
        let net = |e: JsValue| Error::Network {
            url: url.to_string(),
            detail: js_detail(&e),
        };
        let headers = Headers::new().map_err(net)?;
        headers.set("Content-Type", "application/octet-stream").map_err(net)?;
        headers.set(LENGTH_HEADER, &len.to_string()).map_err(net)?;
        if let Some(e) = header(answer, "ETag") {
            headers.set(ETAG_HEADER, &e).map_err(net)?;
        }
        if let Some(m) = header(answer, "Last-Modified") {
            headers.set(MODIFIED_HEADER, &m).map_err(net)?;
        }
        let init = ResponseInit::new();
        init.set_headers(&headers);
        let response = Response::new_with_opt_readable_stream_and_init(Some(&body), &init).map_err(net)?;
        let put = cache.put_with_str(url, &response);
        let shared = self.shared.clone();
        let url = url.to_string();
        let done = wasm_bindgen_futures::future_to_promise(async move {
            // The put resolves only when the whole body was written; a stream error rejects it.
            let ok = match JsFuture::from(put).await {
                Ok(_) => cached_blob(&cache, &url).await.is_some(),
                Err(e) => {
                    if js_error_name(&e).as_deref() == Some("QuotaExceededError") {
                        // Full: later writes of this JS context are skipped, not retried.
                        QUOTA_FULL.with(|q| q.set(true));
                        shared.count(|s| s.quota_skipped += 1);
                        return Ok(JsValue::FALSE);
                    }
                    false
                }
            };
            if ok {
                if let Some(r) = shared.room.get() {
                    shared.room.set(Some(r - len as f64));
                }
            }
            shared.count(|s| if ok { s.stored += 1 } else { s.failed += 1 });
            Ok(JsValue::from_bool(ok))
        });
        self.shared.writes.borrow_mut().push(done);
        Ok(())
    }

    /// Whether a file of `len` bytes may be written to the cache: not when a write already
    /// failed with `QuotaExceededError`, nor when the storage estimate says it cannot fit
    /// (counted in [`CacheStats::quota_skipped`]).
    async fn fits(&self, len: u64) -> bool {
        if QUOTA_FULL.with(Cell::get) {
            self.shared.count(|s| s.quota_skipped += 1);
            return false;
        }
        if self.shared.room.get().is_none() {
            self.shared
                .room
                .set(Some(storage_room().await.unwrap_or(f64::INFINITY)));
        }
        if self.shared.room.get().is_some_and(|r| (len as f64) > r) {
            self.shared.count(|s| s.quota_skipped += 1);
            return false;
        }
        true
    }

    /// Whether the cached copy of `url` (stored with `v`) is the server's current version.
    /// Asked once per file and load with a `HEAD` (see [`probe`]). A network error means
    /// offline: the cached set is used as it is, unless a file was already found changed in
    /// this load (then the error is returned: old and new files are never mixed). A file gone
    /// from the server (404 / 410) counts as changed; other failures as offline.
    async fn still_current(&self, url: &str, v: &Validators) -> Result<bool> {
        if self.shared.checked.borrow().contains(url) {
            return Ok(true);
        }
        let freshness = self.shared.freshness.get();
        if freshness == Freshness::Offline {
            return Ok(true);
        }
        let unreachable = |detail: String| -> Result<bool> {
            if freshness == Freshness::Changed {
                return Err(Error::Network {
                    url: url.to_string(),
                    detail: format!(
                        "{detail}; the model changed on the server during this load, so its cached files are not used unchecked"
                    ),
                });
            }
            self.shared.freshness.set(Freshness::Offline);
            self.shared.count(|s| s.offline += 1);
            Ok(true)
        };
        let response = match probe(url, &self.watch).await {
            Ok(r) => r,
            Err(Error::Network { detail, .. }) => return unreachable(detail),
            Err(e) => return Err(e),
        };
        let status = response.status();
        let current = match status {
            200..=299 => !v.absent && same_version(v, &response),
            404 | 410 => v.absent,
            s => return unreachable(format!("HTTP {s} checking the cached copy")),
        };
        if current {
            self.shared.checked.borrow_mut().insert(url.to_string());
            self.shared.count(|s| s.revalidated += 1);
        } else {
            self.shared.freshness.set(Freshness::Changed);
            self.shared.count(|s| s.stale += 1);
        }
        Ok(current)
    }
}

impl ByteSource for FetchSource {
    type Reader = FetchReader;

    fn locate(&self, file: &str) -> String {
        format!("{}{file}", self.base)
    }

    async fn open(&self, file: &str, start: u64, end: Option<u64>) -> Result<FetchReader> {
        check_relative(&self.base, file)?;
        let url = self.locate(file);
        // The URL parser must not take the name out of the model directory either.
        let (abs, base) = (absolute(&url), absolute(&self.base));
        if !abs.starts_with(&base) || abs.len() == base.len() {
            return Err(Error::BadModelFile {
                file: file.to_string(),
                detail: format!("resolves to {abs}, outside {base}"),
            });
        }
        let mut tee_into = None;
        if let Some(name) = &self.cache {
            if let Some(cache) = open_cache(name).await {
                if let Some((blob, v)) = cached_entry(&cache, &url).await {
                    if self.still_current(&url, &v).await? {
                        if v.absent {
                            return Err(Error::NotFound { file: url });
                        }
                        self.shared.count(|s| s.hits += 1);
                        return FetchReader::from_blob(url, &blob, start, end);
                    }
                    // A new version on the server: the whole cached set of this model is
                    // stale (its other files may be old too); drop it, read from the network.
                    self.evict().await?;
                }
                self.shared.count(|s| s.misses += 1);
                let known = self.shared.lens.borrow().get(&url).copied();
                let to_end = match (end, known) {
                    (None, _) => true,
                    (Some(e), Some(l)) => e >= l,
                    // Length unknown (chunked answers): a large read is taken as the file's
                    // tail; the stored size is checked against `e`, so a wrong guess stores
                    // nothing.
                    (Some(e), None) => e.saturating_sub(start) >= MIN_TEE_BYTES,
                };
                if to_end {
                    tee_into = Some(cache);
                }
            }
        }
        let abort = AbortController::new().map_err(|e| Error::Network {
            url: url.clone(),
            detail: js_detail(&e),
        })?;
        let answer = match request(&url, start, end, tee_into.is_none(), &abort, &self.watch).await {
            Err(Error::NotFound { file }) => {
                if let Some(cache) = &tee_into {
                    store_absent(cache, &url).await;
                }
                return Err(Error::NotFound { file });
            }
            other => other?,
        };
        self.learn_len(&url, answer.len);
        let body = answer.response.body().ok_or_else(|| Error::Network {
            url: url.clone(),
            detail: "response without a body".into(),
        })?;
        let tee_len = match (&tee_into, answer.whole, answer.len.or(end)) {
            (Some(_), true, Some(len)) if self.fits(len).await => Some(len),
            _ => None,
        };
        let body = match (tee_into, tee_len) {
            (Some(cache), Some(len)) => {
                let branches = body.tee();
                let (mine, theirs) = (branches.get(0), branches.get(1));
                let mine: ReadableStream = mine.dyn_into().map_err(|e| Error::Network {
                    url: url.clone(),
                    detail: js_detail(&e),
                })?;
                if let Ok(theirs) = theirs.dyn_into::<ReadableStream>() {
                    self.store(cache, &url, theirs, len, &answer.response)?;
                }
                mine
            }
            _ => body,
        };
        let etag = header(&answer.response, "ETag");
        Ok(FetchReader {
            reader: stream_reader(&url, &body)?,
            url,
            chunk: None,
            skip: answer.skip,
            remaining: end.map(|e| e.saturating_sub(start)),
            done: false,
            len: answer.len,
            next: start,
            end,
            resume: Some(Resume {
                abort,
                retries_left: self.retries,
                attempts: 0,
                etag,
                shared: self.shared.clone(),
            }),
            watch: self.watch.clone(),
        })
    }
}

/// How a network reader asks again after a dropped stream.
#[derive(Debug)]
struct Resume {
    abort: AbortController,
    retries_left: u32,
    attempts: u32,
    etag: Option<String>,
    shared: Rc<Shared>,
}

/// An open HTTP response body (or a cached Blob's stream), read chunk by chunk.
#[derive(Debug)]
pub struct FetchReader {
    url: String,
    reader: ReadableStreamDefaultReader,
    /// The current chunk and how much of it was used.
    chunk: Option<(Uint8Array, u32)>,
    /// Bytes still to drop from the front (server ignored Range).
    skip: u64,
    /// Bytes of the range still to deliver (`None`: to the end of the body).
    remaining: Option<u64>,
    done: bool,
    len: Option<u64>,
    /// File offset of the next byte to deliver.
    next: u64,
    /// End of the range asked for (exclusive).
    end: Option<u64>,
    /// `None` for cached Blobs (nothing to resume).
    resume: Option<Resume>,
    /// Cancel token and idle timeout of every read.
    watch: Watch,
}

impl FetchReader {
    fn from_blob(url: String, blob: &Blob, start: u64, end: Option<u64>) -> Result<FetchReader> {
        let len = blob.size() as u64;
        let s = start.min(len);
        let e = end.unwrap_or(len).clamp(s, len);
        let part = blob
            .slice_with_f64_and_f64(s as f64, e as f64)
            .map_err(|x| Error::Network {
                url: url.clone(),
                detail: js_detail(&x),
            })?;
        Ok(FetchReader {
            reader: stream_reader(&url, &part.stream())?,
            url,
            chunk: None,
            skip: 0,
            remaining: Some(e - s),
            done: false,
            len: Some(len),
            next: s,
            end: Some(e),
            resume: None,
            watch: Watch {
                cancel: None,
                idle_ms: DEFAULT_IDLE_TIMEOUT_MS,
            },
        })
    }

    /// Where the body should end: the range's end or the file's, when known.
    fn expected_end(&self) -> Option<u64> {
        match (self.end, self.len) {
            (Some(e), Some(l)) => Some(e.min(l)),
            (e, l) => e.or(l),
        }
    }

    /// Ask again from `self.next` after the stream failed (`why`). `Ok(false)`: no retries left.
    async fn reopen(&mut self, why: &str) -> Result<bool> {
        let Some(r) = self.resume.as_mut() else {
            return Ok(false);
        };
        while r.retries_left > 0 {
            r.retries_left -= 1;
            r.attempts += 1;
            r.shared.count(|s| s.resumed += 1);
            let _ = self.reader.cancel();
            sleep(250 * r.attempts as i32).await;
            let abort = AbortController::new().map_err(|e| Error::Network {
                url: self.url.clone(),
                detail: js_detail(&e),
            })?;
            // Ask to the file's end when the range runs there: `bytes=N-`.
            let end = match (self.end, self.len) {
                (Some(e), Some(l)) if e >= l => None,
                (e, _) => e,
            };
            let answer = match request(&self.url, self.next, end, true, &abort, &self.watch).await {
                Ok(a) => a,
                Err(Error::Network { .. }) => continue,
                Err(e) => return Err(e),
            };
            let etag = header(&answer.response, "ETag");
            if let (Some(old), Some(new)) = (&r.etag, &etag) {
                if old != new {
                    return Err(Error::Network {
                        url: self.url.clone(),
                        detail: format!("the file changed on the server during the download (ETag {old} → {new})"),
                    });
                }
            }
            if let (Some(old), Some(new)) = (self.len, answer.len) {
                if old != new {
                    return Err(Error::Network {
                        url: self.url.clone(),
                        detail: format!("the file's length changed during the download ({old} → {new} bytes)"),
                    });
                }
            }
            let Some(body) = answer.response.body() else { continue };
            self.reader = stream_reader(&self.url, &body)?;
            r.abort = abort;
            self.skip = answer.skip;
            self.chunk = None;
            self.done = false;
            let _ = why;
            return Ok(true);
        }
        Ok(false)
    }

    /// Next non-empty chunk of the body, or `None` at its end; resumes a dropped stream.
    async fn next_chunk(&mut self) -> Result<Option<Uint8Array>> {
        loop {
            let read = self.reader.read();
            let abort = self.resume.as_ref().map(|r| r.abort.clone());
            let outcome = match watched(&self.url, &read, abort.as_ref(), &self.watch).await {
                Ok(o) => o,
                Err(e) => {
                    self.done = true;
                    let _ = self.reader.cancel();
                    return Err(e);
                }
            };
            let result = match outcome {
                Ok(r) => r,
                Err(e) => {
                    let detail = js_detail(&e);
                    if self.reopen(&detail).await? {
                        continue;
                    }
                    let tries = self.resume.as_ref().map_or(0, |r| r.attempts);
                    self.done = true;
                    return Err(Error::Network {
                        url: self.url.clone(),
                        detail: format!("{detail} (at byte {}, after {tries} resumed requests)", self.next),
                    });
                }
            };
            let done = Reflect::get(&result, &JsValue::from_str("done")).map_err(|e| Error::Network {
                url: self.url.clone(),
                detail: js_detail(&e),
            })?;
            if done.as_bool().unwrap_or(false) {
                // A body that ends before the known end was cut: ask for the rest.
                if self.expected_end().is_some_and(|e| self.next < e) && self.reopen("stream ended early").await? {
                    continue;
                }
                self.done = true;
                return Ok(None);
            }
            let net = |e: JsValue| Error::Network {
                url: self.url.clone(),
                detail: js_detail(&e),
            };
            let value = Reflect::get(&result, &JsValue::from_str("value")).map_err(net)?;
            let array = value.dyn_into::<Uint8Array>().map_err(net)?;
            if array.length() > 0 {
                return Ok(Some(array));
            }
        }
    }
}

impl RangeReader for FetchReader {
    fn file_len(&self) -> Option<u64> {
        self.len
    }

    async fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = match self.remaining {
            Some(r) => (buf.len() as u64).min(r) as usize,
            None => buf.len(),
        };
        let mut filled = 0;
        while filled < want {
            let (array, used) = match self.chunk.take() {
                Some(c) => c,
                None => {
                    if self.done {
                        break;
                    }
                    match self.next_chunk().await? {
                        Some(a) => (a, 0),
                        None => break,
                    }
                }
            };
            let mut used = used;
            let len = array.length();
            if self.skip > 0 {
                let s = self.skip.min(u64::from(len - used)) as u32;
                used += s;
                self.skip -= u64::from(s);
            }
            let n = (len - used).min((want - filled) as u32);
            if n > 0 {
                array
                    .subarray(used, used + n)
                    .copy_to(&mut buf[filled..filled + n as usize]);
                filled += n as usize;
                used += n;
                self.next += u64::from(n);
            }
            if used < len {
                self.chunk = Some((array, used));
            }
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= filled as u64;
            if *r == 0 && !self.done {
                // The range is complete: stop reading (the server may be sending the rest of
                // the file when it ignored Range; a tee'd cache branch keeps reading).
                self.done = true;
                self.chunk = None;
                let _ = self.reader.cancel();
            }
        }
        Ok(filled)
    }
}

impl Drop for FetchReader {
    fn drop(&mut self) {
        if !self.done {
            // Stopped early (error, cancelled load): end the download, and with it a cache
            // write of the same body (which then stores nothing).
            let _ = self.reader.cancel();
            if let Some(r) = &self.resume {
                r.abort.abort();
            }
        }
    }
}
