use crate::common::*;
use kjarni_web::cpu::softmax::{masked_softmax, softmax as softmax_ref, Padding as CpuPadding};
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::gpu::Reduction;
use kjarni_web::ops::softmax::{self, Mask, MaskedVariant, Padding, Variant};

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
    // The reduction workgroup follows the launch shapes (256 / 64 invocations): both.
    let gpus = [gpu_with(BOTH_SHAPES[0]).await, gpu_with(BOTH_SHAPES[1]).await];
    for (i, gi, &[rows, cols]) in SHAPES
        .iter()
        .enumerate()
        .flat_map(|(i, s)| shapes_for(i).iter().map(move |&g| (i, g, s)))
    {
        let gpu = &gpus[gi];
        let x = cpu::random(rows * cols, 3 + i as u64, -12.0, 12.0);
        let want = softmax_ref(&x, cols, 0.7);
        let tx = upload(gpu, "x", &[rows, cols], &x);
        for variant in variants(gpu) {
            if variant == Variant::RowPerThread && cols > 10_000 {
                continue; // the baseline is too slow for very long rows on a CPU rasteriser
            }
            let ty = upload(gpu, "y", &[rows, cols], &vec![0.0; rows * cols]);
            let mut batch = gpu.batch();
            softmax::record_variant(gpu, &mut batch, &tx, &ty, 0.7, variant).unwrap();
            gpu.submit(batch).unwrap();
            assert_tensor(gpu, &format!("softmax {variant:?} [{rows},{cols}]"), &ty, &want, TOL).await;
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
    let mut want = softmax_ref(&x, cols, 1.0);
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
    let gpu = kjarni_web::Gpu::with_options(kjarni_web::GpuOptions {
        disable_subgroups: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(gpu.caps().variants.reduction, Reduction::SharedMemory);
    let t = upload(&gpu, "x", &[2, 2], &[0.0; 4]);
    let mut batch = gpu.batch();
    let e =
        softmax::record_variant(&gpu, &mut batch, &t, &t, 1.0, Variant::Workgroup(Reduction::Subgroup)).unwrap_err();
    assert!(e.to_string().contains("subgroup"), "{e}");
});

fn masked_variants(gpu: &kjarni_web::Gpu) -> Vec<MaskedVariant> {
    let r = gpu.caps().reductions();
    r.iter()
        .map(|&r| MaskedVariant::Fused(r))
        .chain(r.iter().map(|&r| MaskedVariant::Unfused(r)))
        .collect()
}

// (batch, heads, q_len, k_len, causal offset, padding: 0 none, 1 lengths, 2 keep mask)
const MASK_CASES: [(usize, usize, usize, usize, Option<usize>, u8); 7] = [
    (2, 3, 5, 5, Some(0), 0),      // prefill
    (1, 4, 1, 37, Some(36), 0),    // decode: one query at position 36 sees all 37 keys
    (2, 2, 3, 300, Some(10), 1),   // chunked prefill, second sequence padded to 7 keys
    (3, 2, 4, 9, None, 1),         // encoder with lengths, third sequence empty -> zeros
    (2, 1, 6, 513, Some(0), 2),    // causal + keep mask; second sequence fully masked
    (1, 1, 4, 3, Some(5), 0),      // offset past the keys: everything visible
    (1, 2, 7, 1000, Some(993), 1), // long rows, decode-like block
];

gpu_test!(masked_softmax_matches_reference, async {
    let gpu = gpu().await;
    for (n, &(batch, heads, q, k, causal, pad)) in MASK_CASES.iter().enumerate() {
        let rows = batch * heads * q;
        let x = cpu::random(rows * k, 40 + n as u64, -10.0, 10.0);
        let lengths: Vec<u32> = (0..batch).map(|b| [k as u32, 7, 0][b % 3]).collect();
        let keep: Vec<f32> = (0..batch * k)
            .map(|i| {
                if i >= k {
                    0.0
                } else {
                    f32::from(u8::from(cpu::random(1, i as u64, 0.0, 1.0)[0] > 0.3))
                }
            })
            .collect();
        let tkeep = upload(&gpu, "keep", &[batch, k], &keep);
        let (mask, cpu_pad) = match pad {
            0 => (Padding::None, CpuPadding::None),
            1 => (Padding::Lengths(&lengths), CpuPadding::Lengths(&lengths)),
            _ => (Padding::Keep(&tkeep), CpuPadding::Keep(&keep)),
        };
        let mask = Mask {
            heads,
            causal,
            padding: mask,
        };
        let want = masked_softmax(&x, heads, q, k, 0.3, causal, cpu_pad);
        for variant in masked_variants(&gpu) {
            let tx = upload(&gpu, "scores", &[batch * heads, q, k], &x);
            let ty = upload(&gpu, "probs", &[batch * heads, q, k], &vec![f32::NAN; rows * k]);
            let mut b = gpu.batch();
            softmax::record_masked_variant(&gpu, &mut b, &tx, &ty, 0.3, &mask, variant).unwrap();
            gpu.submit(b).unwrap();
            let what =
                format!("masked softmax {variant:?} b={batch} h={heads} q={q} k={k} causal={causal:?} pad={pad}");
            assert_tensor(&gpu, &what, &ty, &want, TOL).await;
        }
    }
});

gpu_test!(masked_keys_behave_as_neg_inf_whatever_the_scores, async {
    // Visible scores of -3e38 next to masked ones of +1e30: a -1e9 mask would give the masked keys
    // all the probability; ours must give the visible keys a uniform 1/(i+1). Odd rows hold
    // ±1e4 scores: probabilities stay finite and match the reference (mostly exact 0 / 1).
    let gpu = gpu().await;
    let n = 64;
    let big = cpu::random(n * n, 9, -1e4, 1e4);
    let mut x = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            x[i * n + j] = if j > i {
                1e30
            } else if i % 2 == 0 {
                -3e38
            } else {
                big[i * n + j]
            };
        }
    }
    let want = masked_softmax(&x, 1, n, n, 1.0, Some(0), CpuPadding::None);
    assert!((want[2 * n] - 1.0 / 3.0).abs() < 1e-7 && want[2 * n + 3] == 0.0);
    for variant in masked_variants(&gpu) {
        let tx = upload(&gpu, "scores", &[1, n, n], &x);
        let ty = upload(&gpu, "probs", &[1, n, n], &vec![f32::NAN; n * n]);
        let mut b = gpu.batch();
        softmax::record_masked_variant(&gpu, &mut b, &tx, &ty, 1.0, &Mask::causal(1, 0), variant).unwrap();
        gpu.submit(b).unwrap();
        assert_tensor(&gpu, &format!("extreme scores {variant:?}"), &ty, &want, TOL).await;
    }
});

