use crate::common::*;
use kjarni_web::cpu::{self, compare::Tolerance};
use kjarni_web::ops::embedding::{self, Lookup, Tables, TokenIds, Variant};
use kjarni_web::{DType, Error, GpuTensor};

// A single table lookup copies the stored value: exact. Sums of two or three values of |v| ≤ 1
// are rounded once per f32 add on the GPU and once at the end in the reference: ≤ 2 ulp of the
// largest term, so 3e-7 absolute + 3e-7 relative.
const SUM_TOL: Tolerance = Tolerance { atol: 3e-7, rtol: 3e-7 };

const DTYPES: [(DType, &str); 3] = [(DType::F32, "f32"), (DType::F16, "f16"), (DType::BF16, "bf16")];

fn table(
    gpu: &kjarni_web::Gpu,
    name: &str,
    rows: usize,
    hidden: usize,
    dt: (DType, &str),
    seed: u64,
) -> (GpuTensor, Vec<f32>) {
    let v = cpu::random(rows * hidden, seed, -1.0, 1.0);
    let t = GpuTensor::from_f32(gpu, name, &[rows, hidden], dt.0, &v).unwrap();
    (t, cpu::embedding::round_to(&v, dt.1))
}

gpu_test!(embedding_matches_reference_for_every_dtype_and_shape, async {
    let gpu = gpu().await;
    // (tokens, hidden, vocab): odd hidden, hidden % 8 != 0 but % 4 == 0, vec8 shapes, one token.
    for (k, &(n, hidden, vocab)) in [(5, 7, 11), (3, 12, 9), (9, 64, 50), (1, 768, 30), (33, 40, 1000)]
        .iter()
        .enumerate()
    {
        let ids: Vec<u32> = (0..n).map(|i| ((i * 7919 + k) % vocab) as u32).collect();
        let mut tids = TokenIds::with_capacity(&gpu, "ids", n + 3).unwrap();
        tids.set(&gpu, &ids).unwrap();
        for (d, &dt) in DTYPES.iter().enumerate() {
            let (word, word_v) = table(&gpu, "word", vocab, hidden, dt, 1 + d as u64);
            let mut variants = vec![Variant::Scalar];
            if hidden % 8 == 0 {
                variants.push(Variant::Vec8);
            }
            for &variant in &variants {
                let out = upload(&gpu, "out", &[n, hidden], &vec![f32::NAN; n * hidden]);
                let mut b = gpu.batch();
                let tables = Tables {
                    word: &word,
                    position: None,
                    token_type: None,
                };
                embedding::record_variant(&gpu, &mut b, &tables, &Lookup::new(&tids), &out, variant).unwrap();
                gpu.submit(b).unwrap();
                let want = cpu::embedding::embedding(&word_v, hidden, &ids, None, None);
                assert_tensor(
                    &gpu,
                    &format!("word {} {variant:?} n={n} hidden={hidden}", dt.1),
                    &out,
                    &want,
                    Tolerance::EXACT,
                )
                .await;
            }
        }
    }
});

gpu_test!(bert_embeddings_sum_word_position_and_type, async {
    let gpu = gpu().await;
    let (hidden, vocab, max_pos) = (24, 40, 16);
    // two sequences of 5 tokens, positions start at 2 (e.g. RoBERTa-style offset)
    let ids: Vec<u32> = vec![1, 5, 39, 0, 7, 2, 2, 30, 11, 4];
    let types: Vec<u32> = vec![0, 0, 1, 1, 1, 0, 1, 0, 1, 0];
    let tids = TokenIds::new(&gpu, "input_ids", &ids).unwrap();
    let ttypes = TokenIds::new(&gpu, "token_type_ids", &types).unwrap();
    for (i, &wdt) in DTYPES.iter().enumerate() {
        let pdt = DTYPES[(i + 1) % 3];
        let tdt = DTYPES[(i + 2) % 3];
        let (word, wv) = table(&gpu, "word", vocab, hidden, wdt, 10);
        let (pos, pv) = table(&gpu, "position", max_pos, hidden, pdt, 11);
        let (tt, tv) = table(&gpu, "token_type", 2, hidden, tdt, 12);
        let tables = Tables {
            word: &word,
            position: Some(&pos),
            token_type: Some(&tt),
        };
        for with_types in [false, true] {
            let lookup = Lookup {
                ids: &tids,
                token_types: with_types.then_some(&ttypes),
                position_offset: 2,
                seq_len: 5,
            };
            let want = cpu::embedding::embedding(
                &wv,
                hidden,
                &ids,
                Some((&pv, 2, 5)),
                Some((&tv, with_types.then_some(&types[..]))),
            );
            for variant in [Variant::Vec8, Variant::Scalar] {
                let out = upload(&gpu, "out", &[10, hidden], &vec![f32::NAN; 10 * hidden]);
                let mut b = gpu.batch();
                embedding::record_variant(&gpu, &mut b, &tables, &lookup, &out, variant).unwrap();
                gpu.submit(b).unwrap();
                let what = format!(
                    "bert word {} pos {} type {} types={with_types} {variant:?}",
                    wdt.1, pdt.1, tdt.1
                );
                assert_tensor(&gpu, &what, &out, &want, SUM_TOL).await;
            }
        }
    }
});

gpu_test!(embedding_rejects_out_of_range_ids_before_dispatch, async {
    let gpu = gpu().await;
    let (word, _) = table(&gpu, "word", 10, 8, DTYPES[2], 1);
    let (pos, _) = table(&gpu, "position", 4, 8, DTYPES[0], 2);
    let (tt, _) = table(&gpu, "token_type", 2, 8, DTYPES[0], 3);
    let out = upload(&gpu, "out", &[3, 8], &[0.0; 24]);
    let bad = TokenIds::new(&gpu, "input_ids", &[1, 10, 2]).unwrap();
    let good = TokenIds::new(&gpu, "input_ids", &[1, 9, 2]).unwrap();
    let bad_types = TokenIds::new(&gpu, "token_type_ids", &[0, 2, 1]).unwrap();
    let mut b = gpu.batch();
    let plain = Tables {
        word: &word,
        position: None,
        token_type: None,
    };
    let e = embedding::record(&gpu, &mut b, &plain, &Lookup::new(&bad), &out).unwrap_err();
    assert!(
        matches!(e, Error::BadInput { .. }) && e.to_string().contains("id 10 at index 1"),
        "{e}"
    );
    let bert = Tables {
        word: &word,
        position: Some(&pos),
        token_type: Some(&tt),
    };
    let lookup = Lookup {
        ids: &good,
        token_types: Some(&bad_types),
        position_offset: 0,
        seq_len: 0,
    };
    assert!(embedding::record(&gpu, &mut b, &bert, &lookup, &out)
        .unwrap_err()
        .to_string()
        .contains("id 2 at index 1"));
    let lookup = Lookup {
        ids: &good,
        token_types: None,
        position_offset: 2,
        seq_len: 0,
    };
    assert!(embedding::record(&gpu, &mut b, &bert, &lookup, &out)
        .unwrap_err()
        .to_string()
        .contains("position 4"));
    let mut ids = TokenIds::with_capacity(&gpu, "ids", 2).unwrap();
    assert!(ids.set(&gpu, &[1, 2, 3]).is_err());
    assert_eq!(b.dispatches(), 0);
    embedding::record(&gpu, &mut b, &bert, &Lookup::new(&good), &out).unwrap();
    assert_eq!(b.dispatches(), 1);
});
