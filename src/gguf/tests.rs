use super::writer::{sample_file, GgufWriter};
use super::*;

fn bad_detail(r: Result<Parsed>) -> String {
    match r {
        Err(Error::BadModelFile { file, detail }) => {
            assert_eq!(file, "t.gguf");
            detail
        }
        Err(e) => panic!("expected BadModelFile, got {e}"),
        Ok(Parsed::Header(_)) => panic!("expected BadModelFile, got a header"),
        Ok(Parsed::NeedMore { bytes }) => panic!("expected BadModelFile, got NeedMore({bytes})"),
    }
}

fn parse_all(bytes: &[u8]) -> Result<Parsed> {
    parse_header("t.gguf", bytes, bytes.len() as u64)
}

fn header(bytes: &[u8]) -> GgufHeader {
    match parse_all(bytes).unwrap() {
        Parsed::Header(h) => *h,
        Parsed::NeedMore { bytes } => panic!("NeedMore({bytes}) on a complete file"),
    }
}

/// Raw file pieces for malformed inputs.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, tensors: u64, kvs: u64) -> Raw {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&tensors.to_le_bytes());
        v.extend_from_slice(&kvs.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A tensor info: name, dims, type, offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    fn pad(mut self, n: usize) -> Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

#[test]
fn every_ggml_type_has_a_table_row() {
    for id in 0..64 {
        if let Some(t) = GgmlType::from_id(id) {
            assert_eq!(t.id(), id);
            assert!(t.block_size() >= 1 && t.type_size() >= 1);
        }
    }
    assert_eq!((GgmlType::Q8_0.block_size(), GgmlType::Q8_0.type_size()), (32, 34));
    assert_eq!((GgmlType::Q4_0.block_size(), GgmlType::Q4_0.type_size()), (32, 18));
    assert_eq!((GgmlType::Q4_1.block_size(), GgmlType::Q4_1.type_size()), (32, 20));
    assert_eq!((GgmlType::Q4_K.block_size(), GgmlType::Q4_K.type_size()), (256, 144));
    assert_eq!(GgmlType::Q6_K.type_size(), 210);
    assert!(GgmlType::from_id(4).is_none() && GgmlType::from_id(31).is_none());
}

#[test]
fn sample_file_parses_with_every_value_type() {
    let bytes = sample_file();
    let h = header(&bytes);
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.data_offset % 32, 0);
    assert_eq!(h.get("test.u8"), Some(&MetaValue::U8(200)));
    assert_eq!(h.get("test.i8"), Some(&MetaValue::I8(-5)));
    assert_eq!(h.get("test.u16"), Some(&MetaValue::U16(60_000)));
    assert_eq!(h.get("test.i16"), Some(&MetaValue::I16(-30_000)));
    assert_eq!(h.get("test.i32"), Some(&MetaValue::I32(-7)));
    assert_eq!(h.get("test.i64"), Some(&MetaValue::I64(-1 << 40)));
    assert_eq!(h.get("test.f64"), Some(&MetaValue::F64(0.125)));
    assert_eq!(h.get_bool("test.bool").unwrap(), Some(true));
    assert_eq!(h.get_str("general.name").unwrap(), Some("tiny ✓"));
    match h.get("test.nested") {
        Some(MetaValue::Array(MetaArray::Array(a))) => {
            assert_eq!(a[0], MetaArray::U16(vec![1, 2]));
            assert_eq!(a[1], MetaArray::Bool(vec![false, true]));
        }
        v => panic!("nested array: {v:?}"),
    }
    // A wrong type is an error naming the key, a missing key is None.
    let e = h.get_str("llama.block_count").unwrap_err().to_string();
    assert!(e.contains("llama.block_count"), "{e}");
    assert_eq!(h.get_u64("nope").unwrap(), None);

    let hp = h.hparams().unwrap();
    assert_eq!(
        hp,
        HParams {
            architecture: "llama".into(),
            context_length: 2048,
            embedding_length: 64,
            block_count: 2,
            feed_forward_length: 128,
            head_count: 4,
            head_count_kv: 2,
            rms_eps: 1e-5,
            rope_freq_base: 100_000.0,
            rope_dimension_count: 16,
            vocab_size: None,
            key_length: None,
        }
    );
    assert_eq!(hp.head_dim(), 16);

    let t = h.tokenizer().unwrap();
    assert_eq!(t.model, "gpt2");
    assert_eq!(t.pre, Some("smollm"));
    assert_eq!(t.tokens.len(), 6);
    assert_eq!(t.tokens[5], "ab");
    assert_eq!(t.merges.unwrap(), ["a b".to_string()]);
    assert_eq!(t.token_type.unwrap()[0], 3);
    assert_eq!((t.bos, t.eos, t.padding, t.unknown), (Some(1), Some(2), Some(2), None));
    assert_eq!((t.add_bos, t.add_eos), (Some(false), None));
    assert_eq!(t.chat_template, Some("{{ messages }}"));

    assert_eq!(h.tensors.len(), 3);
    let norm = h.tensor("output_norm.weight").unwrap();
    assert_eq!(
        (norm.ggml_type, norm.size, norm.offset),
        (GgmlType::F32, 256, h.data_offset)
    );
    let data = &bytes[norm.range().start as usize..norm.range().end as usize];
    assert_eq!(f32::from_le_bytes(data[12..16].try_into().unwrap()), 3.0);
    let k = h.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(
        (k.ggml_type, k.size, k.shape(), k.rows_cols()),
        (GgmlType::Q8_0, 68, vec![2, 32], (2, 32))
    );
    assert_eq!(bytes[k.offset as usize + 1], 7);
    let d = h.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!((d.ggml_type, d.size, d.offset % 32), (GgmlType::Q4_K, 144, 0));
    assert!(h.tensor("missing").unwrap_err().to_string().contains("'missing'"));
    assert_eq!(h.rope_layout().unwrap(), RopeLayout::Interleaved);
    assert!(h.qk_rows_permuted().unwrap());
}

