//! The fused decode kernels against CPU references: the RMSNorm prologue and epilogues of the
//! dense and quantised GEMVs (ops::project), SwiGLU with the norm prologue, and the fused QKV
//! (norm + projection + bias + RoPE, plain or scaled, + KV append, ops::qkv) for every KV
//! format; the fused decode layer against the unfused path (with scaled RoPE too).
//!
//! Tolerances. The reference normalises x in f64 (rounded to f32) and multiplies in f64; the GPU
//! multiplies x by the norm weight in f32, sums w·x in f32 (vec4 dots, strided partial sums, a
//! tree) and scales by 1/rms once (inverseSqrt, a few ULP). As in the quant / GEMV tests the
//! error is bounded relative to Σ|w·x̂| (x̂ the normalised x): 2e-5 · Σ|w·x̂| (the quant GEMV's
//! own bound is 1e-5; the prologue's products and 1/rms add a few 1e-7 relative), plus 1e-6 and
//! 1e-6 relative for the epilogue's adds. SwiGLU propagates the two errors through silu(g)·u.
//! RoPE adds its own ≤ 1e-5 absolute on values ≤ 3 (see the rope tests) — scaled by the values'
//! size here. The cache formats add their rounding: f16 half an ULP (2^-11 relative), int8 half
//! a step (absmax / 254) — and a value within the GPU's error of a rounding boundary may round
//! the other way, so those bounds add to, not replace, the computation's.

use crate::common::*;
use crate::kv_cache::read_cache;
use kjarni_web::cpu::compare::check_close;
use kjarni_web::cpu::{self, linear as refl, norm as refn, quant as cq};
use kjarni_web::ops::kv_cache::{KvCache, KvDType};
use kjarni_web::ops::linear::{Act, Epilogue, GateAct, NormPrologue, Residual};
use kjarni_web::ops::project::{self, GateUp, Linear};
use kjarni_web::ops::qkv::{self, QkvWeight};
use kjarni_web::ops::quant::{QuantType, QuantWeight};
use kjarni_web::ops::rope::{Rope, RopeScaling};
use kjarni_web::{DType, Gpu, GpuTensor};

const BROWSER: bool = cfg!(target_arch = "wasm32");
const EPS: f32 = 1e-5;

/// A weight format of the tests.
#[derive(Debug, Clone, Copy)]
enum Fmt {
    Dense(DType),
    Quant(QuantType),
}

/// `[n, k]` random weights in `fmt`: (GPU weight, the values the GPU reads, as f32).
fn weight(gpu: &Gpu, fmt: Fmt, n: usize, k: usize, seed: u64) -> (Linear, Vec<f32>) {
    let w = cpu::random(n * k, seed, -1.0, 1.0);
    match fmt {
        Fmt::Dense(dt) => {
            let vals = refl::round_to(dt, &w);
            (
                Linear::Dense(GpuTensor::from_f32(gpu, "w", &[n, k], dt, &vals).unwrap()),
                vals,
            )
        }
        Fmt::Quant(t) => {
            let blocks = cq::quantize(t, &w);
            let vals = cq::dequantize(t, &blocks);
            (
                Linear::Quant(QuantWeight::from_blocks(gpu, "w", t, n, k, &blocks).unwrap()),
                vals,
            )
        }
    }
}

/// |got - want| ≤ bound[i] for every element; returns the worst |err| / bound.
fn check_bound(what: &str, got: &[f32], want: &[f32], bound: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        let e = (g - w).abs();
        assert!(
            e <= b,
            "{what}: element {i}: got {g}, want {w}, |err| {e:.3e} > bound {b:.3e}"
        );
        worst = worst.max(e / b);
    }
    worst
}

/// The formats every test covers: dense f32 / f16 / bf16 and the four block types.
fn formats() -> Vec<Fmt> {
    let mut v = vec![Fmt::Dense(DType::F32), Fmt::Dense(DType::F16), Fmt::Dense(DType::BF16)];
    v.extend(QuantType::ALL.into_iter().map(Fmt::Quant));
    v
}

/// Row lengths for a format: odd and not a multiple of 64 for dense, a multiple of the block
/// (and for the 32-weight blocks not of 64) for quantised.
fn ks(fmt: Fmt) -> &'static [usize] {
    match fmt {
        Fmt::Dense(_) => &[77, 576],
        Fmt::Quant(QuantType::Q4_K) => &[256, 768],
        Fmt::Quant(_) => &[96, 608],
    }
}

