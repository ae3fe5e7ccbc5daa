use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::ops::rope::{self, Rope, RopeConfig, RopeLayout, Variant};

// |x| ≤ 1. The kernel's angle is exact to ~2^-32 turns after the integer reduction, the f32
// remainder in [-pi/4, pi/4) and its cos/sin polynomials (2e-9) add a few 1e-8, the rotation two
// f32 roundings: 1e-6 absolute. An f32 angle pos * inv_freq (the usual kernel) is off by up to
// 4e-3 rad at position 100000 and fails this by three orders of magnitude; SwiftShader's own
// sin/cos (6e-6 off) would fail it too.
const TOL: Tolerance = Tolerance { atol: 1e-6, rtol: 0.0 };

struct Case {
    tokens: usize,
    heads: usize,
    kv_heads: Option<usize>,
    head_dim: usize,
    rotary_dim: usize,
    layout: RopeLayout,
    theta: f64,
    offset: usize,
}

const CASES: [Case; 6] = [
    Case { tokens: 7, heads: 4, kv_heads: Some(2), head_dim: 64, rotary_dim: 64, layout: RopeLayout::HalfSplit, theta: 1e4, offset: 0 },
    Case { tokens: 1, heads: 3, kv_heads: Some(1), head_dim: 128, rotary_dim: 128, layout: RopeLayout::Interleaved, theta: 1e6, offset: 100_000 },
    Case { tokens: 2, heads: 2, kv_heads: Some(2), head_dim: 64, rotary_dim: 64, layout: RopeLayout::HalfSplit, theta: 1e6, offset: 131_000 },
    Case { tokens: 5, heads: 2, kv_heads: Some(2), head_dim: 80, rotary_dim: 32, layout: RopeLayout::HalfSplit, theta: 1e4, offset: 3 },
    Case { tokens: 3, heads: 5, kv_heads: Some(5), head_dim: 6, rotary_dim: 6, layout: RopeLayout::HalfSplit, theta: 1e4, offset: 9 },
    Case { tokens: 2, heads: 1, kv_heads: None, head_dim: 10, rotary_dim: 4, layout: RopeLayout::Interleaved, theta: 500.0, offset: 31 },
];

gpu_test!(rope_matches_reference_in_both_layouts, async {
    let gpu = gpu().await;
    for (n, c) in CASES.iter().enumerate() {
        let config = RopeConfig { theta: c.theta, head_dim: c.head_dim, rotary_dim: c.rotary_dim, layout: c.layout };
        let r = Rope::new(&gpu, config).unwrap();
        let inv = rope::inv_freq(c.theta, c.rotary_dim);
        let interleaved = c.layout == RopeLayout::Interleaved;
        let qv = cpu::random(c.tokens * c.heads * c.head_dim, 60 + n as u64, -1.0, 1.0);
        let kh = c.kv_heads.unwrap_or(1);
        let kv = cpu::random(c.tokens * kh * c.head_dim, 70 + n as u64, -1.0, 1.0);
        let mut q_want = qv.clone();
        cpu::rope::rope(&mut q_want, c.heads, c.head_dim, &inv, interleaved, c.offset);
        let mut k_want = kv.clone();
        cpu::rope::rope(&mut k_want, kh, c.head_dim, &inv, interleaved, c.offset);
        let mut variants = vec![rope::BASELINE, Variant::Scalar { workgroup: 64 }];
        if c.rotary_dim % 4 == 0 {
            variants.extend([Variant::Vec2 { workgroup: 64 }, Variant::Vec2 { workgroup: 128 }]);
        }
        for v in variants {
            let q = upload(&gpu, "q", &[c.tokens, c.heads, c.head_dim], &qv);
            let k = upload(&gpu, "k", &[c.tokens, kh, c.head_dim], &kv);
            let mut b = gpu.batch();
            r.record_variant(&gpu, &mut b, &q, c.kv_heads.map(|_| &k), c.offset, v).unwrap();
            gpu.submit(b).unwrap();
            let what = format!("rope case {n} {:?} rot {}/{} offset {} {v:?}", c.layout, c.rotary_dim, c.head_dim, c.offset);
            assert_tensor(&gpu, &format!("{what}: q"), &q, &q_want, TOL).await;
            let k_expect = if c.kv_heads.is_some() { &k_want } else { &kv };
            assert_tensor(&gpu, &format!("{what}: k"), &k, k_expect, TOL).await;
        }
    }
});

gpu_test!(rope_rejects_bad_shapes, async {
    let gpu = gpu().await;
    let bad = RopeConfig { theta: 1e4, head_dim: 8, rotary_dim: 10, layout: RopeLayout::HalfSplit };
    assert!(Rope::new(&gpu, bad).is_err());
    let odd = RopeConfig { theta: 1e4, head_dim: 8, rotary_dim: 3, layout: RopeLayout::HalfSplit };
    assert!(Rope::new(&gpu, odd).is_err());
    let r = Rope::new(&gpu, RopeConfig { theta: 1e4, head_dim: 6, rotary_dim: 6, layout: RopeLayout::HalfSplit }).unwrap();
    assert_eq!(r.preferred_variant(), Variant::Scalar { workgroup: 64 });
    let q = upload(&gpu, "q", &[2, 3, 6], &[0.0; 36]);
    let k = upload(&gpu, "k", &[3, 1, 6], &[0.0; 18]);
    let q8 = upload(&gpu, "q8", &[2, 3, 8], &[0.0; 48]);
    let mut b = gpu.batch();
    assert!(r.record_variant(&gpu, &mut b, &q, None, 0, Variant::Vec2 { workgroup: 64 }).is_err());
    assert!(r.record(&gpu, &mut b, &q, Some(&k), 0).is_err());
    assert!(r.record(&gpu, &mut b, &q8, None, 0).is_err());
    assert!(r.record(&gpu, &mut b, &q, Some(&q), 0).is_err());
    assert_eq!(b.dispatches(), 0);
    r.record(&gpu, &mut b, &q, None, 5).unwrap();
    assert_eq!(b.dispatches(), 1);
});