#[test]
fn every_short_prefix_asks_for_more_and_the_answer_converges() {
    let bytes = sample_file();
    let full = header(&bytes);
    let size = bytes.len() as u64;
    let mut len = 0usize;
    let mut rounds = 0;
    // Follow the parser's own requests from an empty prefix.
    loop {
        match parse_header("t.gguf", &bytes[..len], size).unwrap() {
            Parsed::NeedMore { bytes: n } => {
                assert!(n > len as u64 && n <= size, "NeedMore({n}) for a prefix of {len}");
                len = n as usize;
                rounds += 1;
            }
            Parsed::Header(h) => {
                assert_eq!(h.tensors, full.tensors);
                assert_eq!(len as u64, full.header_len);
                break;
            }
        }
    }
    assert!(rounds > 50);
    // Every prefix shorter than the header asks for more; any longer one gives the same header.
    for len in 0..full.header_len as usize {
        assert!(
            matches!(
                parse_header("t.gguf", &bytes[..len], size).unwrap(),
                Parsed::NeedMore { .. }
            ),
            "{len}"
        );
    }
    for len in [full.header_len as usize, full.data_offset as usize, bytes.len()] {
        assert!(matches!(
            parse_header("t.gguf", &bytes[..len], size).unwrap(),
            Parsed::Header(_)
        ));
    }
}

#[test]
fn alignment_key_moves_the_data() {
    let mut w = GgufWriter::new().kv("general.architecture", MetaValue::String("qwen2".into()));
    w.alignment = 64;
    let w = w
        .tensor("a", GgmlType::F32, &[3], vec![1; 12])
        .tensor("b", GgmlType::F16, &[5], vec![2; 10]);
    let bytes = w.build();
    let h = header(&bytes);
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(h.tensor("b").unwrap().offset, h.data_offset + 64);
    assert_eq!(bytes[h.tensor("b").unwrap().offset as usize], 2);
    assert_eq!(h.rope_layout().unwrap(), RopeLayout::HalfSplit);
    assert!(!h.qk_rows_permuted().unwrap());
}

