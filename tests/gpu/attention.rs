use crate::common::*;
use crate::kv_cache::{kv_data, read_cache};
use kjarni_web::cpu::attention::{self as refr, Dims, Mask};
use kjarni_web::cpu::compare::{check_close, Tolerance};
use kjarni_web::cpu::random;
use kjarni_web::ops::attention::{self, AttentionOptions, DecodeOptions, DecodeScratch, FlashTiles, Kv};
use kjarni_web::ops::kv_cache::{KvCache, KvDType};
use kjarni_web::ops::rope::Rope;
use kjarni_web::{DType, Error, Gpu, GpuTensor};

// f32 attention vs the f64 reference. Inputs are uniform in [-1, 1], so scores are ≤ sqrt(d) in
// size and outputs are convex combinations of values in [-1, 1]. The GPU rounds each score's
// d-term dot product in f32 (≈ 1e-6 relative), uses exp2 (a few ULP) and sums up to 4096
// probabilities and P·V terms in f32 with per-tile rescaling (≈ 1e-6 relative each): the output
// error is a few 1e-6; we allow 2e-5 absolute + 1e-4 relative. Outputs are ~1e-2..1, so a wrong
// key, head or mask moves them by far more.
const TOL: Tolerance = Tolerance { atol: 2e-5, rtol: 1e-4 };

const BROWSER: bool = cfg!(target_arch = "wasm32");

struct Case {
    batch: usize,
    q_len: usize,
    n_heads: usize,
    kv_len: usize,
    n_kv_heads: usize,
    d: usize,
    causal: bool,
}

impl Case {
    fn dims(&self) -> Dims {
        Dims {
            batch: self.batch,
            q_len: self.q_len,
            n_heads: self.n_heads,
            kv_len: self.kv_len,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.d,
        }
    }
    fn name(&self) -> String {
        format!(
            "b{} q{} h{} kv{} hkv{} d{}{}",
            self.batch,
            self.q_len,
            self.n_heads,
            self.kv_len,
            self.n_kv_heads,
            self.d,
            if self.causal { " causal" } else { "" }
        )
    }
    fn data(&self, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let nq = self.batch * self.q_len * self.n_heads * self.d;
        let nk = self.batch * self.kv_len * self.n_kv_heads * self.d;
        (
            random(nq, seed, -1.0, 1.0),
            random(nk, seed + 1, -1.0, 1.0),
            random(nk, seed + 2, -1.0, 1.0),
        )
    }
    /// Query rows the reference computes: all for short sequences, a sample (first, last, and
    /// around tile edges) for long ones so the f64 reference stays fast in a debug build.
    fn rows(&self) -> Vec<usize> {
        if self.q_len <= 256 {
            return (0..self.q_len).collect();
        }
        let mut r: Vec<usize> = (0..8).chain(60..68).chain(self.q_len / 2..self.q_len / 2 + 3).collect();
        r.extend(self.q_len - 70..self.q_len);
        r.sort_unstable();
        r.dedup();
        r
    }
}

fn case(batch: usize, q_len: usize, n_heads: usize, kv_len: usize, n_kv_heads: usize, d: usize, causal: bool) -> Case {
    Case {
        batch,
        q_len,
        n_heads,
        kv_len,
        n_kv_heads,
        d,
        causal,
    }
}

fn shape4(b: usize, s: usize, h: usize, d: usize) -> Vec<usize> {
    vec![b, s, h, d]
}

async fn compare_rows(gpu: &Gpu, what: &str, out: &GpuTensor, want: &[f32], c: &Case, rows: &[usize], tol: Tolerance) {
    let got = out.to_f32_vec(gpu).await.unwrap();
    let w = c.n_heads * c.d;
    let got = refr::select_rows(&got, c.q_len, w, rows);
    let want = refr::select_rows(want, c.q_len, w, rows);
    if let Err(e) = check_close(what, &got, &want, tol) {
        panic!("{e}");
    }
}

