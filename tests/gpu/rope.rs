use crate::common::*;
use kjarni_web::cpu::{
    self,
    compare::{check_close, Tolerance},
};
use kjarni_web::ops::kv_cache::{KvCache, KvDType};
use kjarni_web::ops::rope::{self, Rope, RopeLayout, RopeScaling, Variant};
use kjarni_web::Error;

// |x| ≤ 1. The kernel (shaders/common/rope.wgsl, shared with K on append and decode Q) rounds
// the angle pos · inv_freq to f32 as transformers does, and so does the reference; they differ by
// inv_freq's last bits (the kernel's exp2 of a rounded exponent, ≤ 5e-7 relative; the Llama 3
// blend adds a few f32 roundings) and then possibly one f32 ulp of the angle (1.2e-7 relative):
// ≤ pos · 7e-7 rad, on values ≤ √2: atol 1e-6 + pos · 1e-6. A wrong frequency or scaling errs by
// O(1) (the cases keep pos · 1e-6 ≤ 3e-3).
fn tol(max_pos: usize) -> Tolerance {
    Tolerance {
        atol: 1e-6 + max_pos as f32 * 1e-6,
        rtol: 0.0,
    }
}

const LLAMA3: RopeScaling = RopeScaling::Llama3 {
    factor: 32.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_max_position_embeddings: 8192.0,
};

struct Case {
    tokens: usize,
    heads: usize,
    kv_heads: Option<usize>,
    head_dim: usize,
    rotary_dim: usize,
    layout: RopeLayout,
    theta: f64,
    offset: usize,
    scaling: RopeScaling,
}

const CASES: [Case; 8] = [
    Case {
        tokens: 7,
        heads: 4,
        kv_heads: Some(2),
        head_dim: 64,
        rotary_dim: 64,
        layout: RopeLayout::HalfSplit,
        theta: 1e4,
        offset: 0,
        scaling: RopeScaling::None,
    },
    Case {
        tokens: 1,
        heads: 3,
        kv_heads: Some(1),
        head_dim: 128,
        rotary_dim: 128,
        layout: RopeLayout::Interleaved,
        theta: 1e6,
        offset: 3000,
        scaling: RopeScaling::None,
    },
    Case {
        tokens: 2,
        heads: 2,
        kv_heads: Some(2),
        head_dim: 64,
        rotary_dim: 64,
        layout: RopeLayout::HalfSplit,
        theta: 1e6,
        offset: 2000,
        scaling: RopeScaling::None,
    },
    Case {
        tokens: 5,
        heads: 2,
        kv_heads: Some(2),
        head_dim: 80,
        rotary_dim: 32,
        layout: RopeLayout::HalfSplit,
        theta: 1e4,
        offset: 3,
        scaling: RopeScaling::None,
    },
    Case {
        tokens: 3,
        heads: 5,
        kv_heads: Some(5),
        head_dim: 6,
        rotary_dim: 6,
        layout: RopeLayout::HalfSplit,
        theta: 1e4,
        offset: 9,
        scaling: RopeScaling::None,
    },
    Case {
        tokens: 2,
        heads: 1,
        kv_heads: None,
        head_dim: 10,
        rotary_dim: 4,
        layout: RopeLayout::Interleaved,
        theta: 500.0,
        offset: 31,
        scaling: RopeScaling::None,
    },
    // Llama 3.2's scaling at theta 5e5: low frequencies divided by 32, the middle blended.
    Case {
        tokens: 9,
        heads: 2,
        kv_heads: Some(1),
        head_dim: 64,
        rotary_dim: 64,
        layout: RopeLayout::HalfSplit,
        theta: 5e5,
        offset: 1500,
        scaling: LLAMA3,
    },
    Case {
        tokens: 3,
        heads: 2,
        kv_heads: Some(2),
        head_dim: 32,
        rotary_dim: 32,
        layout: RopeLayout::Interleaved,
        theta: 1e4,
        offset: 17,
        scaling: RopeScaling::Linear { factor: 4.0 },
    },
];

gpu_test!(rope_matches_reference_in_both_layouts, async {
    let gpu = gpu().await;
    for (n, c) in CASES.iter().enumerate() {
        let r = Rope {
            theta: c.theta,
            head_dim: c.head_dim,
            rotary_dim: c.rotary_dim,
            layout: c.layout,
            scaling: c.scaling,
        };
        let inv = rope::inv_freq(c.theta, c.rotary_dim, c.scaling);
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
        let t = tol(c.offset + c.tokens);
        for v in variants {
            let q = upload(&gpu, "q", &[c.tokens, c.heads, c.head_dim], &qv);
            let k = upload(&gpu, "k", &[c.tokens, kh, c.head_dim], &kv);
            let mut b = gpu.batch();
            r.record_variant(&gpu, &mut b, &q, c.kv_heads.map(|_| &k), c.offset, v)
                .unwrap();
            gpu.submit(b).unwrap();
            let what = format!(
                "rope case {n} {:?} rot {}/{} offset {} {v:?}",
                c.layout, c.rotary_dim, c.head_dim, c.offset
            );
            assert_tensor(&gpu, &format!("{what}: q"), &q, &q_want, t).await;
            let k_expect = if c.kv_heads.is_some() { &k_want } else { &kv };
            assert_tensor(&gpu, &format!("{what}: k"), &k, k_expect, t).await;
        }
    }
});

