#!/usr/bin/env python3
"""PyTorch reference timings for the Kernels II benchmark shapes (benches/gemv.rs, matmul.rs, ffn.rs), on CUDA.

    python3 scripts/bench_torch.py [--iters 200] [--quick] > torch_kernels2.json

Times bf16 matvec as F.linear(x[1, K], W[N, K]) (cuBLAS GEMV, what a decode step does), bf16 matmul
F.linear(X[M, K], W[N, K]) at the matmul shapes, and the SwiGLU decode projection
silu(F.linear(x, Wg)) * F.linear(x, Wu). Like the Rust benchmark, weights rotate over enough
copies to exceed the L2 cache, so every call reads its weights from DRAM. Prints JSON.
"""

import argparse
import json
import math

import torch
import torch.nn.functional as F

L2_DEFEAT_BYTES = 160 << 20


def copies_for(nbytes, cap):
    return max(1, min(cap, math.ceil(L2_DEFEAT_BYTES / nbytes)))


def time_us(fn, n_copies, iters, warmup=10):
    """Mean microseconds per call over `iters` calls between two CUDA events, after warm-up."""
    for i in range(warmup):
        fn(i % n_copies)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(iters):
        fn(i % n_copies)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / iters


def weights(n, k, count, dtype=torch.bfloat16):
    return [(torch.rand(n, k, device="cuda", dtype=torch.float32) * 0.1 - 0.05).to(dtype) for _ in range(count)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="few iterations, one weight copy")
    args = ap.parse_args()
    iters = 10 if args.quick else args.iters
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    cases = []

    # GEMV: W is [N, K] (N outputs, K inputs), x is [1, K], in bf16 (and f16 / f32 for 4096^2).
    gemv_shapes = [
        ("bf16", 4096, 4096),
        ("bf16", 4096, 14336),  # N = 4096 outputs, K = 14336 inputs (down_proj)
        ("bf16", 14336, 4096),  # N = 14336 outputs, K = 4096 inputs (gate / up)
        ("bf16", 4096, 4095),
        ("bf16", 4096, 4097),
        ("f16", 4096, 4096),
        ("f32", 4096, 4096),
        ("bf16", 1536, 576),
    ]
    dtypes = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
    for name, n, k in gemv_shapes:
        dt = dtypes[name]
        nbytes = n * k * torch.tensor([], dtype=dt).element_size()
        count = 1 if args.quick else copies_for(nbytes, 64)
        ws = weights(n, k, count, dt)
        x = torch.randn(1, k, device="cuda", dtype=dt)
        us = time_us(lambda i: F.linear(x, ws[i]), count, iters)
        cases.append({
            "case": f"gemv_{name}_n{n}_k{k}",
            "shape": {"n": n, "k": k, "dtype": name, "weight_copies": count},
            "mean_us": round(us, 2),
            "effective_gb_s": round(nbytes / (us * 1e3), 1),
        })
        del ws

    # Matmul: X [M, K] bf16 times W^T, W [N, K] bf16, fp32 accumulation (cuBLAS, tensor cores).
    n, k = 4096, 4096
    for m in [1, 16, 128, 2048]:
        count = 1 if args.quick else copies_for(n * k * 2, 8)
        ws = weights(n, k, count)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        flops = 2 * m * n * k
        us = time_us(lambda i: F.linear(x, ws[i]), count, iters if m < 2048 else max(10, iters // 10))
        cases.append({
            "case": f"matmul_bf16_m{m}_n{n}_k{k}",
            "shape": {"m": m, "n": n, "k": k, "dtype": "bf16", "weight_copies": count},
            "mean_us": round(us, 2),
            "tflops": round(flops / (us * 1e6), 2),
        })
        # The same in f32 without tensor cores (TF32 off): the ceiling our f32-FMA WGSL kernel faces.
        if m == 2048:
            torch.backends.cuda.matmul.allow_tf32 = False
            xf = x.float()
            wf = [w.float() for w in ws[:1]]
            us = time_us(lambda i: F.linear(xf, wf[0]), 1, max(10, iters // 10))
            cases.append({
                "case": f"matmul_f32_notf32_m{m}_n{n}_k{k}",
                "shape": {"m": m, "n": n, "k": k, "dtype": "f32"},
                "mean_us": round(us, 2),
                "tflops": round(flops / (us * 1e6), 2),
            })
            del xf, wf
        del ws

    # SwiGLU decode: hidden K -> intermediate N, gate and up [N, K].
    for k, n in [(576, 1536), (4096, 14336)]:
        count = 1 if args.quick else copies_for(2 * n * k * 2, 64)
        gs = weights(n, k, count)
        ups = weights(n, k, count)
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        us = time_us(lambda i: F.silu(F.linear(x, gs[i])) * F.linear(x, ups[i]), count, iters)
        cases.append({
            "case": f"swiglu_bf16_k{k}_n{n}",
            "shape": {"k": k, "n": n, "dtype": "bf16", "weight_copies": count},
            "mean_us": round(us, 2),
            "effective_gb_s": round(2 * n * k * 2 / (us * 1e3), 1),
        })
        del gs, ups

    print(json.dumps({
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cases": cases,
    }, indent=2))


if __name__ == "__main__":
    main()
