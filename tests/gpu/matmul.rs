use crate::common::*;
use crate::linear_util::*;
use kjarni_web::cpu;
use kjarni_web::cpu::compare::Tolerance;
use kjarni_web::cpu::linear::{abs_dot, linear, Epi};
use kjarni_web::ops::linear::{Act, Epilogue, Residual};
use kjarni_web::ops::matmul::{self, CpuShape, Tile, Variant, TILES};
use kjarni_web::ops::tune::{self, TuneKey};
use kjarni_web::{DType, Error, GpuTensor};

// (M, N, K): edge tiles in every dimension (not multiples of any tile or slice), K odd and K
// not a multiple of 4 or 8 (unaligned X and W rows), a single row / column, K shorter than one
// slice, and shapes that fill whole tiles.
const SHAPES: [(usize, usize, usize); 9] = [
    (1, 1, 1),
    (3, 5, 7),
    (2, 40, 12),
    (17, 33, 9),
    (33, 17, 64),
    (16, 64, 16),
    (65, 70, 31),
    (130, 129, 40),
    (5, 130, 257),
];

fn variants(gpu: &kjarni_web::Gpu, dtype: DType) -> Vec<Variant> {
    let mut v: Vec<Variant> = TILES
        .iter()
        .filter(|t| t.fits(gpu.caps()))
        .map(|t| Variant::Tiled(*t))
        .collect();
    v.push(Variant::Tile32);
    // CPU launch shapes (whatever the adapter): the chosen 4x8 block, and odd blocks / workgroups.
    let cpu = Variant::Cpu(CpuShape {
        rows: 4,
        cols: 8,
        workgroup: 16,
    });
    v.push(cpu);
    for (rows, cols, workgroup) in [(1, 2, 8), (8, 4, 64), (2, 1, 3)] {
        v.push(Variant::Cpu(CpuShape { rows, cols, workgroup }));
    }
    // In the browser, f16 and f32 weights run on the smallest and the largest tile and the CPU
    // 4x8 shape only.
    subset(&v, |v| {
        dtype == DType::BF16 || *v == Variant::Tiled(TILES[0]) || *v == Variant::Tiled(TILES[7]) || *v == cpu
    })
}

gpu_test!(matmul_is_exact_on_awkward_shapes_for_every_dtype_and_tile, async {
    let gpu = gpu().await;
    let all = variants(&gpu, DType::BF16);
    say!(
        "matmul variants on this device: {:?}",
        all.iter().map(|v| v.name()).collect::<Vec<_>>()
    );
    assert!(all.len() >= 7, "most tiles must fit every WebGPU device");
    for dtype in DTYPES {
        let variants = variants(&gpu, dtype);
        let shapes = subset(&SHAPES, |s| [(17, 33, 9), (33, 17, 64)].contains(s));
        for (i, &(m, n, k)) in shapes.iter().enumerate() {
            let (x, w) = exact_data(m, n, k, 40 + i as u64);
            let (tw, wv) = weights(&gpu, "w", n, k, dtype, &w);
            let tx = upload(&gpu, "x", &[m, k], &x);
            let want = linear(&x, &wv, m, n, k, Epi::default());
            let outs: Vec<GpuTensor> = variants
                .iter()
                .map(|_| upload(&gpu, "y", &[m, n], &vec![f32::NAN; m * n]))
                .collect();
            let mut batch = gpu.batch();
            for (v, y) in variants.iter().zip(&outs) {
                matmul::record_variant(&gpu, &mut batch, &tx, &tw, y, &Epilogue::NONE, *v).unwrap();
            }
            gpu.submit(batch).unwrap();
            for (v, y) in variants.iter().zip(&outs) {
                assert_tensor(
                    &gpu,
                    &format!("matmul {dtype} {} [{m}, {n}, {k}]", v.name()),
                    y,
                    &want,
                    Tolerance::EXACT,
                )
                .await;
            }
        }
    }
});