gpu_test!(fused_gemv_prologue_and_epilogues_match_reference, async {
    // Natively under the GPU launch shapes (gemv_vec4 / the quantised kernels, the norm's sum of
    // squares inline), the CPU ones (gemv_rows) and the GPU ones with the previous separate
    // norm pass (`GpuOptions::norm_pass`); in the browser the adapter's own.
    let gpus = if BROWSER {
        vec![gpu().await]
    } else {
        vec![
            gpu_with(BOTH_SHAPES[0]).await,
            gpu_with(BOTH_SHAPES[1]).await,
            norm_pass_gpu().await,
        ]
    };
    let mut seed = 7000;
    let mut worst = 0.0f32;
    for gpu in &gpus {
        for fmt in formats() {
            for (ki, &k) in ks(fmt).iter().enumerate() {
                // (rows of x, N): one row for every format; quantised also two rows (M ≤ 4 GEMV).
                let ms: &[usize] = if matches!(fmt, Fmt::Quant(_)) && ki == 0 {
                    &[1, 2]
                } else {
                    &[1]
                };
                for &m in ms {
                    let n = if ki == 0 { 33 } else { 96 };
                    // Epilogues: 0 none, 1 bias, 2 bias + SiLU · product, 3 residual add in place,
                    // 4 residual add from another tensor; with and without the norm prologue (not
                    // with the in-place add: a kernel that writes x must not have the prologue —
                    // here y is not x, so it is allowed, but the model never does it).
                    for epi_kind in 0..5 {
                        for norm_on in [false, true] {
                            if BROWSER && !(epi_kind + usize::from(norm_on) + ki).is_multiple_of(3) {
                                continue; // SwiftShader: a rotating third of the combinations
                            }
                            seed += 10;
                            let (w, wv) = weight(gpu, fmt, n, k, seed);
                            let x = cpu::random(m * k, seed + 1, -1.0, 1.0);
                            let gamma = cpu::random(k, seed + 2, 0.5, 1.5);
                            let bias = cpu::random(n, seed + 3, -1.0, 1.0);
                            let other = cpu::random(m * n, seed + 4, -1.0, 1.0);
                            let y0 = cpu::random(m * n, seed + 5, -1.0, 1.0);
                            let xn = if norm_on {
                                refn::rms_norm(&x, None, &gamma, k, EPS)
                            } else {
                                x.clone()
                            };
                            let epi_ref = match epi_kind {
                                0 => refl::Epi::default(),
                                1 => refl::Epi {
                                    bias: Some(&bias),
                                    ..Default::default()
                                },
                                2 => refl::Epi {
                                    bias: Some(&bias),
                                    act: Act::Silu,
                                    mul: Some(&other),
                                    ..Default::default()
                                },
                                3 => refl::Epi {
                                    add: Some(&y0),
                                    ..Default::default()
                                },
                                _ => refl::Epi {
                                    add: Some(&other),
                                    ..Default::default()
                                },
                            };
                            let want = refl::linear(&xn, &wv, m, n, k, epi_ref);
                            let mag = refl::abs_dot(&xn, &wv, m, n, k);
                            let tx = upload(gpu, "x", &[m, k], &x);
                            let tg = upload(gpu, "gamma", &[k], &gamma);
                            let tb = upload(gpu, "bias", &[n], &bias);
                            let to = upload(gpu, "other", &[m, n], &other);
                            let ty = upload(gpu, "y", &[m, n], &y0);
                            let epi = match epi_kind {
                                0 => Epilogue::NONE,
                                1 => Epilogue::bias(&tb),
                                2 => Epilogue {
                                    bias: Some(&tb),
                                    act: Act::Silu,
                                    residual: Some(Residual::Mul(&to)),
                                },
                                3 => Epilogue {
                                    residual: Some(Residual::Add(&ty)),
                                    ..Default::default()
                                },
                                _ => Epilogue {
                                    residual: Some(Residual::Add(&to)),
                                    ..Default::default()
                                },
                            };
                            let norm = NormPrologue { weight: &tg, eps: EPS };
                            let mut b = gpu.batch();
                            project::record(gpu, &mut b, &tx, &w, &ty, norm_on.then_some(&norm), &epi, None).unwrap();
                            gpu.submit(b).unwrap();
                            let got = ty.to_f32_vec(gpu).await.unwrap();
                            // SiLU's derivative is ≤ 1.1 and the product operand ≤ 1.
                            let bound: Vec<f32> = mag
                                .iter()
                                .zip(&want)
                                .map(|(&s, &v)| 2.2e-5 * s + 1e-6 * (1.0 + v.abs()))
                                .collect();
                            let what = format!(
                                "{fmt:?} m={m} n={n} k={k} epilogue {epi_kind} norm {norm_on} ({})",
                                gpu.caps().variants.cpu
                            );
                            worst = worst.max(check_bound(&what, &got, &want, &bound));
                        }
                    }
                }
            }
        }
    }
    say!("fused GEMV prologue / epilogues: worst |err| / bound {worst:.3}");
});

