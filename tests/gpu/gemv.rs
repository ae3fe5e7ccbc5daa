use crate::common::*;
use crate::linear_util::*;
use kjarni_web::cpu::compare::Tolerance;
use kjarni_web::cpu::linear::{abs_dot, linear, Epi};
use kjarni_web::cpu::{self};
use kjarni_web::gpu::Reduction;
use kjarni_web::ops::gemv::{self, Variant};
use kjarni_web::ops::linear::{Act, Epilogue, Residual};
use kjarni_web::{DType, Error, GpuOptions, GpuTensor};

// (N, K): K odd (rows start mid-word), K < 8, K not a multiple of 8, K = 8, N not a multiple of
// the rows per workgroup, long-ish rows, a single row and a single column.
const SHAPES: [(usize, usize); 14] = [
    (1, 1),
    (3, 1),
    (5, 3),
    (7, 7),
    (4, 8),
    (9, 9),
    (6, 12),
    (33, 15),
    (6, 17),
    (65, 63),
    (31, 100),
    (8, 255),
    (13, 257),
    (70, 1031),
];

fn variants(gpu: &kjarni_web::Gpu) -> Vec<Variant> {
    if browser() {
        let r = gpu.caps().variants.reduction;
        return vec![
            Variant::Scalar,
            Variant::Vec4 {
                rows: 4,
                workgroup: 64,
                reduction: r,
            },
            Variant::Vec4 {
                rows: 1,
                workgroup: 64,
                reduction: Reduction::SharedMemory,
            },
            Variant::Grouped {
                lanes: 16,
                rows: 2,
                workgroup: 64,
                reduction: r,
            },
            Variant::Rows { rows: 2, workgroup: 16 },
        ];
    }
    let mut v = vec![Variant::Scalar];
    for reduction in gpu.caps().reductions() {
        for (rows, workgroup) in [(1, 64), (4, 256)] {
            v.push(Variant::Vec4 {
                rows,
                workgroup,
                reduction,
            });
        }
    }
    let reduction = gpu.caps().variants.reduction;
    v.push(Variant::Vec4 {
        rows: 2,
        workgroup: 128,
        reduction,
    });
    v.push(Variant::Vec4 {
        rows: 8,
        workgroup: 32,
        reduction,
    });
    // Short-row groups: 4 / 16 / 32 lanes, one to three rows per group (odd outputs per workgroup).
    v.push(Variant::Grouped {
        lanes: 4,
        rows: 1,
        workgroup: 64,
        reduction,
    });
    v.push(Variant::Grouped {
        lanes: 16,
        rows: 3,
        workgroup: 256,
        reduction,
    });
    v.push(Variant::Grouped {
        lanes: 32,
        rows: 2,
        workgroup: 64,
        reduction: Reduction::SharedMemory,
    });
    // CPU adapters' row per invocation (gemv_rows).
    v.push(Variant::Rows { rows: 1, workgroup: 4 });
    v.push(Variant::Rows { rows: 2, workgroup: 64 });
    v.push(Variant::Rows { rows: 8, workgroup: 16 });
    v
}

gpu_test!(gemv_is_exact_on_awkward_shapes_for_every_dtype_and_variant, async {
    let gpu = gpu().await;
    let variants = variants(&gpu);
    for dtype in DTYPES {
        let shapes = subset(&SHAPES, |s| {
            [(1, 1), (5, 3), (4, 8), (6, 17), (13, 257), (70, 1031)].contains(s)
        });
        for (i, &(n, k)) in shapes.iter().enumerate() {
            let (x, w) = exact_data(1, n, k, 10 + i as u64);
            let (tw, wv) = weights(&gpu, "w", n, k, dtype, &w);
            let tx = upload(&gpu, "x", &[k], &x);
            let want = linear(&x, &wv, 1, n, k, Epi::default());
            let outs: Vec<GpuTensor> = variants
                .iter()
                .map(|_| upload(&gpu, "y", &[n], &vec![f32::NAN; n]))
                .collect();
            let mut batch = gpu.batch();
            for (v, y) in variants.iter().zip(&outs) {
                gemv::record_variant(&gpu, &mut batch, &tw, &tx, y, &Epilogue::NONE, *v).unwrap();
            }
            gpu.submit(batch).unwrap();
            for (v, y) in variants.iter().zip(&outs) {
                assert_tensor(
                    &gpu,
                    &format!("gemv {dtype} {} [{n}, {k}]", v.name()),
                    y,
                    &want,
                    Tolerance::EXACT,
                )
                .await;
            }
        }
    }
});