// Realistic values: each output is a serial chain of K FMAs in f32 (the tiled kernel accumulates
// one k after another in registers; the CPU kernel 4 or 8 chains of K/4 or K/8, then adds them):
// error ≤ K · 2^-24 · Σ|x·w|. GELU / SiLU add 2e-6 relative.
gpu_test!(matmul_matches_reference_with_fused_epilogues, async {
    let gpu = gpu().await;
    let (m, n, k) = (37usize, 70usize, 300usize);
    let x = cpu::random(m * k, 5, -2.0, 2.0);
    let w = cpu::random(n * k, 6, -0.5, 0.5);
    let b = cpu::random(n, 7, -1.0, 1.0);
    let r = cpu::random(m * n, 8, -3.0, 3.0);
    let rel = k as f32 * 2f32.powi(-24);
    for dtype in subset(&DTYPES, |d| *d == DType::BF16) {
        let (tw, wv) = weights(&gpu, "w", n, k, dtype, &w);
        let tx = upload(&gpu, "x", &[m, k], &x);
        let tb = upload(&gpu, "bias", &[n], &b);
        let tr = upload(&gpu, "res", &[m, n], &r);
        let scale = abs_dot(&x, &wv, m, n, k);
        let mul_scale: Vec<f32> = scale.iter().zip(&r).map(|(s, o)| s * o.abs().max(1.0)).collect();
        let epilogue_variants = [
            Variant::Tile32,
            Variant::Tiled(matmul::default_tile(gpu.caps(), m, n)),
            Variant::Tiled(TILES[4]),
            Variant::Cpu(matmul::cpu_shape(gpu.caps(), m, n)),
        ];
        for v in subset(&epilogue_variants, |v| *v != Variant::Tile32) {
            let what = |c: &str| format!("matmul {dtype} {} {c}", v.name());
            // bias + GELU
            let y = upload(&gpu, "y", &[m, n], &vec![f32::NAN; m * n]);
            let mut batch = gpu.batch();
            matmul::record_variant(
                &gpu,
                &mut batch,
                &tx,
                &tw,
                &y,
                &Epilogue {
                    bias: Some(&tb),
                    act: Act::Gelu,
                    residual: None,
                },
                v,
            )
            .unwrap();
            gpu.submit(batch).unwrap();
            let want = linear(
                &x,
                &wv,
                m,
                n,
                k,
                Epi {
                    bias: Some(&b),
                    act: Act::Gelu,
                    ..Default::default()
                },
            );
            assert_scaled(
                &what("bias+gelu"),
                &y.to_f32_vec(&gpu).await.unwrap(),
                &want,
                &scale,
                rel,
                2e-6,
            );
            // in-place residual
            let y = upload(&gpu, "y", &[m, n], &r);
            let mut batch = gpu.batch();
            matmul::record_variant(
                &gpu,
                &mut batch,
                &tx,
                &tw,
                &y,
                &Epilogue {
                    bias: Some(&tb),
                    act: Act::None,
                    residual: Some(Residual::Add(&y)),
                },
                v,
            )
            .unwrap();
            gpu.submit(batch).unwrap();
            let want = linear(
                &x,
                &wv,
                m,
                n,
                k,
                Epi {
                    bias: Some(&b),
                    add: Some(&r),
                    ..Default::default()
                },
            );
            assert_scaled(
                &what("in-place residual"),
                &y.to_f32_vec(&gpu).await.unwrap(),
                &want,
                &scale,
                rel,
                1e-6,
            );
            // silu * other
            let y = upload(&gpu, "y", &[m, n], &vec![f32::NAN; m * n]);
            let mut batch = gpu.batch();
            matmul::record_variant(
                &gpu,
                &mut batch,
                &tx,
                &tw,
                &y,
                &Epilogue {
                    bias: None,
                    act: Act::Silu,
                    residual: Some(Residual::Mul(&tr)),
                },
                v,
            )
            .unwrap();
            gpu.submit(batch).unwrap();
            let want = linear(
                &x,
                &wv,
                m,
                n,
                k,
                Epi {
                    act: Act::Silu,
                    mul: Some(&r),
                    ..Default::default()
                },
            );
            assert_scaled(
                &what("silu*other"),
                &y.to_f32_vec(&gpu).await.unwrap(),
                &want,
                &mul_scale,
                rel,
                2e-6,
            );
        }
    }
});

