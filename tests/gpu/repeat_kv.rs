use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::ops::repeat_kv::{self, Variant};

// A copy: exact.
gpu_test!(repeat_kv_matches_reference, async {
    let gpu = gpu().await;
    // (tokens, kv_heads, n_rep, d)
    for (i, &(t, kv, rep, d)) in [(1, 1, 1, 4), (3, 2, 4, 64), (5, 3, 3, 7), (17, 4, 8, 128), (2, 1, 5, 6)]
        .iter()
        .enumerate()
    {
        let x = cpu::random(t * kv * d, 80 + i as u64, -1.0, 1.0);
        let want = cpu::repeat_kv::repeat_kv(&x, kv, d, rep);
        let src = upload(&gpu, "k", &[t, kv, d], &x);
        let mut variants = vec![Variant::Scalar];
        if d % 4 == 0 {
            variants.push(Variant::Vec4);
        }
        for v in variants {
            let dst = upload(&gpu, "k_rep", &[t, kv * rep, d], &vec![f32::NAN; want.len()]);
            let mut b = gpu.batch();
            repeat_kv::record_variant(&gpu, &mut b, &src, &dst, v).unwrap();
            gpu.submit(b).unwrap();
            assert_tensor(
                &gpu,
                &format!("repeat_kv {v:?} t={t} kv={kv} rep={rep} d={d}"),
                &dst,
                &want,
                Tolerance::EXACT,
            )
            .await;
        }
    }
    let src = upload(&gpu, "k", &[2, 3, 4], &[0.0; 24]);
    let dst = upload(&gpu, "k_rep", &[2, 4, 4], &[0.0; 32]);
    let odd = upload(&gpu, "k_odd", &[2, 3, 5], &[0.0; 30]);
    let odd_dst = upload(&gpu, "k_odd_rep", &[2, 6, 5], &[0.0; 60]);
    let mut b = gpu.batch();
    assert!(repeat_kv::record(&gpu, &mut b, &src, &dst).is_err());
    assert!(repeat_kv::record_variant(&gpu, &mut b, &odd, &odd_dst, Variant::Vec4).is_err());
    assert_eq!(b.dispatches(), 0);
});
