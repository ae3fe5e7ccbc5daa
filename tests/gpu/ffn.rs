use crate::common::*;
use crate::linear_util::*;
use kjarni_web::cpu::linear::{abs_dot, linear, Epi};
use kjarni_web::cpu::{self, ffn as cpu_ffn};
use kjarni_web::gpu::SwigluVariant;
use kjarni_web::ops::ffn::{self, SwigluShape};
use kjarni_web::ops::linear::Act;
use kjarni_web::{DType, Error};

// The gate and up sums are exact (grid data, see exact_data); the only rounding is f32 silu and
// the final product: exp within 3 + 2|x| ULP, |x| ≤ ~30 here, so 1e-5 relative. Any indexing
// mistake changes the sums by at least 2^-7, far above that.
const SWIGLU_RTOL: f32 = 1e-5;

// (N, K): odd and short K, K not a multiple of 8, K = 576 (SmolLM2), K above 4096 and 8192
// (several staging blocks in both variants), N not a multiple of the rows per workgroup.
const SHAPES: [(usize, usize); 8] = [
    (1, 1),
    (3, 7),
    (5, 9),
    (33, 100),
    (64, 576),
    (7, 4097),
    (3, 8200),
    (9, 12_345),
];

gpu_test!(swiglu_both_variants_are_right_on_awkward_shapes, async {
    let gpu = gpu().await;
    let launches = [
        SwigluShape {
            rows: 1,
            workgroup: 64,
            per_invocation: false,
        },
        SwigluShape {
            rows: 2,
            workgroup: 256,
            per_invocation: false,
        },
        SwigluShape {
            rows: 4,
            workgroup: 128,
            per_invocation: false,
        },
        SwigluShape {
            rows: 8,
            workgroup: 256,
            per_invocation: false,
        },
        // CPU adapters' swiglu_rows: rows per invocation.
        SwigluShape {
            rows: 2,
            workgroup: 16,
            per_invocation: true,
        },
        SwigluShape {
            rows: 1,
            workgroup: 4,
            per_invocation: true,
        },
    ];
    for dtype in DTYPES {
        // In the browser: 16-bit weights on every shape, f32 on the long ones.
        let shapes = subset(&SHAPES, |s| dtype != DType::F32 || s.1 > 4096);
        for (i, &(n, k)) in shapes.iter().enumerate() {
            let (x, wg) = exact_data(1, n, k, 60 + i as u64);
            let (_, wu) = exact_data(1, n, k, 90 + i as u64);
            let (tg, gv) = weights(&gpu, "gate", n, k, dtype, &wg);
            let (tu, uv) = weights(&gpu, "up", n, k, dtype, &wu);
            let tx = upload(&gpu, "x", &[1, k], &x);
            let want = cpu_ffn::swiglu(&x, &gv, &uv, n, k);
            let mut runs = Vec::new();
            let mut batch = gpu.batch();
            for variant in [SwigluVariant::Shared32K, SwigluVariant::Shared16K] {
                for shape in subset(&launches, |s| s.rows == 8 || (s.per_invocation && s.rows == 2)) {
                    let h = upload(&gpu, "h", &[n], &vec![f32::NAN; n]);
                    ffn::record_swiglu_variant(&gpu, &mut batch, &tx, &tg, &tu, &h, variant, shape).unwrap();
                    runs.push((variant, shape, h));
                }
            }
            gpu.submit(batch).unwrap();
            for (variant, shape, h) in runs {
                let got = h.to_f32_vec(&gpu).await.unwrap();
                let what = format!("swiglu {dtype} {variant:?} {shape:?} [{n}, {k}]");
                assert_scaled(&what, &got, &want, &vec![0.0; n], 0.0, SWIGLU_RTOL);
            }
        }
    }
});

