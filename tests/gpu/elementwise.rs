use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::ops::elementwise::{self, Op};

// Add and mul are one correctly rounded f32 operation on each side: exact.
// SiLU uses the GPU's exp (WGSL allows 3 + 2|x| ULP): 1e-6 absolute + 1e-5 relative.
const SILU_TOL: Tolerance = Tolerance { atol: 1e-6, rtol: 1e-5 };

gpu_test!(elementwise_matches_reference_on_awkward_sizes, async {
    let gpu = gpu().await;
    for (i, &n) in [1usize, 7, 255, 257, 4099, 100_003].iter().enumerate() {
        let a = cpu::random(n, 11 + i as u64, -8.0, 8.0);
        let b = cpu::random(n, 97 + i as u64, -8.0, 8.0);
        let ta = upload(&gpu, "a", &[n], &a);
        let tb = upload(&gpu, "b", &[n], &b);
        let outs: Vec<_> = (0..4).map(|_| upload(&gpu, "out", &[n], &vec![0.0; n])).collect();
        let mut batch = gpu.batch();
        elementwise::record(&gpu, &mut batch, Op::Add, &ta, Some(&tb), &outs[0]).unwrap();
        elementwise::record(&gpu, &mut batch, Op::Mul, &ta, Some(&tb), &outs[1]).unwrap();
        elementwise::record(&gpu, &mut batch, Op::Silu, &ta, None, &outs[2]).unwrap();
        elementwise::record(&gpu, &mut batch, Op::Tanh, &ta, None, &outs[3]).unwrap();
        gpu.submit(batch).unwrap();
        assert_tensor(
            &gpu,
            &format!("add n={n}"),
            &outs[0],
            &cpu::elementwise::add(&a, &b),
            Tolerance::EXACT,
        )
        .await;
        assert_tensor(
            &gpu,
            &format!("mul n={n}"),
            &outs[1],
            &cpu::elementwise::mul(&a, &b),
            Tolerance::EXACT,
        )
        .await;
        assert_tensor(
            &gpu,
            &format!("silu n={n}"),
            &outs[2],
            &cpu::elementwise::silu(&a),
            SILU_TOL,
        )
        .await;
        // tanh from one exp and a division: the same bound as SiLU.
        let tanh: Vec<f32> = a.iter().map(|&x| f64::from(x).tanh() as f32).collect();
        assert_tensor(&gpu, &format!("tanh n={n}"), &outs[3], &tanh, SILU_TOL).await;
    }
});
