#!/usr/bin/env bash
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .bin/kb.xz > /tmp/kb; chmod +x /tmp/kb; export KJARNI_BENCH=/tmp/kb
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
mkdir -p /tmp/r
t0=$(date +%s)
NATIVE_FILTER=decoder_smollm2_135m,decoder_qwen2.5_0.5b,decoder_qwen3_0.6b,decoder_gemma3_270m,profile_decoder_,profile_prefill_,encoder_minilm_l6 \
DAWN_MODELS=smollm2_135m,qwen2.5_0.5b,qwen3_0.6b,gemma3_270m,minilm_l6 NATIVE_TIMEOUT=200 DAWN_TIMEOUT=220 \
  bash scripts/dawn_bench.sh /tmp/r/d1 --once
echo "T d1 $(( $(date +%s) - t0 ))"
tar -cJf "$OUT/r1.tar.xz" -C /tmp/r .
NATIVE_FILTER=none DAWN_MODELS=smollm2_135m,qwen2.5_0.5b DAWN_TIMEOUT=110 bash scripts/dawn_bench.sh /tmp/r/d2 --once
echo "T d2 $(( $(date +%s) - t0 ))"
KJARNI_BENCH_TOKENIZER=models/SmolLM2-135M-Instruct timeout 100 /tmp/kb decode_driver_,sample_top_k,structured_smollm2 > /tmp/r/driver.json 2> /tmp/r/driver.err
echo "T drv $(( $(date +%s) - t0 ))"
tar -cJf "$OUT/r1.tar.xz" -C /tmp/r .