gpu_test!(swiglu_default_variant_follows_the_caps_and_prefill_matches, async {
    let gpu = gpu().await;
    assert!(gpu.caps().variants.swiglu.bytes() <= gpu.caps().max_workgroup_storage);
    let (n, k) = (1536usize, 576usize); // SmolLM2-135M's MLP
    let (x, wg) = exact_data(3, n, k, 5);
    let (_, wu) = exact_data(1, n, k, 6);
    let (tg, gv) = weights(&gpu, "gate", n, k, DType::BF16, &wg);
    let (tu, uv) = weights(&gpu, "up", n, k, DType::BF16, &wu);
    // Decode: one row.
    let tx = upload(&gpu, "x", &[k], &x[..k]);
    let h = upload(&gpu, "h", &[n], &vec![0.0; n]);
    let mut batch = gpu.batch();
    ffn::record_swiglu(&gpu, &mut batch, &tx, &tg, &tu, &h).unwrap();
    gpu.submit(batch).unwrap();
    let want = cpu_ffn::swiglu(&x[..k], &gv, &uv, n, k);
    assert_scaled(
        "swiglu default",
        &h.to_f32_vec(&gpu).await.unwrap(),
        &want,
        &vec![0.0; n],
        0.0,
        SWIGLU_RTOL,
    );
    // Prefill: three rows through the matmul with the product fused.
    let tx3 = upload(&gpu, "x3", &[3, k], &x);
    let up = upload(&gpu, "up_scratch", &[3, n], &vec![0.0; 3 * n]);
    let h3 = upload(&gpu, "h3", &[3, n], &vec![f32::NAN; 3 * n]);
    let mut batch = gpu.batch();
    ffn::record_swiglu_prefill(&gpu, &mut batch, &tx3, &tg, &tu, &up, &h3).unwrap();
    gpu.submit(batch).unwrap();
    let want: Vec<f32> = (0..3)
        .flat_map(|r| cpu_ffn::swiglu(&x[r * k..(r + 1) * k], &gv, &uv, n, k))
        .collect();
    assert_scaled(
        "swiglu prefill",
        &h3.to_f32_vec(&gpu).await.unwrap(),
        &want,
        &vec![0.0; 3 * n],
        0.0,
        SWIGLU_RTOL,
    );
    // Errors: a second row for the fused kernel, mismatched gate / up.
    let mut b = gpu.batch();
    assert!(matches!(
        ffn::record_swiglu(&gpu, &mut b, &tx3, &tg, &tu, &h),
        Err(Error::Shape { .. })
    ));
    let (tu16, _) = weights(&gpu, "up16", n, k, DType::F16, &wu);
    assert!(matches!(
        ffn::record_swiglu(&gpu, &mut b, &tx, &tg, &tu16, &h),
        Err(Error::Shape { .. })
    ));
});

// FC1 + GELU and FC2 + residual with bf16 weights, through the GEMV (1 row) and the matmul
// (5 rows). Tolerances as in the gemv / matmul tests: K · 2^-24 · Σ|x·w| covers any summation
// order; GELU adds 2e-6 relative.
gpu_test!(
    fc1_gelu_and_fc2_residual_match_reference_for_decode_and_prefill,
    async {
        let gpu = gpu().await;
        let (d, f) = (96usize, 200usize);
        for rows in [1usize, 5] {
            let x = cpu::random(rows * d, 1, -2.0, 2.0);
            let w1 = cpu::random(f * d, 2, -0.3, 0.3);
            let b1 = cpu::random(f, 3, -0.5, 0.5);
            let w2 = cpu::random(d * f, 4, -0.3, 0.3);
            let b2 = cpu::random(d, 5, -0.5, 0.5);
            let (tw1, w1v) = weights(&gpu, "fc1.weight", f, d, DType::BF16, &w1);
            let (tw2, w2v) = weights(&gpu, "fc2.weight", d, f, DType::BF16, &w2);
            let tb1 = upload(&gpu, "fc1.bias", &[f], &b1);
            let tb2 = upload(&gpu, "fc2.bias", &[d], &b2);
            let tx = upload(&gpu, "x", &[rows, d], &x);
            let th = upload(&gpu, "h", &[rows, f], &vec![f32::NAN; rows * f]);
            let hidden = upload(&gpu, "hidden", &[rows, d], &x);
            let mut batch = gpu.batch();
            ffn::record_fc1_gelu(&gpu, &mut batch, &tx, &tw1, Some(&tb1), &th).unwrap();
            ffn::record_fc2_residual(&gpu, &mut batch, &th, &tw2, Some(&tb2), &hidden, &hidden).unwrap();
            gpu.submit(batch).unwrap();
            let h_want = linear(
                &x,
                &w1v,
                rows,
                f,
                d,
                Epi {
                    bias: Some(&b1),
                    act: Act::Gelu,
                    ..Default::default()
                },
            );
            let h_got = th.to_f32_vec(&gpu).await.unwrap();
            assert_scaled(
                &format!("fc1+gelu rows {rows}"),
                &h_got,
                &h_want,
                &abs_dot(&x, &w1v, rows, f, d),
                d as f32 * 2f32.powi(-24),
                2e-6,
            );
            // FC2 from the GPU's h, so the check isolates FC2.
            let y_want = linear(
                &h_got,
                &w2v,
                rows,
                d,
                f,
                Epi {
                    bias: Some(&b2),
                    add: Some(&x),
                    ..Default::default()
                },
            );
            assert_scaled(
                &format!("fc2+residual rows {rows}"),
                &hidden.to_f32_vec(&gpu).await.unwrap(),
                &y_want,
                &abs_dot(&h_got, &w2v, rows, d, f),
                f as f32 * 2f32.powi(-24),
                1e-6,
            );
        }
    }
);
