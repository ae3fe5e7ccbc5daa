//! KV cache appends (f32 / f16 / int8, RoPE fused on K) against the reference of
//! `cpu::kv_cache`, positions far out, capacity, truncate / reset and memory.

use crate::common::*;
use kjarni_web::cpu::compare::{check_close, Tolerance};
use kjarni_web::cpu::kv_cache::{self as refr, dequantize_i8};
use kjarni_web::cpu::random;
use kjarni_web::ops::kv_cache::{KvCache, KvDType};
use kjarni_web::ops::rope::Rope;
use kjarni_web::{Error, Gpu};

const BROWSER: bool = cfg!(target_arch = "wasm32");

const ROPE: Rope = Rope::plain(10000.0, 64);

/// Random K, V for `tokens` new tokens of `heads` heads of `d`.
pub(crate) fn kv_data(tokens: usize, heads: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let n = tokens * heads * d;
    (random(n, seed, -2.0, 2.0), random(n, seed + 1, -2.0, 2.0))
}

/// The cache contents as f32 values (dequantised for int8), K and V, first `len` tokens.
pub(crate) async fn read_cache(gpu: &Gpu, c: &KvCache) -> (Vec<f32>, Vec<f32>) {
    let n = c.len() * c.n_kv_heads() * c.head_dim();
    let mut k = c.k().to_f32_vec(gpu).await.unwrap();
    let mut v = c.v().to_f32_vec(gpu).await.unwrap();
    k.truncate(n);
    v.truncate(n);
    if let Some((ka, va)) = c.absmax() {
        let stride = c.n_kv_heads().next_multiple_of(2);
        let pick = |a: Vec<f32>| -> Vec<f32> {
            (0..c.len())
                .flat_map(|t| a[t * stride..t * stride + c.n_kv_heads()].to_vec())
                .collect()
        };
        let ka = pick(ka.to_f32_vec(gpu).await.unwrap());
        let va = pick(va.to_f32_vec(gpu).await.unwrap());
        let codes = |x: &[f32]| x.iter().map(|&c| c as i8).collect::<Vec<i8>>();
        k = dequantize_i8(&codes(&k), &ka, c.head_dim());
        v = dequantize_i8(&codes(&v), &va, c.head_dim());
    }
    (k, v)
}

// RoPE on the GPU: exp2 and sin / cos are evaluated by our own polynomials (≈ 1e-7), the angle
// is the f32 product position · inv_freq as in HF (the reference rounds the same way), so the
// remaining difference is inv_freq's last bits (exp2 of a rounded exponent: ≤ 5e-7 relative),
// i.e. ≤ 1e-6 rad at the positions below 10 used here, on values ≤ 2√2: 1e-5 absolute.
const ROPE_TOL: Tolerance = Tolerance { atol: 1e-5, rtol: 0.0 };

gpu_test!(kv_cache_appends_every_format_with_rope, async {
    let gpu = gpu().await;
    let (heads, d) = (3, 64);
    for dtype in [KvDType::F32, KvDType::F16, KvDType::Int8] {
        let mut cache = KvCache::new(&gpu, "layer0", 40, heads, d, dtype).unwrap();
        let mut k_all = Vec::new();
        let mut v_all = Vec::new();
        for (step, tokens) in [5usize, 1, 3].into_iter().enumerate() {
            let (k, v) = kv_data(tokens, heads, d, 70 + step as u64);
            let tk = upload(&gpu, "k_new", &[tokens, heads, d], &k);
            let tv = upload(&gpu, "v_new", &[1, tokens, heads, d], &v);
            let mut batch = gpu.batch();
            let pos0 = cache.len();
            cache.append(&gpu, &mut batch, &tk, &tv, Some(ROPE)).unwrap();
            gpu.submit(batch).unwrap();
            let (kr, vr) = refr::append(&k, &v, heads, d, pos0, Some(ROPE), KvDType::F32);
            k_all.extend(kr);
            v_all.extend(vr);
        }
        assert_eq!(cache.len(), 9);
        let (gk, gv) = read_cache(&gpu, &cache).await;
        match dtype {
            KvDType::F32 => {
                let diff = check_close("f32 cache K (RoPE)", &gk, &k_all, ROPE_TOL).unwrap();
                say!("RoPE on append: max error {:.2e}", diff.max_abs);
                check_close("f32 cache V", &gv, &v_all, Tolerance::EXACT).unwrap();
            }
            KvDType::F16 => {
                // One f16 rounding (2^-11 relative) on top of the RoPE error.
                let t = Tolerance {
                    atol: ROPE_TOL.atol,
                    rtol: 1.0 / 1024.0,
                };
                check_close("f16 cache K", &gk, &k_all, t).unwrap();
                let (_, want_v) = refr::append(&k_all, &v_all, heads, d, 0, None, dtype);
                check_close("f16 cache V", &gv, &want_v, Tolerance::EXACT).unwrap();
            }
            KvDType::Int8 => {
                // Codes are round(x · 127 / absmax): within half a step (absmax / 254) of x, plus
                // absmax's f16 rounding (≤ 2^-11 of it); the RoPE error adds to K only.
                for (what, got, want) in [("K", &gk, &k_all), ("V", &gv, &v_all)] {
                    for (t, (g, w)) in got.chunks(d).zip(want.chunks(d)).enumerate() {
                        let amax = w.iter().fold(0.0f32, |a, &x| a.max(x.abs()));
                        let tol = Tolerance {
                            atol: amax / 254.0 + amax / 2048.0 + ROPE_TOL.atol,
                            rtol: 0.0,
                        };
                        check_close(&format!("int8 cache {what} row {t}"), g, w, tol).unwrap();
                    }
                }
                // The reference quantiser on V (no RoPE: same inputs). WGSL division is 2.5 ULP, so
                // x·127/absmax can land on the other side of a .5 tie on some GPUs (10 of 2688
                // values on an H100): allow 1% of codes to differ (each by one step at most,
                // which the tolerance check above already bounds).
                let (_, want) = refr::append(&k_all, &v_all, heads, d, 0, None, dtype);
                let diff = gv.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert!(
                    diff * 100 <= gv.len(),
                    "int8 V differs from the reference quantiser in {diff} values"
                );
            }
        }
    }
});