// Realistic values: f32 sums in a different order than the f64 reference. Each output of the
// vec4 kernel is a chain of at most K / (8 · WG) + 3 chunk sums plus log2(WG) tree levels (< 20
// roundings for K ≤ 5000, WG ≥ 64): error ≤ 20 · 2^-24 · Σ|x·w| ≈ 1.2e-6 Σ|x·w|; we allow 1e-5.
// The scalar baseline sums serially: ≤ K · 2^-24 · Σ|x·w|. GELU adds the erf approximation
// (1.5e-7 absolute) and f32 exp: 2e-6 relative on top.
gpu_test!(gemv_matches_reference_with_bias_gelu_and_residuals, async {
    let gpu = gpu().await;
    for (i, &(n, k)) in subset(&[(37usize, 1001usize), (300, 4096), (5, 4097)], |s| s.0 == 37)
        .iter()
        .enumerate()
    {
        let x = cpu::random(k, 1 + i as u64, -2.0, 2.0);
        let w = cpu::random(n * k, 2 + i as u64, -0.5, 0.5);
        let b = cpu::random(n, 3 + i as u64, -1.0, 1.0);
        let r = cpu::random(n, 4 + i as u64, -3.0, 3.0);
        for dtype in subset(&DTYPES, |d| *d != DType::F32) {
            let (tw, wv) = weights(&gpu, "w", n, k, dtype, &w);
            let tx = upload(&gpu, "x", &[1, k], &x);
            let tb = upload(&gpu, "bias", &[n], &b);
            let tr = upload(&gpu, "res", &[1, n], &r);
            let scale = abs_dot(&x, &wv, 1, n, k);
            let cases: Vec<(&str, Epi, Act, bool)> = vec![
                (
                    "bias+gelu",
                    Epi {
                        bias: Some(&b),
                        act: Act::Gelu,
                        ..Default::default()
                    },
                    Act::Gelu,
                    false,
                ),
                (
                    "bias+residual",
                    Epi {
                        bias: Some(&b),
                        add: Some(&r),
                        ..Default::default()
                    },
                    Act::None,
                    false,
                ),
                (
                    "silu*other",
                    Epi {
                        act: Act::Silu,
                        mul: Some(&r),
                        ..Default::default()
                    },
                    Act::Silu,
                    false,
                ),
                (
                    "in-place residual",
                    Epi {
                        add: Some(&r),
                        ..Default::default()
                    },
                    Act::None,
                    true,
                ),
            ];
            for (name, epi, act, in_place) in cases {
                let want = linear(&x, &wv, 1, n, k, epi);
                for v in subset(
                    &[Variant::Scalar, gemv::default_variant(gpu.caps(), n, k, dtype)],
                    |v| *v != Variant::Scalar,
                ) {
                    let init = if in_place { r.clone() } else { vec![f32::NAN; n] };
                    let y = upload(&gpu, "y", &[1, n], &init);
                    let e = match name {
                        "bias+gelu" => Epilogue {
                            bias: Some(&tb),
                            act,
                            residual: None,
                        },
                        "bias+residual" => Epilogue {
                            bias: Some(&tb),
                            act,
                            residual: Some(Residual::Add(&tr)),
                        },
                        "silu*other" => Epilogue {
                            bias: None,
                            act,
                            residual: Some(Residual::Mul(&tr)),
                        },
                        _ => Epilogue {
                            bias: None,
                            act,
                            residual: Some(Residual::Add(&y)),
                        },
                    };
                    let mut batch = gpu.batch();
                    gemv::record_variant(&gpu, &mut batch, &tw, &tx, &y, &e, v).unwrap();
                    gpu.submit(batch).unwrap();
                    let got = y.to_f32_vec(&gpu).await.unwrap();
                    let rel = if v == Variant::Scalar {
                        k as f32 * 2f32.powi(-24)
                    } else {
                        1e-5
                    };
                    let rtol = if act == Act::None { 1e-6 } else { 2e-6 };
                    let what = format!("gemv {dtype} {} [{n}, {k}] {name}", v.name());
                    // The multiplied case scales the error by |other| ≤ 3.
                    let scale: Vec<f32> = scale
                        .iter()
                        .zip(&r)
                        .map(|(s, o)| if name == "silu*other" { s * o.abs().max(1.0) } else { *s })
                        .collect();
                    assert_scaled(&what, &got, &want, &scale, rel, rtol);
                }
            }
        }
    }
});

