use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::gpu::Reduction;
use kjarni_web::ops::softmax::{self, Variant};

// Outputs are probabilities in [0, 1]. Each is exp(v - max) / sum with f32 exp (WGSL: 3 + 2|x|
// ULP, |x| ≤ ~30 here) and an f32 sum over up to 100003 terms accumulated in ≤ 400-term strided
// partials and a tree: relative error a few 1e-6; we allow 1e-4 relative + 1e-7 absolute.
const TOL: Tolerance = Tolerance { atol: 1e-7, rtol: 1e-4 };

const SHAPES: [[usize; 2]; 4] = [[1, 1], [3, 7], [128, 4096], [2, 100_003]];

fn variants(gpu: &kjarni_web::Gpu) -> Vec<Variant> {
    let mut v: Vec<Variant> = gpu.caps().reductions().into_iter().map(Variant::Workgroup).collect();
    v.push(Variant::RowPerThread);
    v
}

gpu_test!(softmax_matches_reference_on_awkward_shapes, async {
    let gpu = gpu().await;
    for (i, &[rows, cols]) in SHAPES.iter().enumerate() {
        let x = cpu::random(rows * cols, 3 + i as u64, -12.0, 12.0);
        let want = cpu::softmax(&x, cols, 0.7);
        let tx = upload(&gpu, "x", &[rows, cols], &x);
        for variant in variants(&gpu) {
            if variant == Variant::RowPerThread && cols > 10_000 {
                continue; // the baseline is too slow for very long rows on a CPU rasteriser
            }
            let ty = upload(&gpu, "y", &[rows, cols], &vec![0.0; rows * cols]);
            let mut batch = gpu.batch();
            softmax::record_variant(&gpu, &mut batch, &tx, &ty, 0.7, variant).unwrap();
            gpu.submit(batch).unwrap();
            assert_tensor(&gpu, &format!("softmax {variant:?} [{rows},{cols}]"), &ty, &want, TOL).await;
        }
    }
});

gpu_test!(softmax_handles_masks_and_large_scores, async {
    let gpu = gpu().await;
    let ninf = f32::NEG_INFINITY;
    let cols = 300;
    let mut x = cpu::random(4 * cols, 5, -1e4, 1e4);
    for v in &mut x[..cols] {
        *v = ninf; // row 0: fully masked -> zeros
    }
    for v in x[cols..2 * cols].iter_mut().skip(1) {
        *v = ninf; // row 1: one survivor -> one-hot
    }
    for j in (0..cols).step_by(3) {
        x[2 * cols + j] = ninf; // row 2: causal-like holes
    }
    let mut want = cpu::softmax(&x, cols, 1.0);
    assert!(want[..cols].iter().all(|&v| v == 0.0));
    assert_eq!(want[cols], 1.0);
    want[cols] = 1.0;
    let tx = upload(&gpu, "scores", &[4, cols], &x);
    for reduction in gpu.caps().reductions() {
        let ty = upload(&gpu, "probs", &[4, cols], &vec![f32::NAN; 4 * cols]);
        let mut batch = gpu.batch();
        softmax::record_variant(&gpu, &mut batch, &tx, &ty, 1.0, Variant::Workgroup(reduction)).unwrap();
        gpu.submit(batch).unwrap();
        assert_tensor(&gpu, &format!("masked softmax {reduction:?}"), &ty, &want, TOL).await;
    }
});

gpu_test!(subgroup_variant_is_refused_without_subgroups, async {
    let gpu = kjarni_web::Gpu::with_options(kjarni_web::GpuOptions { disable_subgroups: true, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(gpu.caps().variants.reduction, Reduction::SharedMemory);
    let t = upload(&gpu, "x", &[2, 2], &[0.0; 4]);
    let mut batch = gpu.batch();
    let e = softmax::record_variant(&gpu, &mut batch, &t, &t, 1.0, Variant::Workgroup(Reduction::Subgroup)).unwrap_err();
    assert!(e.to_string().contains("subgroup"), "{e}");
});
