//! Attention: Flash Attention 2 prefill against the unfused baseline (N x N scores), and
//! flash-decoding over f32 / f16 / int8 KV caches.
//!
//! Prefill `attention_{N}`: 32 heads, head_dim 128, causal, batch 1. TFLOPS count the causal
//! half: 4 · N² · d · heads / 2. Peak GPU memory of each variant comes from the runtime's
//! accounting (inputs included). The unfused baseline is skipped, and the reason reported, when
//! its `heads · N²` f32 score buffer exceeds maxStorageBufferBindingSize or 8 GiB.
//!
//! Decode `attention_decode_{L}_{format}`: 32 query heads over 8 KV heads (GQA 4, Llama-3-8B),
//! head_dim 128, one new token against L cached tokens; GB/s count the cache bytes read (K, V and
//! int8 scales). The split chosen by the op runs beside the largest chunk (fewest workgroups).

use crate::harness::{time_op, Args, Report};
use kjarni_web::ops::attention::{self, AttentionOptions, DecodeOptions, DecodeScratch, DecodeTiles, FlashTiles, Kv};
use kjarni_web::ops::kv_cache::{KvCache, KvDType};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

const HEADS: usize = 32;
const D: usize = 128;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for n in [512usize, 2048, 4096, 8192, 16384] {
        let case = format!("attention_{n}");
        if args.wants(&case) {
            prefill(gpu, args, report, &case, n).await?;
        }
    }
    for (model, heads, kv_heads) in [("smollm2", 9usize, 3usize), ("qwen2.5", 14, 2)] {
        for len in [48usize, 128, 256, 512] {
            let case = format!("attention_decode_small_{model}_{len}");
            if args.wants(&case) {
                decode_small(gpu, args, report, &case, len, heads, kv_heads).await?;
            }
        }
    }
    for len in [1024usize, 8192, 32768] {
        for dtype in [KvDType::F32, KvDType::F16, KvDType::Int8] {
            let case = format!("attention_decode_{}k_{}", len / 1024, dtype.name());
            if args.wants(&case) {
                decode(gpu, args, report, &case, len, dtype).await?;
            }
        }
    }
    Ok(())
}

async fn prefill(gpu: &Gpu, args: &Args, report: &mut Report, case: &str, n: usize) -> Result<()> {
    let shape = [1, n, HEADS, D];
    let numel = n * HEADS * D;
    let q = GpuTensor::from_f32(gpu, "q", &shape, DType::F32, &cpu::random(numel, 1, -1.0, 1.0))?;
    let k = GpuTensor::from_f32(gpu, "k", &shape, DType::F32, &cpu::random(numel, 2, -1.0, 1.0))?;
    let v = GpuTensor::from_f32(gpu, "v", &shape, DType::F32, &cpu::random(numel, 3, -1.0, 1.0))?;
    let out = GpuTensor::zeros(gpu, "out", &shape, DType::F32)?;
    let opts = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let inner = if args.quick || n >= 8192 { 1 } else { 3 };
    let mut timings = Vec::new();
    let mut peaks = serde_json::Map::new();

    gpu.sync().await?;
    gpu.reset_peak_memory();
    timings.push(
        time_op(gpu, args, "flash", inner, |b| {
            attention::flash_prefill(gpu, b, &q, Kv::F32 { k: &k, v: &v }, &out, &opts)
        })
        .await?,
    );
    peaks.insert("flash".into(), json!(gpu.memory().peak_bytes));
    // The browser's 32 KiB tiles beside the device's choice (autotuning data for the lead).
    let chosen = FlashTiles::choose(gpu.caps(), D as u32)?;
    let small = FlashTiles {
        br: 64,
        bc: 64,
        dk: 16,
        vk: 16,
    };
    if chosen != small {
        let name = "flash_tiles_64x64_dk16";
        timings.push(
            time_op(gpu, args, name, inner, |b| {
                attention::flash_prefill_with(gpu, b, &q, Kv::F32 { k: &k, v: &v }, &out, &opts, small)
            })
            .await?,
        );
    }

    let scores_bytes = (HEADS * n * n * 4) as u64;
    let limit = gpu.caps().max_storage_binding.min(8 << 30);
    let mut skipped = None;
    if scores_bytes > limit {
        skipped = Some(format!(
            "unfused skipped: its {:.2} GiB score buffer exceeds {:.2} GiB (min of maxStorageBufferBindingSize and 8 GiB)",
            scores_bytes as f64 / (1u64 << 30) as f64,
            limit as f64 / (1u64 << 30) as f64
        ));
    } else {
        gpu.reset_peak_memory();
        let scores = GpuTensor::zeros(gpu, "scores", &[HEADS * n * n], DType::F32)?;
        timings.push(
            time_op(gpu, args, "unfused", inner, |b| {
                attention::unfused(gpu, b, &q, &k, &v, &out, &scores, &opts)
            })
            .await?,
        );
        peaks.insert("unfused".into(), json!(gpu.memory().peak_bytes));
    }
    let flops = 4.0 * (n * n * D * HEADS) as f64 / 2.0;
    let bytes = (4 * numel * 4) as f64;
    let baseline = if skipped.is_some() { "flash" } else { "unfused" };
    report.add(
        case,
        json!({"seq": n, "heads": HEADS, "head_dim": D, "causal": true}),
        bytes,
        flops,
        baseline,
        &timings,
    );
    report.annotate("peak_gpu_bytes", json!(peaks));
    report.annotate("flash_tiles", json!(format!("{chosen:?}")));
    if let Some(why) = skipped {
        report.annotate("skipped", json!(why));
    }
    Ok(())
}