gpu_test!(masked_softmax_rejects_bad_masks, async {
    let gpu = gpu().await;
    let x = upload(&gpu, "scores", &[4, 2, 3], &[0.0; 24]);
    let y = upload(&gpu, "probs", &[4, 2, 3], &[0.0; 24]);
    let flat = upload(&gpu, "flat", &[8, 3], &[0.0; 24]);
    let keep = upload(&gpu, "keep", &[2, 2], &[1.0; 4]);
    let mut b = gpu.batch();
    let bad = |r: kjarni_web::Result<()>| matches!(r, Err(kjarni_web::Error::Shape { .. }));
    assert!(bad(softmax::record_masked(
        &gpu,
        &mut b,
        &x,
        &y,
        1.0,
        &Mask::causal(3, 0)
    )));
    assert!(bad(softmax::record_masked(
        &gpu,
        &mut b,
        &x,
        &y,
        1.0,
        &Mask::causal(2, 0).lengths(&[3])
    )));
    assert!(bad(softmax::record_masked(
        &gpu,
        &mut b,
        &x,
        &y,
        1.0,
        &Mask::causal(2, 0).keep(&keep)
    )));
    assert!(bad(softmax::record_masked(
        &gpu,
        &mut b,
        &flat,
        &flat,
        1.0,
        &Mask::causal(1, 0)
    )));
    let aliased = softmax::record_masked(&gpu, &mut b, &x, &x, 1.0, &Mask::causal(2, 0));
    assert!(matches!(aliased, Err(kjarni_web::Error::Aliased { .. })), "{aliased:?}");
    assert_eq!(b.dispatches(), 0);
    softmax::record_masked(&gpu, &mut b, &x, &y, 1.0, &Mask::bidirectional(2).lengths(&[3, 1])).unwrap();
    assert_eq!(b.dispatches(), 1);
});