#[test]
fn malformed_files_are_typed_errors_naming_the_culprit() {
    let e = bad_detail(parse_all(b"GGML\x03\0\0\0"));
    assert!(e.contains("not a GGUF file"), "{e}");
    let e = bad_detail(parse_all(&Raw::new(1, 0, 0).0));
    assert!(e.contains("version 1"), "{e}");
    let e = bad_detail(parse_all(&Raw::new(7, 0, 0).0));
    assert!(e.contains("version 7"), "{e}");
    let e = bad_detail(parse_all(&Raw::new(3u32.swap_bytes(), 0, 0).0));
    assert!(e.contains("big-endian"), "{e}");
    // Counts that the file cannot hold.
    let e = bad_detail(parse_all(&Raw::new(3, 0, u64::MAX).pad(64).0));
    assert!(e.contains("cannot fit"), "{e}");
    let e = bad_detail(parse_all(&Raw::new(3, 1 << 40, 1).pad(64).0));
    assert!(e.contains("cannot fit"), "{e}");
    // A key length past the end of the file.
    let e = bad_detail(parse_all(&Raw::new(3, 0, 1).u64(1 << 50).pad(16).0));
    assert!(e.contains("metadata key 0"), "{e}");
    // A string value far longer than the file.
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 1).str("general.name").u32(8).u64(u64::MAX - 3).pad(8).0,
    ));
    assert!(e.contains("general.name") && e.contains("string length"), "{e}");
    // An array count far larger than the file.
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 1)
            .str("tokenizer.ggml.tokens")
            .u32(9)
            .u32(8)
            .u64(1 << 61)
            .pad(32)
            .0,
    ));
    assert!(e.contains("tokenizer.ggml.tokens") && e.contains("array of"), "{e}");
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 1).str("x.arr").u32(9).u32(99).u64(1).pad(32).0,
    ));
    assert!(e.contains("x.arr") && e.contains("element type 99"), "{e}");
    let e = bad_detail(parse_all(&Raw::new(3, 0, 1).str("x.v").u32(13).pad(16).0));
    assert!(e.contains("x.v") && e.contains("value type 13"), "{e}");
    let e = bad_detail(parse_all(&Raw::new(3, 0, 1).str("x.b").u32(7).bytes(&[2]).pad(16).0));
    assert!(e.contains("x.b") && e.contains("bool"), "{e}");
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 1)
            .str("x.s")
            .u32(8)
            .u64(2)
            .bytes(&[0xff, 0xfe])
            .pad(16)
            .0,
    ));
    assert!(e.contains("x.s") && e.contains("UTF-8"), "{e}");
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 2)
            .str("k")
            .u32(4)
            .u32(1)
            .str("k")
            .u32(4)
            .u32(2)
            .pad(16)
            .0,
    ));
    assert!(e.contains("'k' appears twice"), "{e}");
    // Arrays of arrays of arrays of arrays.
    let deep = Raw::new(3, 0, 1).str("x.deep").u32(9);
    let deep = deep.u32(9).u64(1).u32(9).u64(1).u32(9).u64(1).u32(0).u64(0).pad(16);
    let e = bad_detail(parse_all(&deep.0));
    assert!(e.contains("x.deep") && e.contains("nested"), "{e}");
    // Alignment of the wrong type or not a power of two.
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 1).str("general.alignment").u32(4).u32(48).pad(16).0,
    ));
    assert!(e.contains("general.alignment"), "{e}");
    let e = bad_detail(parse_all(
        &Raw::new(3, 0, 1).str("general.alignment").u32(10).u64(32).pad(16).0,
    ));
    assert!(e.contains("general.alignment"), "{e}");

    // Tensor infos.
    let t = |dims: &[u64], ty: u32, off: u64| {
        Raw::new(3, 1, 0)
            .tensor("blk.0.attn_q.weight", dims, ty, off)
            .pad(256)
            .0
    };
    let e = bad_detail(parse_all(&t(&[32, 2], 77, 0)));
    assert!(e.contains("blk.0.attn_q.weight") && e.contains("ggml type 77"), "{e}");
    let e = bad_detail(parse_all(&t(&[32, 2], 4, 0)));
    assert!(e.contains("ggml type 4"), "{e}");
    let e = bad_detail(parse_all(&t(&[1, 1, 1, 1, 1], 0, 0)));
    assert!(e.contains("5 dimensions"), "{e}");
    let e = bad_detail(parse_all(&t(&[33, 2], 8, 0)));
    assert!(e.contains("block size"), "{e}");
    let e = bad_detail(parse_all(&t(&[u64::MAX / 2, 4], 0, 0)));
    assert!(e.contains("overflow"), "{e}");
    let e = bad_detail(parse_all(&t(&[32, 2], 8, 16)));
    assert!(e.contains("alignment"), "{e}");
    let e = bad_detail(parse_all(&t(&[32, 100], 8, 0)));
    assert!(e.contains("blk.0.attn_q.weight") && e.contains("past the end"), "{e}");
    let long = "x".repeat(64);
    let e = bad_detail(parse_all(&Raw::new(3, 1, 0).tensor(&long, &[1], 0, 0).pad(64).0));
    assert!(e.contains("tensor info 0"), "{e}");
    let two = |off_b: u64| {
        Raw::new(3, 2, 0)
            .tensor("a", &[32], 0, 0)
            .tensor("b", &[32], 0, off_b)
            .pad(512)
            .0
    };
    header(&two(128));
    let e = bad_detail(parse_all(&two(96)));
    assert!(e.contains("'a'") && e.contains("'b'") && e.contains("overlap"), "{e}");
    let e = bad_detail(parse_all(
        &Raw::new(3, 2, 0)
            .tensor("a", &[1], 0, 0)
            .tensor("a", &[1], 0, 32)
            .pad(128)
            .0,
    ));
    assert!(e.contains("'a' appears twice"), "{e}");
    // A prefix longer than the stated file size.
    let e = bad_detail(parse_header("t.gguf", &[0; 16], 8));
    assert!(e.contains("file size"), "{e}");
}

