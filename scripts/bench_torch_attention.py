#!/usr/bin/env python3
"""Reference timings for benches/attention.rs: torch scaled_dot_product_attention on CUDA.

Same shapes as the kjarni-bench attention cases:
  prefill  attention_{N}: batch 1, 32 heads, head_dim 128, causal, N in 512..16384
  decode   attention_decode_{L}k: 1 query token, 32 query heads over 8 KV heads, head_dim 128,
           L cached tokens (GQA read through enable_gqa, or a repeat when torch is older)
for bf16, f16 and f32 (our kernels compute in f32, so f32 is the like-for-like row; bf16/f16 show
what tensor-core flash attention reaches). Prints one JSON document on stdout.

Usage: python3 scripts/bench_torch_attention.py [--quick] [--filter attention_2048]
"""

import argparse
import json

import torch
import torch.nn.functional as F

HEADS, KV_HEADS, D = 32, 8, 128
PREFILL = [512, 2048, 4096, 8192, 16384]
DECODE = [1024, 8192, 32768]
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def time_us(fn, warmup, iters):
    """Median microseconds of fn() measured with CUDA events, one event pair per call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    times.sort()
    return times[len(times) // 2], times[0]


def sdpa_gqa(q, k, v):
    """Decode attention with grouped KV heads: native GQA where torch has it."""
    try:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    except TypeError:  # torch < 2.5
        rep = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--filter", default=None, help="only cases whose name contains this")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("CUDA is not available")
    warmup, iters = (2, 5) if args.quick else (5, 20)
    dev = torch.device("cuda")
    cases = []

    for n in PREFILL:
        name = f"attention_{n}"
        if args.filter and args.filter not in name:
            continue
        flops = 4.0 * n * n * D * HEADS / 2.0  # causal half, as in benches/attention.rs
        variants = []
        for dname, dtype in DTYPES.items():
            q, k, v = (torch.randn(1, HEADS, n, D, device=dev, dtype=dtype) for _ in range(3))
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            try:
                med, mn = time_us(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), warmup, iters)
            except torch.cuda.OutOfMemoryError as e:
                variants.append({"variant": f"torch_sdpa_{dname}", "error": str(e).splitlines()[0]})
                continue
            variants.append({
                "variant": f"torch_sdpa_{dname}",
                "median_us": round(med, 2),
                "min_us": round(mn, 2),
                "tflops": round(flops / (med * 1e6), 2),
                "peak_gpu_bytes": torch.cuda.max_memory_allocated(),
            })
            del q, k, v
            torch.cuda.empty_cache()
        cases.append({"case": name, "shape": {"seq": n, "heads": HEADS, "head_dim": D, "causal": True},
                      "variants": variants})

    for length in DECODE:
        for dname, dtype in DTYPES.items():
            name = f"attention_decode_{length // 1024}k_{dname}"
            if args.filter and args.filter not in name:
                continue
            q = torch.randn(1, HEADS, 1, D, device=dev, dtype=dtype)
            k = torch.randn(1, KV_HEADS, length, D, device=dev, dtype=dtype)
            v = torch.randn(1, KV_HEADS, length, D, device=dev, dtype=dtype)
            med, mn = time_us(lambda: sdpa_gqa(q, k, v), warmup * 5, iters * 5)
            cache_bytes = 2 * length * KV_HEADS * D * k.element_size()
            cases.append({
                "case": name,
                "shape": {"cache_len": length, "heads": HEADS, "kv_heads": KV_HEADS, "head_dim": D, "format": dname},
                "bytes": cache_bytes,
                "variants": [{
                    "variant": "torch_sdpa",
                    "median_us": round(med, 2),
                    "min_us": round(mn, 2),
                    "effective_gb_s": round(cache_bytes / (med * 1e3), 1),
                }],
            })
            del q, k, v

    print(json.dumps({
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cases": cases,
    }, indent=2))


if __name__ == "__main__":
    main()