/// Run flash (default tiles or `tiles`) and compare with the reference.
async fn check_flash(gpu: &Gpu, c: &Case, mask: &Mask, tiles: Option<FlashTiles>, seed: u64) {
    let (q, k, v) = c.data(seed);
    let rows = c.rows();
    let scale = 1.0 / (c.d as f32).sqrt();
    let want = refr::attention(&q, &k, &v, c.dims(), mask, scale, Some(&rows));
    let tq = upload(gpu, "q", &shape4(c.batch, c.q_len, c.n_heads, c.d), &q);
    let tk = upload(gpu, "k", &shape4(c.batch, c.kv_len, c.n_kv_heads, c.d), &k);
    let tv = upload(gpu, "v", &shape4(c.batch, c.kv_len, c.n_kv_heads, c.d), &v);
    let out = upload(gpu, "out", tq.shape(), &vec![f32::NAN; q.len()]);
    let lens = mask.kv_lens.as_ref().map(|l| {
        let f: Vec<f32> = l.iter().map(|&x| x as f32).collect();
        upload(gpu, "kv_lens", &[c.batch], &f)
    });
    let opts = AttentionOptions {
        causal: c.causal,
        q_pos0: mask.q_pos0,
        kv_lens: lens.as_ref(),
        window: mask.window,
        ..Default::default()
    };
    let mut batch = gpu.batch();
    let kv = Kv::F32 { k: &tk, v: &tv };
    match tiles {
        Some(t) => attention::flash_prefill_with(gpu, &mut batch, &tq, kv, &out, &opts, t).unwrap(),
        None => attention::flash_prefill(gpu, &mut batch, &tq, kv, &out, &opts).unwrap(),
    }
    gpu.submit(batch).unwrap();
    let name = format!("flash {} {tiles:?} {mask:?}", c.name());
    compare_rows(gpu, &name, &out, &want, c, &rows, TOL).await;
}

gpu_test!(flash_attention_matches_reference, async {
    let gpu = gpu().await;
    let caps_tiles = FlashTiles::choose(gpu.caps(), 128).unwrap();
    say!(
        "flash tiles for d=128: {caps_tiles:?} ({} B)",
        caps_tiles.storage_bytes(128)
    );
    let mut cases = vec![
        case(1, 1, 2, 1, 2, 64, true),
        case(1, 7, 4, 7, 4, 64, true),
        case(1, 7, 4, 7, 2, 64, false),
        case(1, 64, 9, 64, 3, 64, true),    // GQA 3: SmolLM2-135M heads
        case(2, 64, 8, 64, 1, 128, false),  // GQA 8, batch 2
        case(1, 100, 2, 100, 1, 80, true),  // head_dim 80, length not a multiple of the tile
        case(1, 77, 3, 77, 3, 96, false),   // head_dim 96
        case(1, 130, 2, 130, 2, 128, true), // head_dim 128
        case(1, 5, 4, 300, 2, 64, true),    // queries at the end of a longer context
        case(1, 1000, 2, 1000, 1, 64, true),
    ];
    if !BROWSER {
        cases.push(case(1, 1000, 1, 1000, 1, 128, false));
        cases.push(case(1, 4096, 1, 4096, 1, 64, true));
    }
    for (i, c) in cases.iter().enumerate() {
        if BROWSER && c.d == 96 {
            continue; // compile time in SwiftShader (~4 s per flash pipeline); covered natively
        }
        check_flash(
            &gpu,
            c,
            &Mask {
                causal: c.causal,
                ..Default::default()
            },
            None,
            10 + i as u64,
        )
        .await;
    }
});

gpu_test!(flash_attention_every_tile_shape, async {
    let gpu = gpu().await;
    // The browser's 32 KiB tiles, the smallest tiles (many tiles per sequence), and the device's.
    let c = case(1, 150, 4, 150, 2, 64, true);
    let mut tiles = vec![
        FlashTiles {
            br: 64,
            bc: 64,
            dk: 16,
            vk: 16,
        },
        FlashTiles {
            br: 16,
            bc: 16,
            dk: 16,
            vk: 8,
        },
        FlashTiles {
            br: 32,
            bc: 32,
            dk: 16,
            vk: 16,
        },
    ];
    tiles.push(FlashTiles::choose(gpu.caps(), 64).unwrap());
    if BROWSER {
        tiles.drain(2..3); // the 32 x 32 tiles: natively only (compile time)
    }
    for t in tiles {
        if t.storage_bytes(64) <= gpu.caps().max_workgroup_storage && t.invocations() <= gpu.caps().max_invocations {
            check_flash(
                &gpu,
                &c,
                &Mask {
                    causal: true,
                    ..Default::default()
                },
                Some(t),
                40,
            )
            .await;
        }
    }
});