gpu_test!(matmul_autotune_times_candidates_once_and_caches_the_choice, async {
    let gpu = gpu().await;
    tune::clear();
    // In the browser a smaller problem: fewer candidate tiles (M ≤ 16), each timed on SwiftShader.
    let (m, n, k) = if browser() {
        (12usize, 40usize, 24usize)
    } else {
        (96, 80, 72)
    };
    let (x, w) = exact_data(m, n, k, 9);
    let (tw, wv) = weights(&gpu, "w", n, k, DType::BF16, &w);
    let tx = upload(&gpu, "x", &[3, m / 3, k], &x);
    let y = upload(&gpu, "y", &[3, m / 3, n], &vec![0.0; m * n]);
    let key = TuneKey::new(&gpu, "matmul", DType::BF16, [m, n, k]);
    assert!(tune::lookup(&key).is_none());
    let tile: Tile = matmul::autotune(&gpu, &tx, &tw, &y).await.unwrap();
    say!(
        "autotune picked {} for [{m}, {n}, {k}] bf16 on {}",
        tile.name(),
        gpu.caps().adapter
    );
    assert!(matmul::candidates(gpu.caps(), m).contains(&tile));
    assert_eq!(tune::lookup(&key).map(|i| TILES[i]), Some(tile));
    // Same bucket (each dimension rounded up to a power of two): cached, no timing, same tile.
    assert_eq!(matmul::chosen_tile(&gpu, m + 1, n + 3, k + 5, DType::BF16), tile);
    assert_eq!(matmul::autotune(&gpu, &tx, &tw, &y).await.unwrap(), tile);
    // record uses it (the CPU launch shapes ignore tuning) and is still exact.
    assert_eq!(
        matmul::chosen_variant(&gpu, m, n, k, DType::BF16),
        if gpu.caps().variants.cpu {
            Variant::Cpu(matmul::cpu_shape(gpu.caps(), m, n))
        } else {
            Variant::Tiled(tile)
        }
    );
    let y2 = upload(&gpu, "y2", &[m, n], &vec![f32::NAN; m * n]);
    let mut batch = gpu.batch();
    matmul::record(&gpu, &mut batch, &tx, &tw, &y2, &Epilogue::NONE).unwrap();
    gpu.submit(batch).unwrap();
    assert_tensor(
        &gpu,
        "matmul after autotune",
        &y2,
        &linear(&x, &wv, m, n, k, Epi::default()),
        Tolerance::EXACT,
    )
    .await;
});

gpu_test!(matmul_rejects_bad_shapes_and_tiles, async {
    let gpu = gpu().await;
    let w = GpuTensor::zeros(&gpu, "w", &[4, 6], DType::F16).unwrap();
    let x = GpuTensor::zeros(&gpu, "x", &[3, 6], DType::F32).unwrap();
    let y = GpuTensor::zeros(&gpu, "y", &[3, 4], DType::F32).unwrap();
    let mut b = gpu.batch();
    let bad_x = GpuTensor::zeros(&gpu, "x", &[3, 5], DType::F32).unwrap();
    assert!(matches!(
        matmul::record(&gpu, &mut b, &bad_x, &w, &y, &Epilogue::NONE),
        Err(Error::Shape { .. })
    ));
    let bad_y = GpuTensor::zeros(&gpu, "y", &[2, 4], DType::F32).unwrap();
    assert!(matches!(
        matmul::record(&gpu, &mut b, &x, &w, &bad_y, &Epilogue::NONE),
        Err(Error::Shape { .. })
    ));
    let xf16 = GpuTensor::zeros(&gpu, "x16", &[3, 6], DType::F16).unwrap();
    assert!(matches!(
        matmul::record(&gpu, &mut b, &xf16, &w, &y, &Epilogue::NONE),
        Err(Error::DType { .. })
    ));
    let huge = Tile {
        bm: 128,
        bn: 128,
        bk: 32,
        tm: 4,
        tn: 4,
    }; // 1024 invocations, 64 KiB
    assert!(matches!(
        matmul::record_variant(&gpu, &mut b, &x, &w, &y, &Epilogue::NONE, Variant::Tiled(huge)),
        Err(Error::Unsupported { .. })
    ));
    let odd = Tile {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 3,
        tn: 4,
    };
    assert!(matches!(
        matmul::record_variant(&gpu, &mut b, &x, &w, &y, &Epilogue::NONE, Variant::Tiled(odd)),
        Err(Error::Unsupported { .. })
    ));
    for (rows, cols, workgroup) in [(3, 4, 16), (4, 16, 16), (4, 4, 0), (4, 4, 4096)] {
        let bad = Variant::Cpu(CpuShape { rows, cols, workgroup });
        assert!(matches!(
            matmul::record_variant(&gpu, &mut b, &x, &w, &y, &Epilogue::NONE, bad),
            Err(Error::Unsupported { .. })
        ));
    }
    assert_eq!(b.dispatches(), 0);
});

