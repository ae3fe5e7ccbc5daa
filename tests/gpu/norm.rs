use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::gpu::Reduction;
use kjarni_web::ops::norm::{self, Norm, NormKind, Variant};
use kjarni_web::{DType, Error, GpuTensor};

// Outputs are normalised values (|v| ≲ 2) times gamma in [0.5, 1.5] plus beta. The f32 Welford
// statistics over ≤ 20000 elements (strided slices + tree) carry a relative error of a few 1e-7
// in mean and variance, inverseSqrt 2 ULP: well under 2e-5 absolute + 1e-5 relative. An unbiased
// variance (n - 1) would already miss this by 1/(2n) ≈ 6.5e-4 at n = 768.
const TOL: Tolerance = Tolerance { atol: 2e-5, rtol: 1e-5 };

const SHAPES: [[usize; 2]; 5] = [[1, 1], [3, 7], [5, 768], [2, 4099], [1, 20_000]];

fn variants(gpu: &kjarni_web::Gpu) -> Vec<Variant> {
    let mut v: Vec<Variant> = gpu.caps().reductions().into_iter().map(Variant::Workgroup).collect();
    v.push(Variant::RowPerThread);
    v
}

fn reference(
    kind: NormKind,
    x: &[f32],
    r: Option<&[f32]>,
    g: &[f32],
    b: Option<&[f32]>,
    cols: usize,
    eps: f32,
) -> Vec<f32> {
    match kind {
        NormKind::Layer => cpu::norm::layer_norm(x, r, g, b, cols, eps),
        NormKind::Rms => cpu::norm::rms_norm_with_bias(x, r, g, b, cols, eps),
    }
}

