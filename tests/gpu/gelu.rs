use crate::common::*;
use kjarni_web::cpu::compare::Tolerance;
use kjarni_web::cpu::gelu::{self, Formula};
use kjarni_web::ops::gelu::{self as op, Gelu};

// GPU vs the same formula in f64 on [-10, 10]: f32 evaluation of a handful of operations plus the
// GPU's exp (WGSL: 3 + 2|x| ulp), and a division: 1e-6 absolute + 2e-6 relative. The formulas
// differ from each other by up to 5e-4 (tanh vs erf), so a kernel running the wrong one fails.
const TOL: Tolerance = Tolerance { atol: 1e-6, rtol: 2e-6 };

const KINDS: [(Gelu, Formula); 3] = [
    (Gelu::Erf, Formula::Erf),
    (Gelu::Tanh, Formula::Tanh),
    (Gelu::ErfRational, Formula::ErfRational),
];

gpu_test!(gelu_matches_its_formula_and_reports_its_error, async {
    let gpu = gpu().await;
    let grid = gelu::grid(); // 200001 points: the scalar kernel; the first 200000: vec4
    let tx = upload(&gpu, "x", &[grid.len()], &grid);
    let tx4 = upload(&gpu, "x4", &[grid.len() - 1], &grid[..grid.len() - 1]);
    say!(
        "GELU max |error| vs f64 erf-GELU on [-10, 10] step 1e-4 ({}):",
        gpu.caps().adapter
    );
    for (kind, formula) in KINDS {
        let want: Vec<f32> = grid
            .iter()
            .map(|&x| gelu::gelu_formula(formula, f64::from(x)) as f32)
            .collect();
        let ty = upload(&gpu, "y", &[grid.len()], &vec![f32::NAN; grid.len()]);
        let ty4 = upload(&gpu, "y4", &[grid.len() - 1], &vec![f32::NAN; grid.len() - 1]);
        let mut b = gpu.batch();
        op::record(&gpu, &mut b, kind, &tx, &ty).unwrap();
        op::record(&gpu, &mut b, kind, &tx4, &ty4).unwrap();
        gpu.submit(b).unwrap();
        assert_tensor(&gpu, &format!("{kind:?} scalar"), &ty, &want, TOL).await;
        assert_tensor(&gpu, &format!("{kind:?} vec4"), &ty4, &want[..want.len() - 1], TOL).await;
        let got = ty.to_f32_vec(&gpu).await.unwrap();
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        for (&x, &g) in grid.iter().zip(&got) {
            let d = (f64::from(g) - gelu::gelu_exact(f64::from(x))).abs();
            if d > worst {
                worst = d;
                at = x;
            }
        }
        let ((e64, x64), (e32, x32)) = gelu::max_error(formula, &grid);
        say!("  {kind:?}: formula in f64 {e64:.2e} (x = {x64}), in f32 on the CPU {e32:.2e} (x = {x32}), GPU {worst:.2e} (x = {at})");
        let bound = if kind == Gelu::Tanh { 1e-3 } else { 2e-6 };
        assert!(worst < bound, "{kind:?}: GPU error {worst:e} at {at}");
    }
});

gpu_test!(gelu_in_place_on_awkward_sizes, async {
    let gpu = gpu().await;
    for n in [1usize, 7, 8, 4099] {
        let x = kjarni_web::cpu::random(n, n as u64, -6.0, 6.0);
        for (kind, formula) in KINDS {
            let t = upload(&gpu, "x", &[n], &x);
            let mut b = gpu.batch();
            op::record_inplace(&gpu, &mut b, kind, &t).unwrap();
            gpu.submit(b).unwrap();
            let want: Vec<f32> = x
                .iter()
                .map(|&v| gelu::gelu_formula(formula, f64::from(v)) as f32)
                .collect();
            assert_tensor(&gpu, &format!("{kind:?} in place n={n}"), &t, &want, TOL).await;
        }
    }
    assert_eq!(Gelu::from_hidden_act("gelu"), Some(Gelu::Erf));
    assert_eq!(Gelu::from_hidden_act("gelu_new"), Some(Gelu::Tanh));
    assert_eq!(Gelu::from_hidden_act("gelu_pytorch_tanh"), Some(Gelu::Tanh));
    assert_eq!(Gelu::from_hidden_act("silu"), None);
    let t = upload(&gpu, "x", &[4], &[0.0; 4]);
    let mut b = gpu.batch();
    assert!(op::record(&gpu, &mut b, Gelu::Erf, &t, &t).is_err());
});