// The three RoPE paths (prefill Q: ops::rope, K on KV append, decode Q inside the attention
// kernel) share one WGSL frequency function: with Llama 3 scaling, K appended to an f32 cache
// and Q rotated by ops::rope agree to an ulp or two (a compiler may contract x·c − y·s into an
// fma in one kernel and not the other) at every position: 1e-6 on values ≤ √2.
gpu_test!(rope_paths_agree_with_llama3_scaling, async {
    let gpu = gpu().await;
    let (tokens, heads, d, pos0) = (6, 2, 64, 700);
    // One value for both paths.
    let r = Rope {
        theta: 5e5,
        head_dim: d,
        rotary_dim: d,
        layout: RopeLayout::HalfSplit,
        scaling: LLAMA3,
    };
    let x = cpu::random(tokens * heads * d, 91, -1.0, 1.0);
    let q = upload(&gpu, "q", &[tokens, heads, d], &x);
    let k = upload(&gpu, "k", &[tokens, heads, d], &x);
    let v = upload(&gpu, "v", &[tokens, heads, d], &x);
    let mut cache = KvCache::new(&gpu, "c", pos0 + tokens, heads, d, KvDType::F32).unwrap();
    let pad = upload(&gpu, "pad", &[pos0, heads, d], &vec![0.0; pos0 * heads * d]);
    let mut b = gpu.batch();
    cache.append(&gpu, &mut b, &pad, &pad, None).unwrap();
    cache.append(&gpu, &mut b, &k, &v, Some(r)).unwrap();
    r.record(&gpu, &mut b, &q, None, pos0).unwrap();
    gpu.submit(b).unwrap();
    let got_q = q.to_f32_vec(&gpu).await.unwrap();
    let got_k = cache.k().to_f32_vec(&gpu).await.unwrap();
    let got_k = &got_k[pos0 * heads * d..];
    let mut want = x.clone();
    cpu::rope::rope(&mut want, heads, d, &rope::inv_freq(5e5, d, LLAMA3), false, pos0);
    check_close("ops::rope vs reference (llama3)", &got_q, &want, tol(pos0 + tokens)).unwrap();
    check_close(
        "K on append vs ops::rope (llama3)",
        got_k,
        &got_q,
        Tolerance { atol: 1e-6, rtol: 0.0 },
    )
    .unwrap();
});

gpu_test!(rope_rejects_bad_shapes, async {
    let gpu = gpu().await;
    let bad = Rope {
        theta: 1e4,
        head_dim: 8,
        rotary_dim: 10,
        layout: RopeLayout::HalfSplit,
        scaling: RopeScaling::None,
    };
    assert!(bad.check("rope").is_err());
    let odd = Rope {
        theta: 1e4,
        head_dim: 8,
        rotary_dim: 3,
        layout: RopeLayout::HalfSplit,
        scaling: RopeScaling::None,
    };
    assert!(matches!(odd.check("rope"), Err(Error::Shape { .. })));
    // A theta out of range is a bad value, not a bad shape.
    let theta = Rope { theta: 0.5, ..odd };
    assert!(matches!(
        Rope { rotary_dim: 8, ..theta }.check("rope"),
        Err(Error::BadInput { .. })
    ));
    // ... and every path refuses it when recording (prefill here; append and decode below).
    let q0 = upload(&gpu, "q0", &[1, 1, 8], &[0.0; 8]);
    let mut b0 = gpu.batch();
    assert!(Rope { rotary_dim: 8, ..theta }
        .record(&gpu, &mut b0, &q0, None, 0)
        .is_err());
    let r = Rope::plain(1e4, 6);
    assert_eq!(r.preferred_variant(), Variant::Scalar { workgroup: 64 });
    let q = upload(&gpu, "q", &[2, 3, 6], &[0.0; 36]);
    let k = upload(&gpu, "k", &[3, 1, 6], &[0.0; 18]);
    let q8 = upload(&gpu, "q8", &[2, 3, 8], &[0.0; 48]);
    let mut b = gpu.batch();
    assert!(r
        .record_variant(&gpu, &mut b, &q, None, 0, Variant::Vec2 { workgroup: 64 })
        .is_err());
    assert!(r.record(&gpu, &mut b, &q, Some(&k), 0).is_err());
    assert!(r.record(&gpu, &mut b, &q8, None, 0).is_err());
    assert!(r.record(&gpu, &mut b, &q, Some(&q), 0).is_err());
    assert_eq!(b.dispatches(), 0);
    r.record(&gpu, &mut b, &q, None, 5).unwrap();
    assert_eq!(b.dispatches(), 1);
});
