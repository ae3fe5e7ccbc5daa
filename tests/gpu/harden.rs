//! Unhappy paths (issue 19): hostile model files, bad arguments, broken numbers. Each test
//! failed (or hung) before its fix.

use crate::common::gpu;
use kjarni_web::generate::{generate, CancelToken, GenerateOptions, SamplingParams};
use kjarni_web::load::{load_safetensors, ByteSource, LoadOptions, MemorySource, RangeReader};
use kjarni_web::models::llama::{Llama, LlamaOptions};
use kjarni_web::Error;

fn st_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// The tiny Llama 3 fixture with its final norm weight set to NaN (bf16 0x7FC0), so every logit
/// is NaN (`nan` false: the unchanged fixture).
fn tiny_llama(nan: bool) -> MemorySource {
    let mut w = include_bytes!("../fixtures/tiny/llama3/model.safetensors").to_vec();
    if nan {
        let n = u64::from_le_bytes(w[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&w[8..8 + n]).unwrap();
        let off = &header["model.norm.weight"]["data_offsets"];
        let (a, b) = (off[0].as_u64().unwrap() as usize, off[1].as_u64().unwrap() as usize);
        for c in w[8 + n + a..8 + n + b].chunks_exact_mut(2) {
            c.copy_from_slice(&0x7FC0u16.to_le_bytes());
        }
    }
    let mut s = MemorySource::new();
    s.insert(
        "config.json",
        include_bytes!("../fixtures/tiny/llama3/config.json").to_vec(),
    )
    .insert("model.safetensors", w);
    s
}

gpu_test!(nan_logits_are_bad_data_naming_the_step, async {
    let gpu = gpu().await;
    let mut m = Llama::load(&gpu, &tiny_llama(true), &LlamaOptions::default(), &mut |_| {})
        .await
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 10,
        ..Default::default()
    };
    let r = generate(
        &mut m,
        &gpu,
        |ids: &[u32]| Ok(format!("{ids:?}")),
        &[1, 2],
        &opts,
        &CancelToken::new(),
        &mut |_| {},
    )
    .await;
    match r {
        Err(e @ Error::Data { .. }) => assert!(e.to_string().contains("step 0"), "{e}"),
        other => panic!("expected BAD_DATA, got {other:?}"),
    }
});

gpu_test!(nan_temperature_is_an_invalid_argument, async {
    let gpu = gpu().await;
    let mut m = Llama::load(&gpu, &tiny_llama(false), &LlamaOptions::default(), &mut |_| {})
        .await
        .unwrap();
    let opts = GenerateOptions {
        sampling: SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        },
        max_tokens: 2,
        ..Default::default()
    };
    let r = generate(
        &mut m,
        &gpu,
        |_: &[u32]| Ok(String::new()),
        &[1],
        &opts,
        &CancelToken::new(),
        &mut |_| {},
    )
    .await;
    assert!(
        matches!(&r, Err(Error::InvalidArgument { field, .. }) if field == "temperature"),
        "{r:?}"
    );
    let opts = GenerateOptions {
        stop: vec![String::new()],
        max_tokens: 2,
        ..Default::default()
    };
    let r = generate(
        &mut m,
        &gpu,
        |_: &[u32]| Ok(String::new()),
        &[1],
        &opts,
        &CancelToken::new(),
        &mut |_| {},
    )
    .await;
    assert!(
        matches!(&r, Err(Error::InvalidArgument { field, .. }) if field == "stop[0]"),
        "{r:?}"
    );
});

gpu_test!(unknown_length_allocates_while_streaming, async {
    // A header promising 2 × 32 MiB from a server that sends no length and only a few bytes:
    // nothing but the first tensor may be allocated before the data runs out.
    let gpu = gpu().await;
    let big = 32u64 << 20;
    let header = format!(
        r#"{{"a":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{big}]}},"b":{{"dtype":"F32","shape":[{n}],"data_offsets":[{big},{}]}}}}"#,
        2 * big,
        n = big / 4
    );
    let mut src = MemorySource::new();
    src.insert("m.safetensors", st_file(&header, &[1; 64]));
    let src = src.with_hidden_len();
    gpu.reset_peak_memory();
    let before = gpu.memory();
    let r = load_safetensors(&gpu, &src, "m.safetensors", &LoadOptions::default(), &mut |_| {}).await;
    assert!(
        matches!(&r, Err(Error::BadModelFile { detail, .. }) if detail.contains("inside tensor 'a'")),
        "{r:?}"
    );
    let after = gpu.memory();
    assert!(
        after.peak_bytes < before.live_bytes + big + (1 << 20),
        "peak {} before {}",
        after.peak_bytes,
        before.live_bytes
    );
    assert_eq!(after.live_bytes, before.live_bytes, "freed");
});