// `record` runs the CPU kernel under the CPU launch shapes (chosen by the adapter, Auto: SwiftShader
// in the browser, lavapipe natively; or forced) and the tiled one under the GPU shapes. Awkward
// shape (M, N not multiples of the 4x8 block or of any tile, K = 300: 16-bit rows 8-byte aligned
// only, so the scalar path; K = 296 the vec4 path), bias + GELU and an in-place residual. Tolerance
// as in matmul_matches_reference_with_fused_epilogues.
gpu_test!(matmul_record_uses_the_launch_shapes_of_the_device, async {
    let auto = gpu().await;
    say!(
        "matmul on {} (cpu launch shapes: {}): {}",
        auto.caps().adapter,
        auto.caps().variants.cpu,
        matmul::chosen_variant(&auto, 37, 70, 296, DType::BF16).name()
    );
    assert_eq!(
        auto.caps().variants.cpu,
        matches!(matmul::chosen_variant(&auto, 37, 70, 296, DType::BF16), Variant::Cpu(_))
    );
    // SwiftShader (the browser run), lavapipe / llvmpipe (natively) pick the CPU kernel.
    let text = format!("{} {}", auto.caps().adapter, auto.caps().driver).to_ascii_lowercase();
    if ["swiftshader", "llvmpipe", "lavapipe"].iter().any(|c| text.contains(c)) {
        assert!(
            auto.caps().variants.cpu,
            "{text}: a CPU adapter without the CPU launch shapes"
        );
    }
    drop(auto);
    for (case, k) in [300usize, 296].into_iter().enumerate() {
        for &i in shapes_for(case) {
            let gpu = gpu_with(BOTH_SHAPES[i]).await;
            let (m, n) = (37usize, 70usize);
            let v = matmul::chosen_variant(&gpu, m, n, k, DType::BF16);
            assert_eq!(
                matches!(v, Variant::Cpu(_)),
                BOTH_SHAPES[i] == kjarni_web::LaunchShapes::Cpu
            );
            let x = cpu::random(m * k, 15, -2.0, 2.0);
            let w = cpu::random(n * k, 16, -0.5, 0.5);
            let b = cpu::random(n, 17, -1.0, 1.0);
            let r = cpu::random(m * n, 18, -3.0, 3.0);
            let (tw, wv) = weights(&gpu, "w", n, k, DType::BF16, &w);
            let tx = upload(&gpu, "x", &[m, k], &x);
            let tb = upload(&gpu, "bias", &[n], &b);
            let y = upload(&gpu, "y", &[m, n], &r);
            let mut batch = gpu.batch();
            let epi = Epilogue {
                bias: Some(&tb),
                act: Act::Gelu,
                residual: Some(Residual::Add(&y)),
            };
            matmul::record(&gpu, &mut batch, &tx, &tw, &y, &epi).unwrap();
            gpu.submit(batch).unwrap();
            let want = linear(
                &x,
                &wv,
                m,
                n,
                k,
                Epi {
                    bias: Some(&b),
                    act: Act::Gelu,
                    add: Some(&r),
                    ..Default::default()
                },
            );
            let scale: Vec<f32> = abs_dot(&x, &wv, m, n, k)
                .iter()
                .zip(&r)
                .map(|(s, o)| s + o.abs())
                .collect();
            assert_scaled(
                &format!("matmul record {} k={k}", v.name()),
                &y.to_f32_vec(&gpu).await.unwrap(),
                &want,
                &scale,
                k as f32 * 2f32.powi(-24),
                2e-6,
            );
        }
    }
});
