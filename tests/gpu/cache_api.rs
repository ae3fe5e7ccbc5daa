//! Browser only: `FetchSource` with the Cache API and resume after a cut stream.
//!
//! A wrapper of `globalThis.fetch` (installed once, from a JS string) logs every request's URL
//! and `Range`, passes real files through to the test server, and serves in-memory files under
//! `/kjarni-virtual/` as a small HTTP server would: honouring Range (206 + Content-Range, 416)
//! or ignoring it (200), with `Content-Length` and an `ETag`, and optionally cutting a body
//! after N bytes (stream error, or a clean early end) a given number of times.
#![cfg(target_arch = "wasm32")]

use crate::common::gpu;
use crate::models::MINILM;
use js_sys::{Array, Map, Reflect, Uint8Array, JSON};
use kjarni_web::load::{cached_files, clear_cache, load_weights, ByteSource, FetchSource, LoadOptions, Weights};
use kjarni_web::{Error, Gpu};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

const SERVER_JS: &str = r#"(function () {
  const g = globalThis;
  if (g.__kjarniTestFetch) return g.__kjarniTestFetch;
  const orig = g.fetch;
  const st = { log: [], files: new Map(), mode: 'range', cut: null, etag: '"v1"' };
  g.__kjarniTestFetch = st;
  g.fetch = function (input, init) {
    const req = new Request(input, init);
    const range = req.headers.get('Range');
    // Revalidation HEADs of cached files are counted apart (the log is what was downloaded).
    if (req.method === 'HEAD') st.heads = (st.heads || 0) + 1; else st.log.push([req.url, range]);
    const path = new URL(req.url).pathname;
    if (!path.startsWith('/kjarni-virtual/')) return orig.call(g, input, init);
    const name = path.slice('/kjarni-virtual/'.length);
    const data = st.files.get(name);
    if (!data) return Promise.resolve(new Response('not found', { status: 404 }));
    let status = 200, start = 0, end = data.length;
    const headers = { 'Content-Type': 'application/octet-stream', 'ETag': st.etag };
    if (range && st.mode === 'range') {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      start = Number(m[1]);
      end = m[2] === '' ? data.length : Math.min(Number(m[2]) + 1, data.length);
      if (start >= data.length) {
        return Promise.resolve(new Response('', { status: 416, headers: { 'Content-Range': 'bytes */' + data.length } }));
      }
      status = 206;
      headers['Content-Range'] = 'bytes ' + start + '-' + (end - 1) + '/' + data.length;
    }
    headers['Content-Length'] = String(end - start);
    const body = data.subarray(start, end);
    const cut = st.cut && st.cut.file === name ? st.cut : null;
    let sent = 0;
    const stream = new ReadableStream({
      pull(c) {
        if (cut && cut.fired < cut.times && sent >= cut.after && sent < body.length) {
          cut.fired++;
          cut.at.push(start + sent);
          if (cut.kind === 'close') c.close(); else c.error(new TypeError('network cut (test)'));
          return;
        }
        if (sent >= body.length) { c.close(); return; }
        let n = Math.min(4096, body.length - sent);
        if (cut && cut.fired < cut.times && sent < cut.after) n = Math.min(n, cut.after - sent);
        c.enqueue(body.slice(sent, sent + n));
        sent += n;
      },
    }, { highWaterMark: 1 });
    return Promise.resolve(new Response(stream, { status, headers }));
  };
  return st;
})()"#;

/// The fetch wrapper's state (installs it on first use).
fn server() -> JsValue {
    js_sys::eval(SERVER_JS).unwrap()
}

fn set(obj: &JsValue, key: &str, v: &JsValue) {
    Reflect::set(obj, &JsValue::from_str(key), v).unwrap();
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap()
}

/// Serve `bytes` as `/kjarni-virtual/<name>`.
fn put_file(st: &JsValue, name: &str, bytes: &[u8]) {
    let files: Map = get(st, "files").dyn_into().unwrap();
    files.set(&JsValue::from_str(name), &Uint8Array::from(bytes).into());
}

/// `range`: honour Range (206) or ignore it (200).
fn set_mode(st: &JsValue, honour_range: bool) {
    set(
        st,
        "mode",
        &JsValue::from_str(if honour_range { "range" } else { "ignore" }),
    );
}