gpu_test!(norms_match_reference_on_awkward_shapes, async {
    // The reduction workgroup follows the launch shapes (256 / 64 invocations): both.
    let gpus = [gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    for (i, gi, &[rows, cols]) in SHAPES
        .iter()
        .enumerate()
        .flat_map(|(i, s)| shapes_for(i).iter().map(move |&g| (i, g, s)))
    {
        let gpu = &gpus[gi];
        let seed = 100 + 10 * i as u64;
        let x = cpu::random(rows * cols, seed, -3.0, 5.0);
        let r = cpu::random(rows * cols, seed + 1, -2.0, 2.0);
        let g = cpu::random(cols, seed + 2, 0.5, 1.5);
        let b = cpu::random(cols, seed + 3, -0.5, 0.5);
        let tr = upload(gpu, "r", &[rows, cols], &r);
        let tg = upload(gpu, "gamma", &[cols], &g);
        let tb = upload(gpu, "beta", &[cols], &b);
        let sum = cpu::norm::residual_sum(&x, Some(&r));
        // y's previous values for the accumulating cases (y += norm(x): Gemma's sandwich norm).
        let y0 = cpu::random(rows * cols, seed + 4, -3.0, 3.0);
        // (kind, bias, residual, store_sum, accumulate)
        let cases = [
            (NormKind::Layer, true, false, false, false),
            (NormKind::Layer, false, true, false, false),
            (NormKind::Layer, true, true, true, false),
            (NormKind::Rms, false, false, false, false),
            (NormKind::Rms, false, true, true, false),
            (NormKind::Rms, true, true, false, false),
            (NormKind::Rms, false, false, false, true),
            (NormKind::Layer, true, true, true, true),
        ];
        for variant in variants(gpu) {
            if variant == Variant::RowPerThread && cols > 5000 {
                continue; // the baseline is too slow for very long rows on a CPU rasteriser
            }
            for &(kind, bias, residual, store, acc) in &cases {
                let eps = if kind == NormKind::Layer { 1e-5 } else { 1e-6 };
                let tx = upload(gpu, "x", &[rows, cols], &x);
                let y_before = if acc { y0.clone() } else { vec![f32::NAN; rows * cols] };
                let ty = upload(gpu, "y", &[rows, cols], &y_before);
                let mut n = match kind {
                    NormKind::Layer => Norm::layer(&tg, None, eps),
                    NormKind::Rms => Norm::rms(&tg, eps),
                };
                if bias {
                    n.beta = Some(&tb);
                }
                if residual {
                    n = n.residual(&tr, store);
                }
                if acc {
                    n = n.accumulate();
                }
                let mut batch = gpu.batch();
                norm::record_variant(gpu, &mut batch, &tx, &ty, &n, variant).unwrap();
                gpu.submit(batch).unwrap();
                let want = reference(
                    kind,
                    &x,
                    residual.then_some(&r[..]),
                    &g,
                    bias.then_some(&b[..]),
                    cols,
                    eps,
                );
                // Accumulating: y0 + norm, one more f32 add (≤ 2e-7 on |y0| ≤ 3, within TOL).
                let want: Vec<f32> = match acc {
                    true => want.iter().zip(&y0).map(|(w, y)| w + y).collect(),
                    false => want,
                };
                let what = format!(
                    "{kind:?} bias={bias} residual={residual} store={store} accumulate={acc} {variant:?} [{rows},{cols}]"
                );
                assert_tensor(gpu, &what, &ty, &want, TOL).await;
                // x is untouched unless the sum is stored; the stored sum is the f32 sum, exactly.
                let x_want = if store { &sum } else { &x };
                assert_tensor(gpu, &format!("{what}: x afterwards"), &tx, x_want, Tolerance::EXACT).await;
            }
        }
    }
});

gpu_test!(layer_norm_keeps_precision_with_a_large_offset, async {
    // Rows of 1000 + U(-1, 1): E[v^2] - E[v]^2 in f32 loses the variance (1e6 vs 0.33) and misses
    // by > 1e-2; Welford with Chan's combination stays within the rounding of v - mean
    // (ulp(1000) = 6e-5 relative to std 0.58: about 1e-4), so 1e-3 absolute.
    let gpu = gpu().await;
    let (rows, cols) = (4, 3000);
    let x: Vec<f32> = cpu::random(rows * cols, 7, -1.0, 1.0)
        .iter()
        .map(|v| v + 1000.0)
        .collect();
    let g = vec![1.0; cols];
    let want = cpu::norm::layer_norm(&x, None, &g, None, cols, 1e-5);
    let tx = upload(&gpu, "x", &[rows, cols], &x);
    let tg = upload(&gpu, "gamma", &[cols], &g);
    for variant in variants(&gpu) {
        let ty = upload(&gpu, "y", &[rows, cols], &vec![0.0; rows * cols]);
        let mut batch = gpu.batch();
        norm::record_variant(&gpu, &mut batch, &tx, &ty, &Norm::layer(&tg, None, 1e-5), variant).unwrap();
        gpu.submit(batch).unwrap();
        assert_tensor(
            &gpu,
            &format!("offset rows {variant:?}"),
            &ty,
            &want,
            Tolerance { atol: 1e-3, rtol: 0.0 },
        )
        .await;
    }
});

gpu_test!(norm_rejects_bad_inputs_before_dispatch, async {
    let gpu = gpu().await;
    let x = upload(&gpu, "x", &[2, 8], &[1.0; 16]);
    let y = upload(&gpu, "y", &[2, 8], &[0.0; 16]);
    let g = upload(&gpu, "gamma", &[8], &[1.0; 8]);
    let g7 = upload(&gpu, "gamma7", &[7], &[1.0; 7]);
    let y3 = upload(&gpu, "y3", &[2, 3], &[0.0; 6]);
    let gh = GpuTensor::from_f32(&gpu, "gamma_bf16", &[8], DType::BF16, &[1.0; 8]).unwrap();
    let mut batch = gpu.batch();
    let shape = |e: Error| matches!(e, Error::Shape { .. });
    assert!(shape(
        norm::record(&gpu, &mut batch, &x, &y, &Norm::rms(&g7, 1e-6)).unwrap_err()
    ));
    assert!(shape(
        norm::record(&gpu, &mut batch, &x, &y3, &Norm::rms(&g, 1e-6)).unwrap_err()
    ));
    let e = norm::record(&gpu, &mut batch, &x, &x, &Norm::rms(&g, 1e-6)).unwrap_err();
    assert!(
        matches!(e, Error::Aliased { .. }) && e.to_string().contains("share one buffer"),
        "{e}"
    );
    let e = norm::record(&gpu, &mut batch, &x, &y, &Norm::rms(&g, 1e-6).residual(&x, true)).unwrap_err();
    assert!(
        matches!(e, Error::Aliased { .. }) && e.to_string().contains("share one buffer"),
        "{e}"
    );
    assert!(matches!(
        norm::record(&gpu, &mut batch, &x, &y, &Norm::rms(&gh, 1e-6)).unwrap_err(),
        Error::DType { .. }
    ));
    assert_eq!(batch.dispatches(), 0);
    if !gpu.caps().subgroups {
        let e = norm::record_variant(
            &gpu,
            &mut batch,
            &x,
            &y,
            &Norm::rms(&g, 1e-6),
            Variant::Workgroup(Reduction::Subgroup),
        );
        assert!(e.is_err());
    }
});