#[test]
fn tokenizer_and_hparams_are_checked() {
    let base = || {
        GgufWriter::new()
            .kv("general.architecture", MetaValue::String("qwen2".into()))
            .kv("qwen2.context_length", MetaValue::U32(32768))
            .kv("qwen2.embedding_length", MetaValue::U32(896))
            .kv("qwen2.block_count", MetaValue::U32(24))
            .kv("qwen2.feed_forward_length", MetaValue::U32(4864))
            .kv("qwen2.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-6))
            .kv("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
            .kv(
                "tokenizer.ggml.tokens",
                MetaValue::Array(MetaArray::String(vec!["a".into(), "b".into()])),
            )
    };
    let h = header(
        &base()
            .kv("qwen2.attention.head_count", MetaValue::U32(14))
            .kv("qwen2.attention.head_count_kv", MetaValue::U32(2))
            .build(),
    );
    let hp = h.hparams().unwrap();
    assert_eq!(
        (
            hp.head_dim(),
            hp.head_count_kv,
            hp.rope_freq_base,
            hp.rope_dimension_count
        ),
        (64, 2, 10_000.0, 64)
    );
    let h = header(
        &base()
            .kv("qwen2.attention.head_count", MetaValue::U32(14))
            .kv("qwen2.attention.head_count_kv", MetaValue::U32(3))
            .build(),
    );
    assert!(h.hparams().unwrap_err().to_string().contains("head_count_kv 3"));
    let h = header(&base().build());
    assert!(h
        .hparams()
        .unwrap_err()
        .to_string()
        .contains("qwen2.attention.head_count"));
    let h = header(&base().kv("tokenizer.ggml.eos_token_id", MetaValue::U32(2)).build());
    assert!(h.tokenizer().unwrap_err().to_string().contains("eos_token_id"));
    let h = header(
        &base()
            .kv("tokenizer.ggml.scores", MetaValue::Array(MetaArray::F32(vec![0.0])))
            .build(),
    );
    assert!(h.tokenizer().unwrap_err().to_string().contains("scores"));
}

#[test]
fn unpermute_inverts_the_converters_permutation() {
    // convert_hf_to_gguf.py: w.reshape(n_head, 2, rows // n_head // 2, ...).swapaxes(1, 2):
    // GGUF row h*hd + 2b + a holds HF row h*hd + a*half + b.
    let (n_head, hd) = (3, 8);
    let rows = n_head * hd;
    let half = hd / 2;
    let mut gguf_holds = vec![0; rows];
    for h in 0..n_head {
        for a in 0..2 {
            for b in 0..half {
                gguf_holds[h * hd + 2 * b + a] = h * hd + a * half + b;
            }
        }
    }
    let src = unpermute_qk_rows(rows, n_head).unwrap();
    for (hf_row, &g) in src.iter().enumerate() {
        assert_eq!(gguf_holds[g], hf_row);
    }
    assert!(unpermute_qk_rows(10, 4).is_err());
    assert!(unpermute_qk_rows(12, 4).is_err()); // head_dim 3 is odd
}

/// xorshift64*, fixed seed: the same mutations on every run and target.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mini_fuzz_never_panics() {
    // Deterministic mutations of a valid file (byte flips, interesting values, truncations,
    // wrong file sizes): the parser must return Ok or a BadModelFile, never panic or ask for
    // more than the file holds.
    let seed = sample_file();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let interesting: [u64; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0xffff_ffff, u64::MAX, 1 << 62];
    let (mut ok, mut bad, mut more) = (0, 0, 0);
    for _ in 0..4000 {
        let mut b = seed.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len());
            match rng.below(4) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next() as u8,
                2 => {
                    let v = interesting[rng.below(interesting.len())].to_le_bytes();
                    let n = [1, 2, 4, 8][rng.below(4)];
                    for (i, x) in v.iter().take(n).enumerate() {
                        if at + i < b.len() {
                            b[at + i] = *x;
                        }
                    }
                }
                _ => b.truncate(at),
            }
        }
        let size = match rng.below(3) {
            0 => b.len() as u64,
            1 => b.len() as u64 + rng.below(1000) as u64,
            _ => u64::MAX,
        };
        let prefix = &b[..rng.below(b.len() + 1)];
        match parse_header("t.gguf", prefix, size) {
            Ok(Parsed::Header(h)) => {
                ok += 1;
                for t in &h.tensors {
                    assert!(t.offset + t.size <= size);
                }
                let _ = (h.hparams(), h.tokenizer(), h.rope_layout());
            }
            Ok(Parsed::NeedMore { bytes }) => {
                more += 1;
                assert!(bytes > prefix.len() as u64 && bytes <= size);
            }
            Err(Error::BadModelFile { .. }) => bad += 1,
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert!(ok > 50 && bad > 500 && more > 500, "ok {ok} bad {bad} more {more}");
}

#[test]
#[ignore = "writes the cargo-fuzz seed: cargo test --lib gguf::tests::write_fuzz_seed -- --ignored"]
fn write_fuzz_seed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gguf_header");
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = vec![0u8; 10];
    seed.extend(sample_file());
    std::fs::write(dir.join("sample"), seed).unwrap();
}