/// Cut the body of `file` after `after` bytes (`kind`: "error" or "close"), `times` times.
fn set_cut(st: &JsValue, file: &str, after: usize, kind: &str, times: u32) {
    let json = format!(r#"{{"file":"{file}","after":{after},"kind":"{kind}","times":{times},"fired":0,"at":[]}}"#);
    set(st, "cut", &JSON::parse(&json).unwrap());
}

/// File offsets where cuts fired.
fn cuts(st: &JsValue) -> Vec<u64> {
    let cut = get(st, "cut");
    let at: Array = get(&cut, "at").dyn_into().unwrap();
    at.iter().map(|v| v.as_f64().unwrap() as u64).collect()
}

fn clear_log(st: &JsValue) {
    set(st, "log", &Array::new().into());
}

/// (url, Range) of every fetch since the last `clear_log`.
fn log(st: &JsValue) -> Vec<(String, Option<String>)> {
    let log: Array = get(st, "log").dyn_into().unwrap();
    log.iter()
        .map(|e| {
            let e: Array = e.dyn_into().unwrap();
            (e.get(0).as_string().unwrap(), e.get(1).as_string())
        })
        .collect()
}

/// A safetensors file from a raw JSON header and the data section.
fn st_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// A synthetic checkpoint of three tensors (one at an odd offset) and its data section.
fn synthetic() -> (Vec<u8>, Vec<u8>, [(&'static str, usize, usize); 3]) {
    let spans = [
        ("a", 0, 256_000),
        ("b", 256_000, 256_006),
        ("c", 256_006, 256_006 + 2 * 333 * 77),
    ];
    let header = format!(
        r#"{{"a":{{"dtype":"F32","shape":[64,1000],"data_offsets":[0,256000]}},"b":{{"dtype":"I8","shape":[6],"data_offsets":[256000,256006]}},"c":{{"dtype":"BF16","shape":[333,77],"data_offsets":[256006,{}]}}}}"#,
        256_006 + 2 * 333 * 77
    );
    let data: Vec<u8> = (0..spans[2].2).map(|i| (i * 7 + i / 251) as u8).collect();
    (st_bytes(&header, &data), data, spans)
}

async fn check_synthetic(gpu: &Gpu, w: &Weights, data: &[u8], spans: &[(&str, usize, usize)]) {
    for &(name, a, b) in spans {
        assert_eq!(
            w.get(name).unwrap().read_bytes(gpu).await.unwrap(),
            data[a..b],
            "tensor {name}"
        );
    }
}

fn safetensors_requests(st: &JsValue, dir: &str) -> Vec<Option<String>> {
    log(st)
        .into_iter()
        .filter(|(u, _)| u.contains(dir) && u.ends_with(".safetensors"))
        .map(|(_, r)| r)
        .collect()
}

/// (a) With the cache on, the second load of a real model makes no request for the weights
/// (headers and data come from the cache), the bytes agree, and the wasm heap stays bounded.
#[wasm_bindgen_test]
async fn second_load_comes_from_the_cache() {
    let st = server();
    let name = "kjarni-test-minilm";
    clear_cache(name).await.unwrap();
    let gpu = gpu().await;
    let base = format!("/models/{MINILM}/");
    let src = FetchSource::new(&base).with_cache(Some(name));
    clear_log(&st);
    let heap0 = crate::load::wasm_heap_bytes();
    let w1 = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
        .await
        .unwrap();
    src.flush_cache().await;
    let first = safetensors_requests(&st, MINILM);
    assert!(
        first.iter().any(Option::is_none),
        "the data section came as one whole-file request: {first:?}"
    );
    let stats = src.cache_stats();
    assert_eq!((stats.stored, stats.failed), (1, 0), "{stats:?}");
    let files = cached_files(name).await.unwrap();
    let (url, size) = files.iter().find(|(u, _)| u.ends_with("model.safetensors")).unwrap();
    let (_, len) = src.read_range("model.safetensors", 0, 8).await.unwrap();
    assert_eq!(Some(*size), len, "{url}");

    clear_log(&st);
    let src2 = FetchSource::new(&base).with_cache(Some(name));
    let w2 = load_weights(&gpu, &src2, &LoadOptions::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        safetensors_requests(&st, MINILM),
        Vec::<Option<String>>::new(),
        "second load: no weight requests"
    );
    assert!(src2.cache_stats().hits >= 3, "{:?}", src2.cache_stats());
    // Each cached file was checked against the server once (HEAD, same ETag), none was stale.
    assert!(
        src2.cache_stats().revalidated >= 1 && src2.cache_stats().stale == 0,
        "{:?}",
        src2.cache_stats()
    );
    let grown = crate::load::wasm_heap_bytes() - heap0;
    say!(
        "two MiniLM loads (network + tee, then cache) grew the wasm heap by {} KiB",
        grown / 1024
    );
    assert!(grown < 64 << 20, "wasm heap grew by {grown} bytes");
    assert_eq!(w1.len(), w2.len());
    for t in [
        "encoder.layer.5.output.dense.weight",
        "embeddings.LayerNorm.weight",
        "pooler.dense.bias",
    ] {
        let a = w1.get(t).unwrap().read_bytes(&gpu).await.unwrap();
        let b = w2.get(t).unwrap().read_bytes(&gpu).await.unwrap();
        assert!(a == b, "{t} differs between the network and the cached load");
    }
    assert!(src2.evict().await.unwrap() >= 1);
    assert!(cached_files(name)
        .await
        .unwrap()
        .iter()
        .all(|(u, _)| !u.contains(MINILM)));
    assert!(clear_cache(name).await.unwrap());
    assert!(!clear_cache(name).await.unwrap(), "already gone");
}

/// (b) A body cut once after N bytes resumes with `Range: bytes=N-` (206 server and a server
/// that ignores Range), stream error or clean early end; the weights are exact.
#[wasm_bindgen_test]
async fn cut_download_resumes_with_range() {
    let st = server();
    let gpu = gpu().await;
    let (file, data, spans) = synthetic();
    for (honour, kind) in [(true, "error"), (false, "error"), (true, "close"), (false, "close")] {
        let dir = format!("resume-{honour}-{kind}");
        put_file(&st, &format!("{dir}/model.safetensors"), &file);
        set_mode(&st, honour);
        set_cut(&st, &format!("{dir}/model.safetensors"), 100_003, kind, 1);
        clear_log(&st);
        let src = FetchSource::new(&format!("/kjarni-virtual/{dir}/"));
        let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
            .await
            .unwrap();
        let at = cuts(&st);
        assert_eq!(at.len(), 1, "{dir}: the cut fired once");
        let want = format!("bytes={}-", at[0]);
        let ranges = safetensors_requests(&st, &dir);
        assert_eq!(
            ranges.last().cloned().flatten(),
            Some(want.clone()),
            "{dir}: resumed with {want}: {ranges:?}"
        );
        check_synthetic(&gpu, &w, &data, &spans).await;
        set(&st, "cut", &JsValue::NULL);
    }
}

/// (b') Cut on every request: after 3 resumes the load fails with a typed error and frees
/// its buffers (never runs on partial weights).
#[wasm_bindgen_test]
async fn cut_every_time_fails_after_retries() {
    let st = server();
    let gpu = gpu().await;
    let (file, _, _) = synthetic();
    put_file(&st, "always-cut/model.safetensors", &file);
    for kind in ["error", "close"] {
        set_mode(&st, true);
        set_cut(&st, "always-cut/model.safetensors", 20_000, kind, 100);
        let before = gpu.memory();
        let src = FetchSource::new("/kjarni-virtual/always-cut/");
        let r = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {}).await;
        match (kind, r) {
            ("error", Err(Error::Network { detail, .. })) => {
                assert!(detail.contains("after 3 resumed requests"), "{detail}")
            }
            ("close", Err(Error::BadModelFile { detail, .. })) => assert!(detail.contains("truncated"), "{detail}"),
            (k, other) => panic!("{k}: expected a typed error, got {:?}", other.map(|w| w.len())),
        }
        // 1 original request + 3 resumes, each cut.
        assert_eq!(cuts(&st).len(), 4, "{kind}");
        assert_eq!(gpu.memory().live_buffers, before.live_buffers, "{kind}: buffers freed");
        // No retries: the first cut is final.
        set_cut(&st, "always-cut/model.safetensors", 20_000, kind, 100);
        let src = FetchSource::new("/kjarni-virtual/always-cut/").with_retries(0);
        assert!(load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
            .await
            .is_err());
        assert_eq!(cuts(&st).len(), 1, "{kind}: no resume with 0 retries");
    }
    set(&st, "cut", &JsValue::NULL);
}

/// (c) Servers that ignore Range (200) and that honour it both work, with and without the
/// cache; with the cache the second load makes no request for the file; a 416 is a typed error.
#[wasm_bindgen_test]
async fn range_ignoring_and_honouring_servers_with_cache() {
    let st = server();
    let gpu = gpu().await;
    let (file, data, spans) = synthetic();
    for honour in [false, true] {
        let dir = format!("servers-{honour}");
        let cache = format!("kjarni-test-{dir}");
        clear_cache(&cache).await.unwrap();
        put_file(&st, &format!("{dir}/model.safetensors"), &file);
        set_mode(&st, honour);
        clear_log(&st);
        let plain = FetchSource::new(&format!("/kjarni-virtual/{dir}/"));
        let w = load_weights(&gpu, &plain, &LoadOptions::default(), &mut |_| {})
            .await
            .unwrap();
        check_synthetic(&gpu, &w, &data, &spans).await;
        let ranges = safetensors_requests(&st, &dir);
        assert_eq!(ranges.len(), 3, "{dir}: length, header, data: {ranges:?}");
        assert!(
            ranges.iter().all(Option::is_some),
            "{dir}: no cache, all ranged: {ranges:?}"
        );

        let src = FetchSource::new(&format!("/kjarni-virtual/{dir}/")).with_cache(Some(&cache));
        let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
            .await
            .unwrap();
        check_synthetic(&gpu, &w, &data, &spans).await;
        src.flush_cache().await;
        assert_eq!(src.cache_stats().stored, 1, "{dir}: {:?}", src.cache_stats());
        clear_log(&st);
        let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
            .await
            .unwrap();
        check_synthetic(&gpu, &w, &data, &spans).await;
        assert!(
            safetensors_requests(&st, &dir).is_empty(),
            "{dir}: second load from the cache"
        );
        clear_cache(&cache).await.unwrap();
    }
    // Past the end: 416 from a Range-capable server.
    set_mode(&st, true);
    let src = FetchSource::new("/kjarni-virtual/servers-true/");
    let len = file.len() as u64;
    assert!(matches!(
        src.read_range("model.safetensors", len + 5, len + 9).await,
        Err(Error::BadModelFile { .. })
    ));
    assert!(matches!(
        src.read_range("missing.safetensors", 0, 8).await,
        Err(Error::NotFound { .. })
    ));
}

/// An interrupted download is not cached (its bytes came from two responses); the next load
/// downloads the file again and caches it. A cache entry of the wrong size is replaced.
#[wasm_bindgen_test]
async fn partial_downloads_are_never_cached() {
    let st = server();
    let gpu = gpu().await;
    let (file, data, spans) = synthetic();
    let cache = "kjarni-test-partial";
    clear_cache(cache).await.unwrap();
    put_file(&st, "partial/model.safetensors", &file);
    set_mode(&st, false);
    set_cut(&st, "partial/model.safetensors", 150_001, "error", 1);
    let src = FetchSource::new("/kjarni-virtual/partial/").with_cache(Some(cache));
    let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
        .await
        .unwrap();
    check_synthetic(&gpu, &w, &data, &spans).await;
    src.flush_cache().await;
    let stats = src.cache_stats();
    assert_eq!((stats.stored, stats.failed, stats.resumed), (0, 1, 1), "{stats:?}");
    assert!(
        cached_files(cache).await.unwrap().is_empty(),
        "nothing cached after a cut"
    );
    set(&st, "cut", &JsValue::NULL);
    clear_log(&st);
    let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
        .await
        .unwrap();
    check_synthetic(&gpu, &w, &data, &spans).await;
    src.flush_cache().await;
    assert!(!safetensors_requests(&st, "partial").is_empty(), "downloaded again");
    let files = cached_files(cache).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].1, file.len() as u64);

    // Corrupt the entry: a short body claiming the full length. It is detected, deleted, and
    // the file comes from the network (and is stored again).
    let url = files[0].0.clone();
    let corrupt = format!(
        "caches.open('{cache}').then(c => c.put('{url}', new Response(new Uint8Array(10), {{ headers: {{ 'X-Kjarni-Length': '{}' }} }})))",
        file.len()
    );
    wasm_bindgen_futures::JsFuture::from(js_sys::eval(&corrupt).unwrap().dyn_into::<js_sys::Promise>().unwrap())
        .await
        .unwrap();
    clear_log(&st);
    let src = FetchSource::new("/kjarni-virtual/partial/").with_cache(Some(cache));
    let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {})
        .await
        .unwrap();
    check_synthetic(&gpu, &w, &data, &spans).await;
    assert!(
        !safetensors_requests(&st, "partial").is_empty(),
        "a corrupt entry is not used"
    );
    src.flush_cache().await;
    assert_eq!(cached_files(cache).await.unwrap()[0].1, file.len() as u64);
    clear_cache(cache).await.unwrap();
}