gpu_test!(fused_swiglu_with_norm_prologue_matches_reference, async {
    // The gate activation alternates between SiLU (SwiGLU) and GELU-tanh (Gemma's GeGLU) case by
    // case, and the launch shapes (swiglu_fused: GPU; swiglu_rows: CPU) every second case, so
    // every weight format runs both activations and each activation both dense kernels;
    // natively a third device in the rotation runs the GPU shapes with the previous kernels
    // (x staged in workgroup memory, `GpuOptions::norm_pass`).
    let mut gpus = vec![gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    if !BROWSER {
        gpus.push(norm_pass_gpu().await);
    }
    let mut seed = 8000;
    let mut worst = 0.0f32;
    let mut case = 0usize;
    for fmt in formats() {
        for &k in ks(fmt) {
            for norm_on in [false, true] {
                if BROWSER && norm_on != (k % 2 == 0) {
                    continue;
                }
                case += 1;
                let act = if case.is_multiple_of(2) {
                    GateAct::GeluTanh
                } else {
                    GateAct::Silu
                };
                let gpu = &gpus[(case / 2) % gpus.len()];
                seed += 10;
                let n = 40;
                let (g, gv) = weight(gpu, fmt, n, k, seed);
                let (u, uv) = weight(gpu, fmt, n, k, seed + 1);
                let x = cpu::random(k, seed + 2, -1.0, 1.0);
                let gamma = cpu::random(k, seed + 3, 0.5, 1.5);
                let xn = if norm_on {
                    refn::rms_norm(&x, None, &gamma, k, EPS)
                } else {
                    x.clone()
                };
                let gr = refl::linear(&xn, &gv, 1, n, k, refl::Epi::default());
                let ur = refl::linear(&xn, &uv, 1, n, k, refl::Epi::default());
                let (gm, um) = (refl::abs_dot(&xn, &gv, 1, n, k), refl::abs_dot(&xn, &uv, 1, n, k));
                let want: Vec<f32> = gr
                    .iter()
                    .zip(&ur)
                    .map(|(&a, &b)| act.apply_f64(f64::from(a), f64::from(b)) as f32)
                    .collect();
                // |act'| ≤ 1.1 (SiLU) / 1.13 (GELU-tanh), |act(g)| ≤ |g|; the GPU's tanh form
                // x / (1 + exp(-2u)) adds a few ULP relative.
                let bound: Vec<f32> = (0..n)
                    .map(|i| {
                        let (eg, eu) = (2e-5 * gm[i] + 1e-6, 2e-5 * um[i] + 1e-6);
                        1.13 * eg * (ur[i].abs() + eu) + (gr[i].abs() + eg) * eu + 1e-6
                    })
                    .collect();
                let mut b = gpu.batch();
                let gu = GateUp::new(gpu, &mut b, "gate_up", &g, &u).unwrap().unwrap();
                gpu.submit(b).unwrap();
                let tx = upload(gpu, "x", &[1, k], &x);
                let tg = upload(gpu, "gamma", &[k], &gamma);
                let h = upload(gpu, "h", &[1, n], &vec![f32::NAN; n]);
                let norm = NormPrologue { weight: &tg, eps: EPS };
                let mut b = gpu.batch();
                project::record_swiglu(gpu, &mut b, &tx, norm_on.then_some(&norm), &gu, &h, act).unwrap();
                gpu.submit(b).unwrap();
                let got = h.to_f32_vec(gpu).await.unwrap();
                worst = worst.max(check_bound(
                    &format!("swiglu {fmt:?} k={k} norm {norm_on} {act:?}"),
                    &got,
                    &want,
                    &bound,
                ));
                // The joined quantised weight's row views are the parts again.
                if let (Linear::Quant(_), (Linear::Quant(gv2), Linear::Quant(uv2))) = (&g, gu.parts().unwrap()) {
                    assert_eq!(
                        (gv2.rows(), gv2.row_offset(), uv2.rows(), uv2.row_offset()),
                        (n, 0, n, n)
                    );
                    let y = upload(gpu, "y", &[1, n], &vec![f32::NAN; n]);
                    let mut b = gpu.batch();
                    project::record(gpu, &mut b, &tx, &Linear::Quant(uv2), &y, None, &Epilogue::NONE, None).unwrap();
                    gpu.submit(b).unwrap();
                    let x_only = refl::linear(&x, &uv, 1, n, k, refl::Epi::default());
                    let mag = refl::abs_dot(&x, &uv, 1, n, k);
                    let bound: Vec<f32> = mag.iter().map(|&s| 2e-5 * s + 1e-6).collect();
                    check_bound(
                        &format!("up view {fmt:?} k={k}"),
                        &y.to_f32_vec(gpu).await.unwrap(),
                        &x_only,
                        &bound,
                    );
                }
            }
        }
    }
    say!("fused SwiGLU: worst |err| / bound {worst:.3}");
});

/// One fused QKV case of [`qkv_case`].
struct QkvCase {
    fmt: Fmt,
    /// (query heads, kv heads, head_dim).
    heads: (usize, usize, usize),
    k: usize,
    kv: KvDType,
    with_bias: bool,
    split: Option<u32>,
    lanes: Option<u32>,
    rope: Rope,
    /// Tokens already in the cache: the new row lands at `pos`.
    pos: usize,
    seed: u64,
}

/// Run `c` (norm + projection + bias + RoPE + append of one token into a cache holding `pos`
/// rows) and check q and the appended K / V against the CPU reference within the bound of the
/// module comment; earlier cache rows must stay as they were. With a scaled `c.rope`, q and K
/// must also miss the unscaled reference by more than the bound (the case tells scaled from
/// plain). Returns the worst |err| / bound, `None` when the weights do not join (asserted to be
/// the device's missing bindings).
async fn qkv_case(gpu: &Gpu, c: QkvCase) -> Option<f32> {
    let QkvCase {
        fmt,
        heads: (nh, nkv, hd),
        k,
        kv,
        with_bias,
        split,
        lanes,
        rope,
        pos,
        seed,
    } = c;
    let (nq, nk) = (nh * hd, nkv * hd);
    let (wq, wqv) = weight(gpu, fmt, nq, k, seed);
    let (wk, wkv) = weight(gpu, fmt, nk, k, seed + 1);
    let (wv, wvv) = weight(gpu, fmt, nk, k, seed + 2);
    let x = cpu::random(k, seed + 3, -1.0, 1.0);
    let gamma = cpu::random(k, seed + 4, 0.5, 1.5);
    let bias = cpu::random(nq + 2 * nk, seed + 5, -1.0, 1.0);
    let mut cache = KvCache::new(gpu, "cache", pos + 2, nkv, hd, kv).unwrap();
    let prev_k = upload(gpu, "pk", &[pos, nkv, hd], &cpu::random(pos * nk, seed + 6, -1.0, 1.0));
    let prev_v = upload(gpu, "pv", &[pos, nkv, hd], &cpu::random(pos * nk, seed + 7, -1.0, 1.0));
    let mut b = gpu.batch();
    cache.append(gpu, &mut b, &prev_k, &prev_v, Some(rope)).unwrap();
    gpu.submit(b).unwrap();
    let (before_k, before_v) = read_cache(gpu, &cache).await;

    let tg = upload(gpu, "gamma", &[k], &gamma);
    let tb = [
        upload(gpu, "bq", &[nq], &bias[..nq]),
        upload(gpu, "bk", &[nk], &bias[nq..nq + nk]),
        upload(gpu, "bv", &[nk], &bias[nq + nk..]),
    ];
    let mut b = gpu.batch();
    let biases = with_bias.then(|| (&tb[0], &tb[1], &tb[2]));
    let w = QkvWeight::new(gpu, &mut b, "qkv", (&wq, &wk, &wv), &tg, biases, None, nh, nkv, hd).unwrap();
    gpu.submit(b).unwrap();
    let Some(w) = w else {
        assert!(
            !QkvWeight::supported(gpu, matches!(fmt, Fmt::Quant(_))),
            "{fmt:?}: the weights should join"
        );
        return None;
    };
    let tx = upload(gpu, "x", &[1, k], &x);
    let q = upload(gpu, "q", &[nh, hd], &vec![f32::NAN; nq]);
    let mut b = gpu.batch();
    qkv::record_tuned(gpu, &mut b, &tx, &w, EPS, &q, &mut cache, Some(rope), split, lanes).unwrap();
    gpu.submit(b).unwrap();
    assert_eq!(cache.len(), pos + 1);

    // Reference: normalise, project (+ bias), rotate q and k at `pos`.
    let xn = refn::rms_norm(&x, None, &gamma, k, EPS);
    let mut all_w = wqv.clone();
    all_w.extend_from_slice(&wkv);
    all_w.extend_from_slice(&wvv);
    let n = nq + 2 * nk;
    let epi = refl::Epi {
        bias: with_bias.then_some(&bias[..]),
        ..Default::default()
    };
    let y = refl::linear(&xn, &all_w, 1, n, k, epi);
    let mag = refl::abs_dot(&xn, &all_w, 1, n, k);
    let (mut qr, mut kr, vr) = (y[..nq].to_vec(), y[nq..nq + nk].to_vec(), y[nq + nk..].to_vec());
    let (mut q_plain, mut k_plain) = (qr.clone(), kr.clone());
    kjarni_web::cpu::rope::apply(&mut qr, nh, &rope, pos);
    kjarni_web::cpu::rope::apply(&mut kr, nkv, &rope, pos);
    let plain = Rope {
        scaling: RopeScaling::None,
        ..rope
    };
    kjarni_web::cpu::rope::apply(&mut q_plain, nh, &plain, pos);
    kjarni_web::cpu::rope::apply(&mut k_plain, nkv, &plain, pos);
    // Per head: the projection bound of its largest row plus RoPE's 1e-5 per unit of size.
    let head_bound = |range: std::ops::Range<usize>, vals: &[f32]| -> Vec<f32> {
        let m = mag[range]
            .chunks(hd)
            .map(|h| h.iter().fold(0.0f32, |a, &b| a.max(b)))
            .collect::<Vec<_>>();
        vals.chunks(hd)
            .zip(&m)
            .flat_map(|(h, &s)| {
                let size = h.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
                let e = 2e-5 * s * 2.0 + 1e-5 * size + 1e-6;
                vec![e; hd]
            })
            .collect()
    };
    let what = format!(
        "qkv {fmt:?} h{nh}/{nkv} d{hd} k={k} kv {} bias {with_bias} split {split:?} lanes {lanes:?} {:?} pos {pos} cpu shapes {}",
        kv.name(),
        rope.scaling,
        gpu.caps().variants.cpu
    );
    let got_q = q.to_f32_vec(gpu).await.unwrap();
    let q_bound = head_bound(0..nq, &qr);
    let mut worst = check_bound(&format!("{what}: q"), &got_q, &qr, &q_bound);
    let (after_k, after_v) = read_cache(gpu, &cache).await;
    assert_eq!(&after_k[..pos * nk], &before_k[..], "{what}: earlier K rows changed");
    assert_eq!(&after_v[..pos * nk], &before_v[..], "{what}: earlier V rows changed");
    let mut k_bound = Vec::new();
    for (name, got, want, range) in [
        ("k", &after_k[pos * nk..], &kr, nq..nq + nk),
        ("v", &after_v[pos * nk..], &vr, nq + nk..n),
    ] {
        let mut bound = head_bound(range, want);
        // The storage format's rounding (see the module comment).
        for (hi, head) in want.chunks(hd).enumerate() {
            let amax = head.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
            for (e, &v) in head.iter().enumerate() {
                bound[hi * hd + e] += match kv {
                    KvDType::F32 => 0.0,
                    KvDType::F16 => v.abs() / 2048.0,
                    KvDType::Int8 => amax / 254.0 * 1.01 + amax / 2048.0,
                };
            }
        }
        worst = worst.max(check_bound(&format!("{what}: cache {name}"), got, want, &bound));
        if name == "k" {
            k_bound = bound;
        }
    }
    if rope.scaling != RopeScaling::None {
        // The scaled rotation is not the plain one within the bound: the largest miss of the
        // unscaled reference, in bounds, must be > 1 for q and for K.
        for (name, got, want, bound) in [
            ("q", &got_q[..], &q_plain, &q_bound),
            ("k", &after_k[pos * nk..], &k_plain, &k_bound),
        ] {
            let miss = got
                .iter()
                .zip(want.iter())
                .zip(bound.iter())
                .fold(0.0f32, |a, ((g, w), b)| a.max((g - w).abs() / b));
            assert!(
                miss > 1.0,
                "{what}: {name} within the bound of the unscaled rotation (worst miss {miss:.2} bounds)"
            );
        }
    }
    Some(worst)
}

/// Llama 3.1's scaling (factor 8, low 1, high 4) with an original context of 64 tokens, so a
/// head of 64 or 128 at theta 1e4 has pairs kept (wavelength < 16), blended (16..64) and divided
/// by 8 (> 64) — asserted by [`scaling_regions`].
const LLAMA3_SMALL: RopeScaling = RopeScaling::Llama3 {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 64.0,
};

/// (kept, blended, divided) pair counts of `scaling` for a head of `rot` at `theta`.
fn scaling_regions(theta: f64, rot: usize, scaling: RopeScaling) -> (usize, usize, usize) {
    let plain = kjarni_web::ops::rope::inv_freq(theta, rot, RopeScaling::None);
    let factor = match scaling {
        RopeScaling::Llama3 { factor, .. } | RopeScaling::Linear { factor } => factor,
        RopeScaling::None => 1.0,
    };
    let (mut kept, mut blended, mut divided) = (0, 0, 0);
    for f in plain {
        let s = scaling.apply(f);
        if s == f {
            kept += 1;
        } else if (s - f / factor).abs() <= 1e-12 * f {
            divided += 1;
        } else {
            blended += 1;
        }
    }
    (kept, blended, divided)
}

gpu_test!(fused_qkv_matches_reference_for_every_format_and_kv_dtype, async {
    // The cases alternate between the GPU launch shapes (256 invocations, 32 lanes per row
    // group, a head over head_dim / 8 workgroups) and the CPU ones (64 invocations, 16 lanes,
    // one workgroup per head) whatever the adapter.
    let gpus = [gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    let mut seed = 9000;
    // (query heads, kv heads, head_dim): GQA 3 (SmolLM2), GQA 4 with head_dim 128, MHA.
    let shapes = [(9usize, 3usize, 64usize), (4, 1, 128), (2, 2, 64)];
    let kvs = [KvDType::F32, KvDType::F16, KvDType::Int8];
    let mut case = 0usize;
    let (mut checked, mut worst) = (0usize, 0.0f32);
    for fmt in formats() {
        for (si, &(nh, nkv, hd)) in shapes.iter().enumerate() {
            let k = ks(fmt)[si % 2];
            for (ki, &kv) in kvs.iter().enumerate() {
                for with_bias in [false, true] {
                    case += 1;
                    if BROWSER && !case.is_multiple_of(5) {
                        continue; // SwiftShader: a rotating fifth
                    }
                    if !BROWSER && !(ki + si + usize::from(with_bias)).is_multiple_of(2) && si > 0 {
                        continue; // natively: every KV format and bias on the first shape, half elsewhere
                    }
                    seed += 10;
                    let c = QkvCase {
                        fmt,
                        heads: (nh, nkv, hd),
                        k,
                        kv,
                        with_bias,
                        // The default split (a head over head_dim / 8 workgroups where the cache
                        // allows), one workgroup per head, and two.
                        split: [None, Some(1), Some(2)][case % 3],
                        lanes: None,
                        rope: Rope::plain(10000.0, hd),
                        pos: 5,
                        seed,
                    };
                    if let Some(e) = qkv_case(&gpus[(case / 3) % 2], c).await {
                        worst = worst.max(e);
                        checked += 1;
                    }
                }
            }
        }
    }
    say!("fused QKV: {checked} cases, worst |err| / bound {worst:.3}");
    assert!(
        checked > 0,
        "no case ran (the device lacks the storage bindings for every format?)"
    );
});

gpu_test!(fused_qkv_with_scaled_rope_matches_reference, async {
    // Llama 3's and linear RoPE scaling in the fused QKV epilogue (the frequencies of
    // `rope_inv_freq`, as the standalone RoPE kernel and K on append): every weight format, the
    // three head shapes, f32 / f16 / int8 caches, splits (default, 1, 2) and dense lanes (32, 8)
    // in turn, under the GPU and the CPU launch shapes in turn, at position 5. Tolerance: the
    // unscaled cases' bound (module comment); each case also checks that q and K miss the
    // *unscaled* rotation by more than that bound (LLAMA3_SMALL divides pairs ≥ 9 of a 64-head
    // by 8: at position 5 pair 9 turns by 0.33 rad less; linear factor 4 turns pair 0 by 3.75
    // rad less).
    let gpus = [gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    let scalings = [LLAMA3_SMALL, RopeScaling::Linear { factor: 4.0 }];
    let shapes = [(9usize, 3usize, 64usize), (4, 1, 128), (2, 2, 64)];
    for &(_, _, hd) in &shapes {
        let (kept, blended, divided) = scaling_regions(10000.0, hd, LLAMA3_SMALL);
        assert!(
            kept > 0 && blended > 0 && divided > 0,
            "head_dim {hd}: pairs kept / blended / divided {kept} / {blended} / {divided}"
        );
    }
    let kvs = [KvDType::F32, KvDType::F16, KvDType::Int8];
    let mut seed = 12_000;
    let mut case = 0usize;
    let (mut checked, mut worst) = (0usize, 0.0f32);
    for fmt in formats() {
        for (si, &(nh, nkv, hd)) in shapes.iter().enumerate() {
            for (ki, &kv) in kvs.iter().enumerate() {
                for (ri, &scaling) in scalings.iter().enumerate() {
                    case += 1;
                    if BROWSER && !case.is_multiple_of(5) {
                        continue; // SwiftShader: a rotating fifth
                    }
                    if !BROWSER && !(ki + si + ri).is_multiple_of(2) {
                        continue; // natively: half, every format × KV format × scaling somewhere
                    }
                    seed += 10;
                    let c = QkvCase {
                        fmt,
                        heads: (nh, nkv, hd),
                        k: ks(fmt)[(si + ri) % 2],
                        kv,
                        with_bias: case.is_multiple_of(2),
                        split: [None, Some(1), Some(2)][case % 3],
                        lanes: [None, Some(8)][(case / 2) % 2],
                        rope: Rope {
                            scaling,
                            ..Rope::plain(10000.0, hd)
                        },
                        pos: 5,
                        seed,
                    };
                    if let Some(e) = qkv_case(&gpus[(case / 3) % 2], c).await {
                        worst = worst.max(e);
                        checked += 1;
                    }
                }
            }
        }
    }
    say!("fused QKV with scaled RoPE: {checked} cases, worst |err| / bound {worst:.3}");
    assert!(checked > 0, "no case ran");
});

gpu_test!(fused_qkv_with_qk_norm_matches_reference, async {
    // Qwen3's per-head RMSNorm of q and k before RoPE, in the fused QKV (one workgroup per head
    // whatever the split asked: the sum of squares is the head's). Shapes: GQA 3 at head_dim 64,
    // GQA 2 at head_dim 128 (Qwen3-0.6B's 16 / 8 heads scaled down), MHA at 128; f32, f16 and
    // int8 caches; with and without bias; dense f32 / bf16 and two block types; plain, Llama 3
    // and linear RoPE scaling in turn.
    //
    // Tolerance: the projection's bound B per head (as in `qkv_case`: 2e-5 · Σ|w·x̂| · 2 +
    // 1e-6) divided by the head's rms r, times (max q/k norm weight + the normalised size): the
    // error of v / r and of r itself (the rms of the errors ≤ B); plus 1e-5 of the size for
    // inverseSqrt and RoPE, 1e-6 absolute. v heads keep the plain bound.
    let gpu = gpu().await;
    let mut seed = 9500;
    let shapes = [(9usize, 3usize, 64usize), (4, 2, 128), (2, 2, 128)];
    let kvs = [KvDType::F32, KvDType::F16, KvDType::Int8];
    let fmts = [
        Fmt::Dense(DType::F32),
        Fmt::Dense(DType::BF16),
        Fmt::Quant(QuantType::Q8_0),
        Fmt::Quant(QuantType::Q4_K),
    ];
    let mut case = 0usize;
    let (mut checked, mut worst) = (0usize, 0.0f32);
    for fmt in fmts {
        for (si, &(nh, nkv, hd)) in shapes.iter().enumerate() {
            let k = ks(fmt)[si % 2];
            for &kv in &kvs {
                for with_bias in [false, true] {
                    case += 1;
                    if BROWSER && !case.is_multiple_of(4) {
                        continue; // SwiftShader: a rotating quarter
                    }
                    seed += 10;
                    let (nq, nk) = (nh * hd, nkv * hd);
                    let n = nq + 2 * nk;
                    let (wq, wqv) = weight(&gpu, fmt, nq, k, seed);
                    let (wk, wkv) = weight(&gpu, fmt, nk, k, seed + 1);
                    let (wv, wvv) = weight(&gpu, fmt, nk, k, seed + 2);
                    let x = cpu::random(k, seed + 3, -1.0, 1.0);
                    let gamma = cpu::random(k, seed + 4, 0.5, 1.5);
                    let bias = cpu::random(n, seed + 5, -1.0, 1.0);
                    let qnw = cpu::random(hd, seed + 6, 0.5, 1.5);
                    let knw = cpu::random(hd, seed + 7, 0.5, 1.5);
                    // Plain, Llama 3 and linear scaling in turn (Qwen3's theta: LLAMA3_SMALL still
                    // keeps, blends and divides pairs of a 64- and a 128-head).
                    let rope = Rope {
                        scaling: [RopeScaling::None, LLAMA3_SMALL, RopeScaling::Linear { factor: 4.0 }][(case / 3) % 3],
                        ..Rope::plain(1_000_000.0, hd)
                    };
                    let pos = 3;
                    let mut cache = KvCache::new(&gpu, "cache", pos + 2, nkv, hd, kv).unwrap();
                    let prev = cpu::random(pos * nk, seed + 8, -1.0, 1.0);
                    let prev_t = upload(&gpu, "prev", &[pos, nkv, hd], &prev);
                    let mut b = gpu.batch();
                    cache.append(&gpu, &mut b, &prev_t, &prev_t, Some(rope)).unwrap();
                    gpu.submit(b).unwrap();
                    let (before_k, before_v) = read_cache(&gpu, &cache).await;

                    let tg = upload(&gpu, "gamma", &[k], &gamma);
                    let tb = [
                        upload(&gpu, "bq", &[nq], &bias[..nq]),
                        upload(&gpu, "bk", &[nk], &bias[nq..nq + nk]),
                        upload(&gpu, "bv", &[nk], &bias[nq + nk..]),
                    ];
                    let (tqn, tkn) = (upload(&gpu, "q_norm", &[hd], &qnw), upload(&gpu, "k_norm", &[hd], &knw));
                    let mut b = gpu.batch();
                    let biases = with_bias.then(|| (&tb[0], &tb[1], &tb[2]));
                    let w = QkvWeight::new(
                        &gpu,
                        &mut b,
                        "qkv",
                        (&wq, &wk, &wv),
                        &tg,
                        biases,
                        Some((&tqn, &tkn)),
                        nh,
                        nkv,
                        hd,
                    )
                    .unwrap();
                    gpu.submit(b).unwrap();
                    let Some(w) = w else {
                        assert!(
                            !QkvWeight::supported(&gpu, matches!(fmt, Fmt::Quant(_))),
                            "{fmt:?}: the weights should join"
                        );
                        continue;
                    };
                    let tx = upload(&gpu, "x", &[1, k], &x);
                    let q = upload(&gpu, "q", &[nh, hd], &vec![f32::NAN; nq]);
                    // Any split asked for comes out as one workgroup per head.
                    let split = [None, Some(1), Some(4)][case % 3];
                    let mut b = gpu.batch();
                    qkv::record_tuned(&gpu, &mut b, &tx, &w, EPS, &q, &mut cache, Some(rope), split, None).unwrap();
                    gpu.submit(b).unwrap();
                    assert_eq!(cache.len(), pos + 1);

                    let mut all_w = wqv.clone();
                    all_w.extend_from_slice(&wkv);
                    all_w.extend_from_slice(&wvv);
                    let r = cpu::qkv::QkvRef {
                        gamma: &gamma,
                        w: &all_w,
                        bias: with_bias.then_some(&bias[..]),
                        qk_norm: Some((&qnw, &knw)),
                        n_heads: nh,
                        n_kv_heads: nkv,
                        head_dim: hd,
                    };
                    let (qr, kr, vr) = cpu::qkv::fused_qkv(&x, &r, Some(&rope), pos, EPS);
                    let y = cpu::qkv::project(&x, &r, EPS);
                    let xn = refn::rms_norm(&x, None, &gamma, k, EPS);
                    let mag = refl::abs_dot(&xn, &all_w, 1, n, k);
                    // Per head: the projection bound of its largest row, through the norm.
                    let head_bound =
                        |range: std::ops::Range<usize>, vals: &[f32], normed: Option<&[f32]>| -> Vec<f32> {
                            let wmax = normed.map_or(0.0, |w| w.iter().fold(0.0f32, |a, &b| a.max(b.abs())));
                            mag[range.clone()]
                                .chunks(hd)
                                .zip(y[range].chunks(hd))
                                .zip(vals.chunks(hd))
                                .flat_map(|((m, pre), h)| {
                                    let proj = 2e-5 * m.iter().fold(0.0f32, |a, &b| a.max(b)) * 2.0 + 1e-6;
                                    let size = h.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
                                    let e = match normed {
                                        None => proj + 1e-5 * size + 1e-6,
                                        Some(_) => {
                                            let rms = (pre.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hd as f64
                                                + EPS as f64)
                                                .sqrt() as f32;
                                            2.0 * proj / rms * (wmax + size) + 1e-5 * size + 1e-6
                                        }
                                    };
                                    vec![e; hd]
                                })
                                .collect()
                        };
                    let what = format!(
                        "qkv+qk_norm {fmt:?} h{nh}/{nkv} d{hd} k={k} kv {} bias {with_bias} split {split:?} {:?}",
                        kv.name(),
                        rope.scaling
                    );
                    let got_q = q.to_f32_vec(&gpu).await.unwrap();
                    worst = worst.max(check_bound(
                        &format!("{what}: q"),
                        &got_q,
                        &qr,
                        &head_bound(0..nq, &qr, Some(&qnw)),
                    ));
                    let (after_k, after_v) = read_cache(&gpu, &cache).await;
                    assert_eq!(&after_k[..pos * nk], &before_k[..], "{what}: earlier K rows changed");
                    assert_eq!(&after_v[..pos * nk], &before_v[..], "{what}: earlier V rows changed");
                    for (name, got, want, range, normed) in [
                        ("k", &after_k[pos * nk..], &kr, nq..nq + nk, Some(&knw[..])),
                        ("v", &after_v[pos * nk..], &vr, nq + nk..n, None),
                    ] {
                        let mut bound = head_bound(range, want, normed);
                        for (hi, head) in want.chunks(hd).enumerate() {
                            let amax = head.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
                            for (e, &v) in head.iter().enumerate() {
                                bound[hi * hd + e] += match kv {
                                    KvDType::F32 => 0.0,
                                    KvDType::F16 => v.abs() / 2048.0,
                                    KvDType::Int8 => amax / 254.0 * 1.01 + amax / 2048.0,
                                };
                            }
                        }
                        worst = worst.max(check_bound(&format!("{what}: cache {name}"), got, want, &bound));
                    }
                    checked += 1;
                }
            }
        }
    }
    say!("fused QKV with q/k norm: {checked} cases, worst |err| / bound {worst:.3}");
    assert!(checked > 0, "no case ran");
});

gpu_test!(fused_qkv_is_bit_identical_for_every_split, async {
    // A row's sum does not depend on how many workgroups share a head while the workgroup size
    // stays the same (splits 1 … head_dim / 8 at 256 invocations; head_dim / 4 narrows the
    // workgroup, so 1 / rms sums in another order and differs in the last bits — seen on
    // SwiftShader): q and the appended K / V must be the same bits (f32 and f16 caches; int8
    // keeps whole heads), dense and quantised; under the GPU launch shapes and the CPU ones (64
    // invocations, 16 lanes per row group for every split).
    let (nh, nkv, hd) = (9usize, 3usize, 64usize);
    let fmts: &[Fmt] = if BROWSER {
        &[Fmt::Dense(DType::BF16)]
    } else {
        &[
            Fmt::Dense(DType::BF16),
            Fmt::Dense(DType::F32),
            Fmt::Quant(QuantType::Q4_K),
        ]
    };
    let kvs: &[KvDType] = if BROWSER {
        &[KvDType::F16]
    } else {
        &[KvDType::F16, KvDType::F32]
    };
    for (shapes, &fmt) in BOTH_SHAPES.iter().flat_map(|s| fmts.iter().map(move |f| (s, f))) {
        let gpu = gpu_with(*shapes).await;
        let k = ks(fmt)[1];
        let (nq, nk) = (nh * hd, nkv * hd);
        let (wq, _) = weight(&gpu, fmt, nq, k, 50);
        let (wk, _) = weight(&gpu, fmt, nk, k, 51);
        let (wv, _) = weight(&gpu, fmt, nk, k, 52);
        let tg = upload(&gpu, "gamma", &[k], &cpu::random(k, 53, 0.5, 1.5));
        let bias = cpu::random(nq + 2 * nk, 54, -1.0, 1.0);
        let tb = [
            upload(&gpu, "bq", &[nq], &bias[..nq]),
            upload(&gpu, "bk", &[nk], &bias[nq..nq + nk]),
            upload(&gpu, "bv", &[nk], &bias[nq + nk..]),
        ];
        let mut b = gpu.batch();
        let w = QkvWeight::new(
            &gpu,
            &mut b,
            "qkv",
            (&wq, &wk, &wv),
            &tg,
            Some((&tb[0], &tb[1], &tb[2])),
            None,
            nh,
            nkv,
            hd,
        )
        .unwrap();
        gpu.submit(b).unwrap();
        let Some(w) = w else { continue };
        let tx = upload(&gpu, "x", &[1, k], &cpu::random(k, 55, -1.0, 1.0));
        let rope = Rope::plain(10000.0, hd);
        for &kv in kvs {
            let mut first: Option<(Vec<u32>, Vec<f32>, Vec<f32>)> = None;
            for split in [1u32, 2, 4, 8] {
                let mut cache = KvCache::new(&gpu, "cache", 8, nkv, hd, kv).unwrap();
                let q = upload(&gpu, "q", &[nh, hd], &vec![f32::NAN; nq]);
                let mut b = gpu.batch();
                for _ in 0..3 {
                    qkv::record_tuned(
                        &gpu,
                        &mut b,
                        &tx,
                        &w,
                        EPS,
                        &q,
                        &mut cache,
                        Some(rope),
                        Some(split),
                        None,
                    )
                    .unwrap();
                }
                gpu.submit(b).unwrap();
                let got_q: Vec<u32> = q.to_f32_vec(&gpu).await.unwrap().iter().map(|v| v.to_bits()).collect();
                let (ck, cv) = read_cache(&gpu, &cache).await;
                let what = format!("{fmt:?} kv {} split {split} ({shapes:?} shapes)", kv.name());
                assert!(got_q.iter().all(|b| !f32::from_bits(*b).is_nan()), "{what}: q has NaN");
                match &first {
                    None => first = Some((got_q, ck, cv)),
                    Some((q1, k1, v1)) => {
                        assert_eq!(&got_q, q1, "{what}: q differs from split 1");
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&ck), bits(k1), "{what}: K differs from split 1");
                        assert_eq!(bits(&cv), bits(v1), "{what}: V differs from split 1");
                    }
                }
            }
        }
    }
});

/// The tiny Llama of tests/gpu/generate.rs with `rope_scaling` set to `scaling` in its config.
async fn tiny_llama_with_rope(gpu: &Gpu, scaling: &serde_json::Value, kv: KvDType) -> kjarni_web::models::llama::Llama {
    use kjarni_web::models::llama::{Llama, LlamaOptions};
    let mut src = crate::generate::tiny_model(false);
    let mut c: serde_json::Value = serde_json::from_slice(
        &kjarni_web::load::ByteSource::read_all(&src, "config.json")
            .await
            .unwrap(),
    )
    .unwrap();
    c["rope_scaling"] = scaling.clone();
    src.insert("config.json", serde_json::to_vec(&c).unwrap());
    let opts = LlamaOptions {
        kv_cache: kv,
        max_context: 64,
    };
    Llama::load(gpu, &src, &opts, &mut |_| {}).await.unwrap()
}

/// Logits of `prompt` then of each id in `steps` (one-token forward passes).
async fn decode_logits(
    gpu: &Gpu,
    m: &mut kjarni_web::models::llama::Llama,
    prompt: &[u32],
    steps: &[u32],
) -> Vec<Vec<f32>> {
    m.reset();
    let mut out = vec![m.forward(gpu, prompt).await.unwrap()];
    for &id in steps {
        out.push(m.forward(gpu, &[id]).await.unwrap());
    }
    out
}

gpu_test!(fused_decode_layer_matches_the_unfused_path, async {
    use kjarni_web::cpu::synthetic::{self, Shape};
    use kjarni_web::models::llama::{DecodePath, Llama, LlamaOptions};
    // The cases alternate between the GPU and the CPU launch shapes whatever the adapter.
    let gpus = [gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    // Small Llama / Qwen2 shapes: head_dim 64 (GQA 2, tied) and 128 (GQA 2, biases, untied
    // lm_head); Qwen3 (per-head q/k norms, head_dim 64 with heads · head_dim ≠ hidden as in
    // Qwen3-0.6B; safetensors only: the GGUF writer makes Llama / Qwen2 files).
    let shapes = [
        Shape {
            name: "llama",
            hidden: 256,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ff: 512,
            vocab: 300,
            qkv_bias: false,
            tied: true,
            arch: synthetic::Arch::Llama,
            head_dim: 0,
        },
        Shape {
            name: "qwen2",
            hidden: 512,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ff: 768,
            vocab: 260,
            qkv_bias: true,
            tied: false,
            arch: synthetic::Arch::Llama,
            head_dim: 0,
        },
        Shape {
            name: "qwen3",
            hidden: 384,
            layers: 2,
            heads: 8,
            kv_heads: 2,
            ff: 512,
            vocab: 280,
            qkv_bias: false,
            tied: true,
            arch: synthetic::Arch::Qwen3,
            head_dim: 64,
        },
        // Gemma 3 (sandwich norms, GELU-tanh gate, (1 + w) norms, q/k norms, local layers on
        // their own RoPE base, query_pre_attn_scalar 256 ≠ head_dim, √hidden embedding scale).
        Shape {
            name: "gemma3",
            hidden: 320,
            layers: 2,
            heads: 4,
            kv_heads: 1,
            ff: 448,
            vocab: 270,
            qkv_bias: false,
            tied: true,
            arch: synthetic::Arch::Gemma3,
            head_dim: 64,
        },
    ];
    let formats: [Option<QuantType>; 5] = [
        None,
        Some(QuantType::Q8_0),
        Some(QuantType::Q4_0),
        Some(QuantType::Q4_1),
        Some(QuantType::Q4_K),
    ];
    let prompt = [1u32, 17, 42, 99, 5, 250, 3];
    let steps = [7u32, 11, 200, 13];
    let mut case = 0usize;
    for s in &shapes {
        for fmt in formats {
            if fmt.is_some() && s.arch != synthetic::Arch::Llama {
                continue;
            }
            for kv in [KvDType::F32, KvDType::F16, KvDType::Int8] {
                case += 1;
                // SwiftShader: a rotating sixth, and Qwen3 / Gemma 3 with the f16 cache.
                let qwen3_f16 = s.arch != synthetic::Arch::Llama && kv == KvDType::F16;
                if BROWSER && !case.is_multiple_of(6) && !qwen3_f16 {
                    continue;
                }
                let gpu = &gpus[(case / 6) % 2];
                let opts = LlamaOptions {
                    kv_cache: kv,
                    max_context: 64,
                };
                let mut m = match fmt {
                    None => Llama::load(gpu, &synthetic::safetensors(s).0, &opts, &mut |_| {})
                        .await
                        .unwrap(),
                    Some(t) => Llama::load_gguf(gpu, &synthetic::gguf(s, t).0, "model.gguf", &opts, &mut |_| {})
                        .await
                        .unwrap(),
                };
                let what = format!(
                    "{} {fmt:?} kv {} (cpu shapes {})",
                    s.name,
                    kv.name(),
                    gpu.caps().variants.cpu
                );
                assert_eq!(m.decode_path(), DecodePath::Fused, "{what}: the weights should fuse");
                m.set_decode_path(DecodePath::Unfused);
                let want = decode_logits(gpu, &mut m, &prompt, &steps).await;
                let unfused_dispatches = m.dispatches_per_token();
                m.set_decode_path(DecodePath::Fused);
                let got = decode_logits(gpu, &mut m, &prompt, &steps).await;
                let fused_dispatches = m.dispatches_per_token();
                // One embedding lookup, 5 per layer, the lm_head (one block); Gemma: the
                // embedding scale and 7 per layer (a sandwich norm after O and after down).
                let want_dispatches = match s.arch {
                    synthetic::Arch::Gemma3 => 3 + 7 * s.layers,
                    _ => 2 + 5 * s.layers,
                };
                assert_eq!(
                    fused_dispatches, want_dispatches,
                    "{what}: dispatches per token (unfused: {unfused_dispatches})"
                );
                // Same math, different f32 summation order and the norm folded into the GEMVs:
                // logits agree to ~1e-5 relative of their size; int8 KV codes may round the
                // other way on a value that differs by that much (one step, absmax / 127, of
                // one element), which moves a logit by up to ~1e-2 of its size.
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let size = w.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
                    let tol = match kv {
                        KvDType::Int8 => 2e-2 * size,
                        _ => 1e-3 * size,
                    };
                    check_close(
                        &format!("{what}: step {i}"),
                        g,
                        w,
                        kjarni_web::cpu::compare::Tolerance { atol: tol, rtol: 0.0 },
                    )
                    .unwrap();
                }
                // Rewind into the decoded tokens and decode them again: the cache rows (int8: the
                // shared scale words too) are rewritten, the logits come out identical.
                m.truncate(prompt.len() + 1).unwrap();
                for (i, &id) in steps.iter().enumerate().skip(1) {
                    let again = m.forward(gpu, &[id]).await.unwrap();
                    assert_eq!(again, got[i + 1], "{what}: step {i} after truncate");
                }
                say!("{what}: fused {fused_dispatches} / unfused {unfused_dispatches} dispatches per token");
            }
        }
    }
});

gpu_test!(fused_decode_with_scaled_rope_matches_the_unfused_path, async {
    // A tiny Llama (tests/gpu/generate.rs: head_dim 16, GQA 2, theta 1e4) with Llama 3.1's
    // `rope_scaling` on an original context of 64 (pair 0 kept, pairs 1–2 blended, 3–7 divided
    // by 8; asserted) and with linear scaling: it must decode through DecodePath::Fused, and 24
    // greedy steps (positions 5–28) give the same ids on the fused path as on the unfused one
    // (the logits path: forward + CPU argmax) and through `generate` (GPU sampling), with every
    // step's logits within 1e-3 of their size of the unfused ones (the fused-vs-unfused
    // tolerance above). The same checkpoint with its scaling dropped must miss the unfused
    // logits by more than that, at the same ids: a fused path ignoring the scaling fails.
    use kjarni_web::generate::{argmax, generate, CancelToken, GenerateOptions};
    use kjarni_web::models::llama::DecodePath;
    let prompt = [1u32, 17, 42, 99, 250];
    let n = 24;
    let llama3 = serde_json::json!({
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64
    });
    let (kept, blended, divided) = scaling_regions(10000.0, 16, LLAMA3_SMALL);
    assert_eq!((kept, blended, divided), (1, 2, 5), "pairs kept / blended / divided");
    let linear = serde_json::json!({"rope_type": "linear", "factor": 4.0});
    let plain = serde_json::json!({"rope_type": "default"});
    let cases = [
        ("llama3", &llama3, KvDType::F32, BOTH_SHAPES[0]),
        ("llama3", &llama3, KvDType::F16, BOTH_SHAPES[1]),
        ("linear", &linear, KvDType::F32, BOTH_SHAPES[1]),
    ];
    for (i, &(name, scaling, kv, shapes)) in cases.iter().enumerate() {
        if BROWSER && i == 2 {
            continue; // SwiftShader: the llama3 cases
        }
        let gpu = gpu_with(shapes).await;
        let what = format!("{name} kv {} ({shapes:?} shapes)", kv.name());
        let mut m = tiny_llama_with_rope(&gpu, scaling, kv).await;
        assert_eq!(
            m.decode_path(),
            DecodePath::Fused,
            "{what}: scaled RoPE should decode fused"
        );
        // The unfused path, greedy: its ids and every step's logits.
        m.set_decode_path(DecodePath::Unfused);
        m.reset();
        let mut logits = m.forward(&gpu, &prompt).await.unwrap();
        let (mut ids, mut want) = (Vec::new(), Vec::new());
        while ids.len() < n {
            ids.push(argmax(&logits).unwrap());
            want.push(logits);
            logits = m.forward(&gpu, &[*ids.last().unwrap()]).await.unwrap();
        }
        let unfused_dispatches = m.dispatches_per_token();
        // The fused path on the same ids: the same logits within the tolerance, the same argmax
        // at every step (so its own greedy run is the same).
        m.set_decode_path(DecodePath::Fused);
        let got = decode_logits(&gpu, &mut m, &prompt, &ids[..n - 1]).await;
        let tol = |w: &[f32]| 1e-3 * w.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        for (s, (g, w)) in got.iter().zip(&want).enumerate() {
            check_close(
                &format!("{what}: step {s}"),
                g,
                w,
                kjarni_web::cpu::compare::Tolerance {
                    atol: tol(w),
                    rtol: 0.0,
                },
            )
            .unwrap();
            assert_eq!(argmax(g).unwrap(), ids[s], "{what}: greedy id {s}");
        }
        assert_eq!(
            m.dispatches_per_token(),
            2 + 5 * 2,
            "{what}: fused dispatches per token"
        );
        // generate (GPU sampling, steps in flight) on the fused path.
        m.reset();
        let opts = GenerateOptions {
            max_tokens: n,
            ignore_eos: true,
            steps_in_flight: 2,
            ..Default::default()
        };
        let text = |ids: &[u32]| Ok(ids.iter().map(|i| format!("<{i}>")).collect());
        let g = generate(&mut m, &gpu, text, &prompt, &opts, &CancelToken::new(), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(
            g.tokens, ids,
            "{what}: generate on the fused path vs the unfused greedy ids"
        );
        // The scaling dropped: decode steps (the fused QKV's) miss by more than the tolerance.
        let mut p = tiny_llama_with_rope(&gpu, &plain, kv).await;
        assert_eq!(p.decode_path(), DecodePath::Fused);
        let off = decode_logits(&gpu, &mut p, &prompt, &ids[..n - 1]).await;
        let miss = off[1..]
            .iter()
            .zip(&want[1..])
            .map(|(o, w)| o.iter().zip(w).fold(0.0f32, |a, (x, y)| a.max((x - y).abs())) / tol(w))
            .fold(0.0f32, f32::max);
        assert!(
            miss > 1.0,
            "{what}: the model without its scaling is within the tolerance ({miss:.2} tolerances)"
        );
        say!(
            "{what}: {n} greedy ids equal fused / unfused / generate; {} / {unfused_dispatches} dispatches per token fused / unfused; the scaling dropped misses by {miss:.1} tolerances",
            2 + 5 * 2
        );
    }
});
