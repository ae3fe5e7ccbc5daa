use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::ops::pooling::{self, Pooling};
use kjarni_web::GpuTensor;

// Sums of ≤ 37 f32 values in [-4, 4] per column and one norm over ≤ 1000 squares: relative error
// ~1e-6; 1e-5 relative + 1e-6 absolute.
const TOL: Tolerance = Tolerance { atol: 1e-6, rtol: 1e-5 };

gpu_test!(mean_pool_with_padding_matches_reference, async {
    let gpu = gpu().await;
    for (i, &(batch, seq, dim)) in [(1usize, 1usize, 1usize), (3, 37, 384), (2, 5, 1000)]
        .iter()
        .enumerate()
    {
        let h = cpu::random(batch * seq * dim, 21 + i as u64, -4.0, 4.0);
        let lens: Vec<u32> = (0..batch).map(|b| (seq - b * seq / 3).max(1) as u32).collect();
        let th = upload(&gpu, "hidden", &[batch, seq, dim], &h);
        let tl = GpuTensor::from_u32(&gpu, "lens", &[batch], &lens).unwrap();
        for normalize in [false, true] {
            for mode in [Pooling::Mean, Pooling::Cls, Pooling::LastToken] {
                let out = upload(&gpu, "pooled", &[batch, dim], &vec![0.0; batch * dim]);
                let mut b = gpu.batch();
                pooling::record(&gpu, &mut b, &th, &tl, &out, mode, normalize).unwrap();
                gpu.submit(b).unwrap();
                let want = cpu::pooling::pool(&h, seq, dim, &lens, mode, normalize);
                // The last-token rows differ from the CLS rows wherever a sequence is padded.
                let what = format!("pool {mode:?} {batch}x{seq}x{dim} norm={normalize}");
                assert_tensor(&gpu, &what, &out, &want, TOL).await;
            }
        }
    }
});