async fn decode(gpu: &Gpu, args: &Args, report: &mut Report, case: &str, len: usize, dtype: KvDType) -> Result<()> {
    const KV_HEADS: usize = 8;
    let mut cache = KvCache::new(gpu, "cache", len, KV_HEADS, D, dtype)?;
    // Fill in blocks of up to 4096 tokens from one random block.
    let block = len.min(4096);
    let kv_shape = [block, KV_HEADS, D];
    let kn = GpuTensor::from_f32(
        gpu,
        "k_new",
        &kv_shape,
        DType::F32,
        &cpu::random(block * KV_HEADS * D, 4, -1.0, 1.0),
    )?;
    let vn = GpuTensor::from_f32(
        gpu,
        "v_new",
        &kv_shape,
        DType::F32,
        &cpu::random(block * KV_HEADS * D, 5, -1.0, 1.0),
    )?;
    while cache.len() < len {
        let mut batch = gpu.batch();
        cache.append(gpu, &mut batch, &kn, &vn, None)?;
        gpu.submit(batch)?;
    }
    gpu.sync().await?;
    let q = GpuTensor::from_f32(gpu, "q", &[HEADS, D], DType::F32, &cpu::random(HEADS * D, 6, -1.0, 1.0))?;
    let out = GpuTensor::zeros(gpu, "out", &[HEADS, D], DType::F32)?;
    let scratch = DecodeScratch::new(gpu, HEADS, D, len)?;
    let inner = if args.quick { 2 } else { 20 };
    let max_chunk = DecodeTiles::choose(gpu.caps(), (HEADS / KV_HEADS) as u32, D as u32)?.max_chunk() as usize;
    let mut timings = Vec::new();
    let auto = DecodeOptions::default();
    timings.push(
        time_op(gpu, args, "split_auto", inner, |b| {
            attention::decode(gpu, b, &q, &cache, &out, &scratch, &auto)
        })
        .await?,
    );
    let widest = DecodeOptions {
        chunk: Some(max_chunk),
        ..Default::default()
    };
    timings.push(
        time_op(gpu, args, &format!("chunk_{max_chunk}"), inner, |b| {
            attention::decode(gpu, b, &q, &cache, &out, &scratch, &widest)
        })
        .await?,
    );
    let elem_bytes = match dtype {
        KvDType::F32 => 4.0,
        KvDType::F16 => 2.0,
        KvDType::Int8 => 1.0 + 2.0 / D as f64,
    };
    let bytes = 2.0 * (len * KV_HEADS * D) as f64 * elem_bytes;
    let flops = 4.0 * (len * HEADS * D) as f64;
    report.add(
        case,
        json!({"cache_len": len, "heads": HEADS, "kv_heads": KV_HEADS, "head_dim": D, "format": dtype.name()}),
        bytes,
        flops,
        &format!("chunk_{max_chunk}"),
        &timings,
    );
    report.annotate("cache_bytes", json!(cache.bytes()));
    Ok(())
}