gpu_test!(flash_attention_padding_mask, async {
    let gpu = gpu().await;
    // BERT-style batch: valid key lengths 70, 1 and 0 (an empty sequence gives zeros).
    let c = case(3, 70, 4, 70, 4, 64, false);
    let mask = Mask {
        kv_lens: Some(vec![70, 1, 0]),
        ..Default::default()
    };
    check_flash(&gpu, &c, &mask, None, 50).await;
    let c = case(2, 90, 4, 90, 2, 64, true);
    let mask = Mask {
        causal: true,
        kv_lens: Some(vec![33, 90]),
        ..Default::default()
    };
    check_flash(&gpu, &c, &mask, None, 51).await;
});

gpu_test!(sliding_window_attention_matches_reference, async {
    let gpu = gpu().await;
    // Prefill: windows of 1 (only itself), 5 (inside one tile), 64 (a tile's width) and 100
    // (past the sequence: plain causal) over 70 causal rows, GQA 2, with a q_pos0 offset too.
    let c = case(1, 70, 4, 70, 2, 64, true);
    for (i, w) in [1usize, 5, 64, 100]
        .into_iter()
        .enumerate()
        .take(if BROWSER { 2 } else { 4 })
    {
        check_flash(
            &gpu,
            &c,
            &Mask {
                causal: true,
                window: Some(w),
                ..Default::default()
            },
            None,
            70 + i as u64,
        )
        .await;
    }
    let c = case(1, 20, 4, 90, 2, 64, true);
    check_flash(
        &gpu,
        &c,
        &Mask {
            causal: true,
            window: Some(33),
            ..Default::default()
        },
        None,
        75,
    )
    .await;
    // Decode: the last `window` of 150 cached tokens, chunks of 64 so whole chunks fall outside.
    let (len, nh, nkv, d) = (150usize, 4usize, 2usize, 64usize);
    let rope = Rope::plain(10000.0, d);
    let (cache, _, _) = filled_cache(&gpu, len, nkv, d, KvDType::F32, rope, 76).await;
    let (ck, cv) = read_cache(&gpu, &cache).await;
    let q = random(nh * d, 77, -1.0, 1.0);
    let mut qr = q.clone();
    kjarni_web::cpu::rope::apply(&mut qr, nh, &rope, len - 1);
    let dims = Dims {
        batch: 1,
        q_len: 1,
        n_heads: nh,
        kv_len: len,
        n_kv_heads: nkv,
        head_dim: d,
    };
    let scratch = DecodeScratch::new(&gpu, nh, d, len + 3).unwrap();
    for w in [1usize, 40, 150] {
        let mask = Mask {
            causal: true,
            window: Some(w),
            ..Default::default()
        };
        let want = refr::attention(&qr, &ck, &cv, dims, &mask, 0.125, None);
        let tq = upload(&gpu, "q", &[1, nh, d], &q);
        let out = upload(&gpu, "out", &[1, nh, d], &vec![f32::NAN; nh * d]);
        let opts = DecodeOptions {
            rope: Some(rope),
            window: Some(w),
            chunk: Some(64),
            ..Default::default()
        };
        let mut batch = gpu.batch();
        attention::decode(&gpu, &mut batch, &tq, &cache, &out, &scratch, &opts).unwrap();
        gpu.submit(batch).unwrap();
        // As decode_attention_matches_reference_for_every_format: RoPE's error on q and K folded
        // into 2e-4 absolute. Dropping the window moves the output by ~1e-1.
        assert_tensor(
            &gpu,
            &format!("decode, window {w}"),
            &out,
            &want,
            Tolerance { atol: 2e-4, rtol: 1e-4 },
        )
        .await;
    }
});