gpu_test!(kv_cache_rope_holds_at_long_positions, async {
    let gpu = gpu().await;
    // Angles up to 20000 rad: the range reduction must keep sin / cos right. inv_freq may differ
    // from the reference in its last bits (≤ 5e-7 relative, exponent rounding), which moves an
    // angle by ≤ 4.2e-4 rad (max of pos · 2^x · |x| · 4e-8), and the two f32 products may then
    // round apart by one ulp (≤ 2e-3 rad below 32768): ≤ 2.5e-3 rad on values ≤ 2√2, 7e-3
    // absolute. A wrong reduction errs by O(1).
    let pos = if BROWSER { 3000 } else { 20000 };
    let d = 64;
    let mut cache = KvCache::new(&gpu, "long", pos + 2, 1, d, KvDType::F32).unwrap();
    let zeros = upload(&gpu, "fill", &[pos, 1, d], &vec![0.0; pos * d]);
    let (k, v) = kv_data(2, 1, d, 80);
    let tk = upload(&gpu, "k", &[2, 1, d], &k);
    let tv = upload(&gpu, "v", &[2, 1, d], &v);
    let mut batch = gpu.batch();
    cache.append(&gpu, &mut batch, &zeros, &zeros, Some(ROPE)).unwrap();
    cache.append(&gpu, &mut batch, &tk, &tv, Some(ROPE)).unwrap();
    gpu.submit(batch).unwrap();
    let got = cache.k().to_f32_vec(&gpu).await.unwrap();
    let (want, _) = refr::append(&k, &v, 1, d, pos, Some(ROPE), KvDType::F32);
    let diff = check_close(
        "K rotated at long positions",
        &got[pos * d..],
        &want,
        Tolerance { atol: 7e-3, rtol: 0.0 },
    )
    .unwrap();
    say!("RoPE at position {pos}: max error {:.2e}", diff.max_abs);
});

gpu_test!(kv_cache_limits_reset_and_memory, async {
    let gpu = gpu().await;
    let before = gpu.memory().live_bytes;
    let mut cache = KvCache::new(&gpu, "c", 8, 2, 64, KvDType::F16).unwrap();
    assert_eq!(gpu.memory().live_bytes - before, cache.bytes());
    let (k, v) = kv_data(6, 2, 64, 90);
    let tk = upload(&gpu, "k", &[6, 2, 64], &k);
    let tv = upload(&gpu, "v", &[6, 2, 64], &v);
    let mut batch = gpu.batch();
    cache.append(&gpu, &mut batch, &tk, &tv, None).unwrap();
    let e = cache.append(&gpu, &mut batch, &tk, &tv, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ContextFull {
                len: 6,
                adding: 6,
                max: 8,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(cache.len(), 6, "a refused append must not move the cache");
    let bad = upload(&gpu, "k", &[6, 3, 64], &vec![0.0; 6 * 3 * 64]);
    assert!(matches!(
        cache.append(&gpu, &mut batch, &bad, &bad, None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        cache.append(&gpu, &mut batch, &tk, &tv, Some(Rope::plain(1e4, 65))),
        Err(Error::Shape { .. })
    ));
    gpu.submit(batch).unwrap();
    cache.truncate(2).unwrap();
    assert!(cache.truncate(3).is_err());
    cache.reset();
    assert!(cache.is_empty());
    let mut batch = gpu.batch();
    cache.append(&gpu, &mut batch, &tk, &tv, None).unwrap();
    gpu.submit(batch).unwrap();
    let (gk, _) = read_cache(&gpu, &cache).await;
    let (want, _) = refr::append(&k, &v, 2, 64, 0, None, KvDType::F16);
    check_close("after reset", &gk, &want, Tolerance::EXACT).unwrap();
    assert!(KvCache::new(&gpu, "bad", 8, 2, 72, KvDType::F32).is_err());

    // INT8 holds ≤ 1/4 of the f32 bytes, scales included, within 3.2 % (one f16 absmax per
    // head_dim bytes: 2/64 = 3.1 % over a quarter at head_dim 64, 1.6 % at 128).
    for d in [64usize, 128] {
        let f = KvCache::new(&gpu, "f32", 4096, 8, d, KvDType::F32).unwrap();
        let i = KvCache::new(&gpu, "i8", 4096, 8, d, KvDType::Int8).unwrap();
        let h = KvCache::new(&gpu, "f16", 4096, 8, d, KvDType::F16).unwrap();
        let ratio = i.bytes() as f64 / f.bytes() as f64;
        say!(
            "head_dim {d}: f32 {} B, f16 {} B, int8 {} B ({:.2} % of f32)",
            f.bytes(),
            h.bytes(),
            i.bytes(),
            100.0 * ratio
        );
        assert!(ratio <= 0.25 * 1.032, "int8 cache is {ratio:.4} of f32");
        assert!(h.bytes() as f64 <= 0.5 * f.bytes() as f64 * 1.001);
    }
});