gpu_test!(gemv_default_variant_records_and_large_rows_work, async {
    let gpu = gpu().await;
    // 4096 x 4096 bf16, the decode shape of 7B models (256 x 4096 in the browser), and 1 x 14337
    // (one long odd row).
    for (n, k) in [(if browser() { 256usize } else { 4096 }, 4096usize), (1, 14337)] {
        let (x, w) = exact_data(1, n, k, 77);
        let (tw, wv) = weights(&gpu, "w", n, k, DType::BF16, &w);
        let tx = upload(&gpu, "x", &[k], &x);
        let y = upload(&gpu, "y", &[n], &vec![0.0; n]);
        let mut batch = gpu.batch();
        gemv::record(&gpu, &mut batch, &tw, &tx, &y, &Epilogue::NONE).unwrap();
        gpu.submit(batch).unwrap();
        assert_tensor(
            &gpu,
            &format!("gemv default [{n}, {k}]"),
            &y,
            &linear(&x, &wv, 1, n, k, Epi::default()),
            Tolerance::EXACT,
        )
        .await;
    }
});

gpu_test!(gemv_rejects_bad_shapes_dtypes_and_aliasing, async {
    let gpu = gpu().await;
    let w = GpuTensor::zeros(&gpu, "w", &[4, 6], DType::BF16).unwrap();
    let x = GpuTensor::zeros(&gpu, "x", &[6], DType::F32).unwrap();
    let y = GpuTensor::zeros(&gpu, "y", &[4], DType::F32).unwrap();
    let mut b = gpu.batch();
    let bad_x = GpuTensor::zeros(&gpu, "x5", &[5], DType::F32).unwrap();
    assert!(matches!(
        gemv::record(&gpu, &mut b, &w, &bad_x, &y, &Epilogue::NONE),
        Err(Error::Shape { .. })
    ));
    let bad_y = GpuTensor::zeros(&gpu, "y3", &[3], DType::F32).unwrap();
    assert!(matches!(
        gemv::record(&gpu, &mut b, &w, &x, &bad_y, &Epilogue::NONE),
        Err(Error::Shape { .. })
    ));
    let w3 = GpuTensor::zeros(&gpu, "w3", &[2, 2, 6], DType::BF16).unwrap();
    assert!(matches!(
        gemv::record(&gpu, &mut b, &w3, &x, &y, &Epilogue::NONE),
        Err(Error::Shape { .. })
    ));
    let wi8 = GpuTensor::zeros(&gpu, "wi8", &[4, 6], DType::I8).unwrap();
    assert!(matches!(
        gemv::record(&gpu, &mut b, &wi8, &x, &y, &Epilogue::NONE),
        Err(Error::DType { .. })
    ));
    let bad_bias = GpuTensor::zeros(&gpu, "bias", &[5], DType::F32).unwrap();
    assert!(matches!(
        gemv::record(&gpu, &mut b, &w, &x, &y, &Epilogue::bias(&bad_bias)),
        Err(Error::Shape { .. })
    ));
    let sq = GpuTensor::zeros(&gpu, "sq", &[6, 6], DType::F32).unwrap();
    let v6 = GpuTensor::zeros(&gpu, "v6", &[6], DType::F32).unwrap();
    assert!(matches!(
        gemv::record(&gpu, &mut b, &sq, &v6, &v6, &Epilogue::NONE),
        Err(Error::Aliased { .. })
    ));
    let e = gemv::record(
        &gpu,
        &mut b,
        &w,
        &x,
        &y,
        &Epilogue {
            residual: Some(Residual::Mul(&y)),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Aliased { written, other, .. } if written == "y" && other == "y"),
        "{e}"
    );
    assert_eq!(b.dispatches(), 0);

    let nosg = kjarni_web::Gpu::with_options(GpuOptions {
        disable_subgroups: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = GpuTensor::zeros(&nosg, "w", &[4, 6], DType::BF16).unwrap();
    let x = GpuTensor::zeros(&nosg, "x", &[6], DType::F32).unwrap();
    let y = GpuTensor::zeros(&nosg, "y", &[4], DType::F32).unwrap();
    let mut b = nosg.batch();
    let v = Variant::Vec4 {
        rows: 1,
        workgroup: 64,
        reduction: Reduction::Subgroup,
    };
    assert!(matches!(
        gemv::record_variant(&nosg, &mut b, &w, &x, &y, &Epilogue::NONE, v),
        Err(Error::Unsupported { .. })
    ));
    let v = Variant::Vec4 {
        rows: 3,
        workgroup: 64,
        reduction: Reduction::SharedMemory,
    };
    assert!(matches!(
        gemv::record_variant(&nosg, &mut b, &w, &x, &y, &Epilogue::NONE, v),
        Err(Error::Unsupported { .. })
    ));
});

// Pipelines compiled with every naga runtime check (wgpu's default) and with none (the
// benchmark's variants beside the default, `ShaderChecks`) compute the same exact results: the
// checks change no in-range access. In the browser the
// option is ignored (the browser applies its own checks), so the test runs there unchanged.
gpu_test!(gemv_without_shader_checks_is_exact, async {
    for checks in [kjarni_web::ShaderChecks::All, kjarni_web::ShaderChecks::None] {
        let gpu = kjarni_web::Gpu::with_options(GpuOptions {
            shader_checks: checks,
            ..Default::default()
        })
        .await
        .unwrap();
        for (n, k) in [(13usize, 257usize), (70, 1031)] {
            let (x, w) = exact_data(1, n, k, 91);
            let (tw, wv) = weights(&gpu, "w", n, k, DType::BF16, &w);
            let tx = upload(&gpu, "x", &[k], &x);
            let y = upload(&gpu, "y", &[n], &vec![f32::NAN; n]);
            let mut batch = gpu.batch();
            gemv::record(&gpu, &mut batch, &tw, &tx, &y, &Epilogue::NONE).unwrap();
            gpu.submit(batch).unwrap();
            assert_tensor(
                &gpu,
                &format!("gemv {checks:?} [{n}, {k}]"),
                &y,
                &linear(&x, &wv, 1, n, k, Epi::default()),
                Tolerance::EXACT,
            )
            .await;
        }
    }
});

// The RMSNorm prologue under every variant: the norm's sum of squares inline in the dot-product
// loop (the default) and, natively, in the previous separate pass (`GpuOptions::norm_pass`).
// Reference: rms_norm then the product, in f64-accumulated f32 (cpu::linear); bound per output
// 2.2e-5 · Σ|x̂·w| + 1e-6 · (1 + |y|) as tests/gpu/fused.rs states it (a few f32 roundings of the
// sum of squares move 1 / rms by ~1e-7 relative; the dot product's own error as above).
gpu_test!(gemv_norm_prologue_is_right_for_every_variant, async {
    use kjarni_web::cpu::norm::rms_norm;
    use kjarni_web::ops::linear::NormPrologue;
    let gpus = if browser() {
        vec![gpu().await]
    } else {
        vec![gpu().await, norm_pass_gpu().await]
    };
    for gpu in &gpus {
        let variants = variants(gpu);
        let shapes = subset(&SHAPES, |s| [(5, 3), (6, 17), (31, 100), (70, 1031)].contains(s));
        for (i, &(n, k)) in shapes.iter().enumerate() {
            let seed = 500 + i as u64;
            let x = cpu::random(k, seed, -1.0, 1.0);
            let w = cpu::random(n * k, seed + 1, -1.0, 1.0);
            let gamma = cpu::random(k, seed + 2, 0.5, 1.5);
            let (tw, wv) = weights(gpu, "w", n, k, DType::BF16, &w);
            let xn = rms_norm(&x, None, &gamma, k, 1e-5);
            let want = linear(&xn, &wv, 1, n, k, Epi::default());
            let mag = abs_dot(&xn, &wv, 1, n, k);
            let tx = upload(gpu, "x", &[k], &x);
            let tg = upload(gpu, "gamma", &[k], &gamma);
            let norm = NormPrologue { weight: &tg, eps: 1e-5 };
            let outs: Vec<GpuTensor> = variants
                .iter()
                .map(|_| upload(gpu, "y", &[n], &vec![f32::NAN; n]))
                .collect();
            let mut batch = gpu.batch();
            for (v, y) in variants.iter().zip(&outs) {
                if matches!(v, Variant::Scalar) {
                    continue; // the baseline kernel has no prologue
                }
                gemv::record_full(gpu, &mut batch, &tw, &tx, y, Some(&norm), &Epilogue::NONE, *v).unwrap();
            }
            gpu.submit(batch).unwrap();
            for (v, y) in variants.iter().zip(&outs) {
                if matches!(v, Variant::Scalar) {
                    continue;
                }
                let got = y.to_f32_vec(gpu).await.unwrap();
                for (j, ((&g, &r), &s)) in got.iter().zip(&want).zip(&mag).enumerate() {
                    let bound = 2.2e-5 * s + 1e-6 * (1.0 + r.abs());
                    assert!(
                        (g - r).abs() <= bound,
                        "gemv {} norm prologue (inline {}) [{n}, {k}] row {j}: {g} vs {r} (bound {bound})",
                        v.name(),
                        gpu.caps().variants.inline_norm
                    );
                }
            }
        }
    }
});