/// A safetensors file whose one tensor sits after a hole of exactly 4 GiB (zeros made on the
/// fly): on wasm32 the hole's length truncated to a usize of 0 and the loader spun forever.
#[derive(Clone)]
struct HoleSource {
    head: Vec<u8>,
    len: u64,
}

struct HoleReader {
    src: HoleSource,
    pos: u64,
    end: u64,
}

impl ByteSource for HoleSource {
    type Reader = HoleReader;
    fn locate(&self, file: &str) -> String {
        format!("hole:{file}")
    }
    async fn open(&self, _file: &str, start: u64, end: Option<u64>) -> kjarni_web::Result<HoleReader> {
        let end = end.unwrap_or(self.len).min(self.len);
        Ok(HoleReader {
            src: self.clone(),
            pos: start.min(end),
            end,
        })
    }
}

impl RangeReader for HoleReader {
    fn file_len(&self) -> Option<u64> {
        Some(self.src.len)
    }
    async fn fill(&mut self, buf: &mut [u8]) -> kjarni_web::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        let (head, tail) = (self.src.head.len() as u64, self.src.len - 16);
        let mut i = 0;
        while i < n {
            let at = self.pos + i as u64;
            // Runs of the same kind: the header's bytes, zeros, then the tensor's 16 bytes.
            let (run, byte) = if at < head {
                ((head - at) as usize, None)
            } else if at < tail {
                ((tail - at).min(usize::MAX as u64) as usize, Some(0u8))
            } else {
                (usize::MAX, Some(0x3f))
            };
            let k = run.min(n - i);
            match byte {
                None => buf[i..i + k].copy_from_slice(&self.src.head[at as usize..at as usize + k]),
                Some(b) => buf[i..i + k].fill(b),
            }
            i += k;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

gpu_test!(a_four_gib_hole_is_streamed_in_u64, async {
    let gpu = gpu().await;
    let hole = 4u64 << 30;
    let header = format!(
        r#"{{"t":{{"dtype":"F32","shape":[4],"data_offsets":[{hole},{}]}}}}"#,
        hole + 16
    );
    let head = st_file(&header, &[]);
    let src = HoleSource {
        len: head.len() as u64 + hole + 16,
        head,
    };
    let opts = LoadOptions {
        staging_bytes: 16 << 20,
        ..LoadOptions::default()
    };
    let w = load_safetensors(&gpu, &src, "m.safetensors", &opts, &mut |_| {})
        .await
        .unwrap();
    let v = w.get("t").unwrap().to_f32_vec(&gpu).await.unwrap();
    assert_eq!(v.len(), 4);
});

gpu_test!(gguf_loads_check_the_memory_estimate_first, async {
    use kjarni_web::load::estimate::DeviceLimits;
    use kjarni_web::models::gguf::{load_llama_gguf, GgufOptions};
    use kjarni_web::models::llama::LlamaOptions;
    let gpu = gpu().await;
    let src = crate::gguf::gguf_dir().await;
    let opts = LlamaOptions {
        max_context: 256,
        ..Default::default()
    };
    let gguf = GgufOptions {
        limits: Some(DeviceLimits::of(&gpu, Some(20 << 20))),
        ..Default::default()
    };
    let before = gpu.memory().live_bytes;
    let mut reports = 0;
    let r = load_llama_gguf(&gpu, &src, crate::gguf::GGUF_FILE, &opts, &gguf, &mut |_| reports += 1).await;
    assert!(matches!(&r, Err(Error::ModelTooLarge { .. })), "{:?}", r.as_ref().err());
    assert_eq!(reports, 0, "refused before any weight was read");
    assert_eq!(gpu.memory().live_bytes, before);
});