/// Decode attention of a small model (head_dim 64, f16 cache): the whole cache as one chunk (one
/// dispatch, what `attention::decode` does while the cache fits the score buffer) beside the
/// split rule with its merge (two dispatches): where does the split start to pay?
#[allow(clippy::too_many_arguments)]
async fn decode_small(
    gpu: &Gpu,
    args: &Args,
    report: &mut Report,
    case: &str,
    len: usize,
    heads: usize,
    kv_heads: usize,
) -> Result<()> {
    const HD: usize = 64;
    let mut cache = KvCache::new(gpu, "cache", len, kv_heads, HD, KvDType::F16)?;
    let kv_shape = [len, kv_heads, HD];
    let kn = GpuTensor::from_f32(
        gpu,
        "k_new",
        &kv_shape,
        DType::F32,
        &cpu::random(len * kv_heads * HD, 4, -1.0, 1.0),
    )?;
    let vn = GpuTensor::from_f32(
        gpu,
        "v_new",
        &kv_shape,
        DType::F32,
        &cpu::random(len * kv_heads * HD, 5, -1.0, 1.0),
    )?;
    let mut batch = gpu.batch();
    cache.append(gpu, &mut batch, &kn, &vn, None)?;
    gpu.submit(batch)?;
    gpu.sync().await?;
    let q = GpuTensor::from_f32(
        gpu,
        "q",
        &[heads, HD],
        DType::F32,
        &cpu::random(heads * HD, 6, -1.0, 1.0),
    )?;
    let out = GpuTensor::zeros(gpu, "out", &[heads, HD], DType::F32)?;
    let scratch = DecodeScratch::new(gpu, heads, HD, len)?;
    let inner = if args.quick { 2 } else { 20 };
    let mut timings = Vec::new();
    let single = DecodeOptions {
        chunk: Some(len),
        ..Default::default()
    };
    timings.push(
        time_op(gpu, args, "one_chunk", inner, |b| {
            attention::decode(gpu, b, &q, &cache, &out, &scratch, &single)
        })
        .await?,
    );
    // What `attention::decode` records by default at one chunk (decode_single), and the
    // single-chunk decode_partial shape it replaced.
    for (name, partial_only) in [("single_default", false), ("single_partial_only", true)] {
        let o = DecodeOptions {
            partial_only,
            ..Default::default()
        };
        timings.push(
            time_op(gpu, args, name, inner, |b| {
                attention::decode(gpu, b, &q, &cache, &out, &scratch, &o)
            })
            .await?,
        );
    }
    let split_at = attention::split_chunk_for(gpu, heads, &cache)?;
    let split = DecodeOptions {
        chunk: Some(split_at),
        ..Default::default()
    };
    timings.push(
        time_op(gpu, args, "split_merge", inner, |b| {
            attention::decode(gpu, b, &q, &cache, &out, &scratch, &split)
        })
        .await?,
    );
    let bytes = 2.0 * (len * kv_heads * HD) as f64 * 2.0;
    let flops = 4.0 * (len * heads * HD) as f64;
    report.add(
        case,
        json!({"cache_len": len, "heads": heads, "kv_heads": kv_heads, "head_dim": HD, "format": "f16", "split_chunk": split_at}),
        bytes,
        flops,
        "split_merge",
        &timings,
    );
    Ok(())
}