gpu_test!(unfused_attention_matches_reference, async {
    let gpu = gpu().await;
    // In the browser one case: SwiftShader spends ~2 s compiling each pipeline.
    let cases = [
        case(1, 7, 4, 7, 2, 64, true),
        case(2, 100, 6, 100, 3, 80, false),
        case(1, 300, 2, 300, 2, 128, true),
    ];
    for (i, c) in cases.iter().enumerate().take(if BROWSER { 1 } else { 3 }) {
        let (q, k, v) = c.data(60 + i as u64);
        let mask = Mask {
            causal: c.causal,
            kv_lens: (c.batch == 2).then(|| vec![100, 41]),
            ..Default::default()
        };
        let want = refr::attention(&q, &k, &v, c.dims(), &mask, 1.0 / (c.d as f32).sqrt(), None);
        let tq = upload(&gpu, "q", &shape4(c.batch, c.q_len, c.n_heads, c.d), &q);
        let tk = upload(&gpu, "k", &shape4(c.batch, c.kv_len, c.n_kv_heads, c.d), &k);
        let tv = upload(&gpu, "v", &shape4(c.batch, c.kv_len, c.n_kv_heads, c.d), &v);
        let out = upload(&gpu, "out", tq.shape(), &vec![f32::NAN; q.len()]);
        let lens = mask.kv_lens.as_ref().map(|l| {
            upload(
                &gpu,
                "lens",
                &[c.batch],
                &l.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            )
        });
        let n = attention::unfused_scores_len(&tq, &tk).unwrap();
        let scores = GpuTensor::zeros(&gpu, "scores", &[n], DType::F32).unwrap();
        let opts = AttentionOptions {
            causal: c.causal,
            kv_lens: lens.as_ref(),
            ..Default::default()
        };
        let mut batch = gpu.batch();
        attention::unfused(&gpu, &mut batch, &tq, &tk, &tv, &out, &scores, &opts).unwrap();
        assert_eq!(batch.dispatches(), 3);
        gpu.submit(batch).unwrap();
        let rows: Vec<usize> = (0..c.q_len).collect();
        compare_rows(&gpu, &format!("unfused {}", c.name()), &out, &want, c, &rows, TOL).await;
    }
});

// ---------------------------------------------------------------------------------------------
// KV cache (appends: tests/gpu/kv_cache.rs)

const ROPE: Rope = Rope::plain(10000.0, 64);

// ---------------------------------------------------------------------------------------------
// Decode and attention over a cache

/// Cache filled with `len` tokens (K rotated), returning it and the original K (rotated), V.
async fn filled_cache(
    gpu: &Gpu,
    len: usize,
    heads: usize,
    d: usize,
    dtype: KvDType,
    rope: Rope,
    seed: u64,
) -> (KvCache, Vec<f32>, Vec<f32>) {
    let mut cache = KvCache::new(gpu, "cache", len + 3, heads, d, dtype).unwrap();
    let (k, v) = kv_data(len, heads, d, seed);
    let (k, v): (Vec<f32>, Vec<f32>) = (k.iter().map(|x| x / 2.0).collect(), v.iter().map(|x| x / 2.0).collect());
    let tk = upload(gpu, "k", &[len, heads, d], &k);
    let tv = upload(gpu, "v", &[len, heads, d], &v);
    let mut batch = gpu.batch();
    cache.append(gpu, &mut batch, &tk, &tv, Some(rope)).unwrap();
    gpu.submit(batch).unwrap();
    let mut kr = k;
    kjarni_web::cpu::rope::apply(&mut kr, heads, &rope, 0);
    (cache, kr, v)
}

/// Worst-case output error of attention over int8 K / V against the unquantised reference:
/// each V element is within half a step (absmax_v / 254) and each score moves by at most
/// scale · ‖q‖₁ · absmax_k / 254, which moves the softmax-weighted mean by at most
/// 2 · max|δs| · max|v|.
fn int8_bound(q: &[f32], k: &[f32], v: &[f32], d: usize, scale: f32) -> f32 {
    let amax = |x: &[f32]| {
        x.chunks(d)
            .map(|r| r.iter().fold(0.0f32, |a, &y| a.max(y.abs())))
            .fold(0.0f32, f32::max)
    };
    let q1 = q
        .chunks(d)
        .map(|r| r.iter().map(|x| x.abs()).sum::<f32>())
        .fold(0.0f32, f32::max);
    let ds = scale * q1 * amax(k) / 254.0;
    let vmax = v.iter().fold(0.0f32, |a, &y| a.max(y.abs()));
    amax(v) / 254.0 + 2.0 * ds * vmax + 1e-4
}

gpu_test!(decode_attention_matches_reference_for_every_format, async {
    // GPU launch shapes: 1–300 keys one chunk (decode_single where head_dim / 8 is a power of
    // two; 300 keys: two per invocation); 1000, 4096: split + merge. CPU launch shapes:
    // decode_partial at 64 invocations, one chunk up to 128 keys, split + merge beyond. Natively
    // every case runs under both; the browser alternates them.
    let gpus = [gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    let mut case = 0usize;
    let lens: &[usize] = if BROWSER {
        &[1, 7, 64, 300, 1000]
    } else {
        &[1, 7, 64, 300, 1000, 4096]
    };
    // (query heads, kv heads, head_dim): GQA 3 (SmolLM2), 8, and 1 with head_dim 80.
    let shapes = [(9usize, 3usize, 64usize), (8, 1, 128), (2, 2, 80)];
    let mut seed = 100;
    for (si, &(nh, nkv, d)) in shapes.iter().enumerate() {
        for &len in lens {
            if si > 0 && (len > 1000 || len == 300) {
                continue; // one shape covers the longest cache and two keys per invocation
            }
            for dtype in [KvDType::F32, KvDType::F16, KvDType::Int8] {
                // Browser: every format on the GQA-3 shape, one format on each other shape
                // (SwiftShader compiles each pipeline for ~2 s).
                if BROWSER && si > 0 && dtype != [KvDType::Int8, KvDType::F16][si - 1] {
                    continue;
                }
                case += 1;
                let devices: &[usize] = match (BROWSER, case % 2) {
                    (false, _) => &[0, 1],
                    (true, i) => &[[0, 1][i]],
                };
                for &gi in devices {
                    let gpu = &gpus[gi];
                    seed += 3;
                    let rope = Rope::plain(10000.0, d);
                    let (cache, k, v) = filled_cache(gpu, len, nkv, d, dtype, rope, seed).await;
                    let (ck, cv) = read_cache(gpu, &cache).await;
                    let q = random(nh * d, seed + 2, -1.0, 1.0);
                    let mut qr = q.clone();
                    kjarni_web::cpu::rope::apply(&mut qr, nh, &rope, len - 1);
                    let dims = Dims {
                        batch: 1,
                        q_len: 1,
                        n_heads: nh,
                        kv_len: len,
                        n_kv_heads: nkv,
                        head_dim: d,
                    };
                    let scale = 1.0 / (d as f32).sqrt();
                    let want = refr::attention(&qr, &ck, &cv, dims, &Mask::default(), scale, None);
                    let tq = upload(gpu, "q", &[1, nh, d], &q);
                    let scratch = DecodeScratch::new(gpu, nh, d, len + 3).unwrap();
                    // Default chunking, and the smallest chunks (many partials, the merge) at 1000.
                    let chunks: &[Option<usize>] = if len == 1000 { &[None, Some(64)] } else { &[None] };
                    for &chunk in chunks {
                        let out = upload(gpu, "out", &[1, nh, d], &vec![f32::NAN; nh * d]);
                        let mut batch = gpu.batch();
                        let opts = DecodeOptions {
                            rope: Some(rope),
                            chunk,
                            ..Default::default()
                        };
                        attention::decode(gpu, &mut batch, &tq, &cache, &out, &scratch, &opts).unwrap();
                        gpu.submit(batch).unwrap();
                        let got = out.to_f32_vec(gpu).await.unwrap();
                        let what = format!(
                            "decode {} len {len} h{nh}/{nkv} d{d} chunk {chunk:?} cpu shapes {}",
                            dtype.name(),
                            gpu.caps().variants.cpu
                        );
                        // Against the reference on the values the cache holds: the f32 tolerance,
                        // with RoPE's error on q and K (≤ 1e-4 each on inputs ≤ 1, times ‖·‖₁ · scale
                        // ≈ 1e-3 on a score) folded into 2e-4 absolute.
                        check_close(&what, &got, &want, Tolerance { atol: 2e-4, rtol: 1e-4 }).unwrap();
                        if dtype == KvDType::Int8 {
                            let exact = refr::attention(&qr, &k, &v, dims, &Mask::default(), scale, None);
                            let bound = int8_bound(&qr, &k, &v, d, scale);
                            let diff = check_close(
                                &format!("{what} vs unquantised"),
                                &got,
                                &exact,
                                Tolerance { atol: bound, rtol: 0.0 },
                            )
                            .unwrap();
                            if len == 1000 && chunk.is_none() {
                                say!("{what}: int8 max error {:.2e} (bound {bound:.2e})", diff.max_abs);
                            }
                        }
                    }
                }
            }
        }
    }
});

gpu_test!(flash_attention_reads_every_cache_format, async {
    let gpu = gpu().await;
    // Prefill through the cache: K rotated as it was written, attention straight from f16 / int8.
    let (len, nh, nkv, d) = (150usize, 6usize, 2usize, 64usize);
    // The f32 cache runs the same pipeline as f32 activations (tested above): natively only.
    let formats: &[KvDType] = if BROWSER {
        &[KvDType::F16, KvDType::Int8]
    } else {
        &[KvDType::F32, KvDType::F16, KvDType::Int8]
    };
    for &dtype in formats {
        let (cache, _, _) = filled_cache(&gpu, len, nkv, d, dtype, ROPE, 120).await;
        let (ck, cv) = read_cache(&gpu, &cache).await;
        let mut q = random(len * nh * d, 121, -1.0, 1.0);
        kjarni_web::cpu::rope::apply(&mut q, nh, &ROPE, 0);
        let dims = Dims {
            batch: 1,
            q_len: len,
            n_heads: nh,
            kv_len: len,
            n_kv_heads: nkv,
            head_dim: d,
        };
        let mask = Mask {
            causal: true,
            ..Default::default()
        };
        let want = refr::attention(&q, &ck, &cv, dims, &mask, 0.125, None);
        let tq = upload(&gpu, "q", &[len, nh, d], &q);
        let out = upload(&gpu, "out", &[len, nh, d], &vec![f32::NAN; q.len()]);
        let mut batch = gpu.batch();
        let opts = AttentionOptions {
            causal: true,
            ..Default::default()
        };
        attention::flash_prefill(&gpu, &mut batch, &tq, Kv::Cache(&cache), &out, &opts).unwrap();
        gpu.submit(batch).unwrap();
        assert_tensor(&gpu, &format!("flash over {} cache", dtype.name()), &out, &want, TOL).await;
    }
});

gpu_test!(attention_rejects_bad_inputs, async {
    let gpu = gpu().await;
    let q = upload(&gpu, "q", &[4, 6, 64], &vec![0.0; 4 * 6 * 64]);
    let k = upload(&gpu, "k", &[4, 4, 64], &vec![0.0; 4 * 4 * 64]);
    let k80 = upload(&gpu, "k80", &[4, 2, 80], &vec![0.0; 4 * 2 * 80]);
    let out = upload(&gpu, "out", &[4, 6, 64], &vec![0.0; 4 * 6 * 64]);
    let opts = AttentionOptions::default();
    let mut batch = gpu.batch();
    // 6 heads over 4 KV heads, head_dim mismatch; out aliasing q.
    for r in [
        attention::flash_prefill(&gpu, &mut batch, &q, Kv::F32 { k: &k, v: &k }, &out, &opts),
        attention::flash_prefill(&gpu, &mut batch, &q, Kv::F32 { k: &k80, v: &k80 }, &out, &opts),
    ] {
        assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    }
    let r = attention::flash_prefill(&gpu, &mut batch, &q, Kv::F32 { k: &k, v: &k }, &q, &opts);
    assert!(matches!(r, Err(Error::Aliased { .. })), "{r:?}");
    let cache = KvCache::new(&gpu, "empty", 16, 2, 64, KvDType::Int8).unwrap();
    let scratch = DecodeScratch::new(&gpu, 6, 64, 16).unwrap();
    let q1 = upload(&gpu, "q1", &[6, 64], &[0.0; 6 * 64]);
    let o1 = upload(&gpu, "o1", &[6, 64], &[0.0; 6 * 64]);
    let e = attention::decode(&gpu, &mut batch, &q1, &cache, &o1, &scratch, &DecodeOptions::default()).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(batch.dispatches(), 0);
});
