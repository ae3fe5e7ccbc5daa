#!/usr/bin/env bash
# Dawn (Chrome's WebGPU, under node) beside wgpu native on whatever GPU Vulkan offers: writes into
# OUT_DIR native.json (kjarni-bench's decoder_/profile_decoder_/encoder_minilm_l6 cases), dawn.json
# (benches/dawn.mjs: the npm package on Dawn, same case names), dawn_run2.json (a second Dawn run,
# for run-to-run agreement) and dawn_vs_native.md (benches/dawn_compare.mjs), and prints the table.
#
# node and dawn.node come from .dawn/ (scripts/build_device_dawn.sh) when it exists — the GPU
# machine — or else from this machine (node on PATH, node_modules/webgpu). kjarni-bench is
# $KJARNI_BENCH, .bin/kjarni-bench or target/release/kjarni-bench (skipped when none exists).
# Called by scripts/device_bench.sh after the Vulkan set-up; here it runs on SwiftShader:
#   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json scripts/dawn_bench.sh OUT --quick
# Usage: [NATIVE_TIMEOUT=s] [DAWN_TIMEOUT=s] [DAWN_MODELS=a,b] [NATIVE_FILTER=f] scripts/dawn_bench.sh OUT_DIR [--quick] [--once]   (default 420 s each)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: dawn_bench.sh OUT_DIR [--quick] [--once]}
shift
quick=() runs=2
for a in "$@"; do
  case $a in
    --quick) quick=(--quick) ;;
    --once) runs=1 ;;
    *) echo "unknown argument $a" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=${DAWN_WORK:-$(mktemp -d)}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

node=node
dawn_dir=node_modules/webgpu
files=${KJARNI_MODELS:-models}
if [ -f .dawn/node.xz ]; then
  mkdir -p "$work/bin" "$work/webgpu/dist/linux-x64" "$work/files"
  xz -dc .dawn/node.xz > "$work/bin/node" && chmod +x "$work/bin/node"
  xz -dc .dawn/dawn.node.xz > "$work/webgpu/dist/linux-x64/dawn.node"
  [ -f .dawn/files.tar.xz ] && tar -xJf .dawn/files.tar.xz -C "$work/files"
  node=$work/bin/node
  dawn_dir=$work/webgpu
  files=$work/files
fi
"$node" --version > "$out/node_version.txt" 2>&1 || { echo "node does not run: $(cat "$out/node_version.txt")"; exit 1; }
[ -f pkg/kjarni_web_bg.wasm ] || { echo "pkg/ is missing: build it with scripts/build_pkg.sh (carry it)"; exit 1; }
models=$work/models
mkdir -p "$models"

if [ ${#quick[@]} -gt 0 ]; then
  list=tiny_decoder,tiny_encoder
  native_filter=none
else
  list=smollm2_135m,qwen2.5_0.5b,minilm_l6
  native_filter=decoder_smollm2_135m,decoder_qwen2.5_0.5b,profile_decoder_,profile_prefill_,encoder_minilm_l6
fi
# Overrides: DAWN_MODELS (benches/dawn_models.mjs names, e.g. qwen3_0.6b,gemma3_270m) and
# NATIVE_FILTER (kjarni-bench filter; `none` skips the native run).
list=${DAWN_MODELS:-$list}
native_filter=${NATIVE_FILTER:-$native_filter}
# The model directories first: kjarni-bench embeds the same MiniLM directory and sentences.
for m in ${list//,/ }; do
  "$node" benches/dawn_models.mjs "$m" "$models/$m" "$files" > /dev/null || { echo "generating $m failed"; exit 1; }
done

native=${KJARNI_BENCH:-}
[ -z "$native" ] && for b in .bin/kjarni-bench target/release/kjarni-bench; do [ -x "$b" ] && { native=$b; break; }; done
if [ -n "$native" ] && [ "$native_filter" != none ]; then
  echo "== native: $native $native_filter"
  KJARNI_BENCH_MODELS=$models timeout ${NATIVE_TIMEOUT:-420} "$native" "$native_filter" > "$out/native.json" 2> "$out/native.err"
  echo "native rc=$?"
  tail -2 "$out/native.err"
fi

rc=0
for r in $(seq 1 $runs); do
  name=dawn.json
  [ "$r" -gt 1 ] && name=dawn_run$r.json
  echo "== Dawn run $r: benches/dawn.mjs ${quick[*]} --models $list"
  timeout ${DAWN_TIMEOUT:-420} "$node" benches/dawn.mjs "${quick[@]}" --models "$list" --dawn "$dawn_dir" --files "$files" \
    --work "$models" --out "$out/$name" 2> "$out/${name%.json}.err"
  r_rc=$?
  echo "dawn run $r rc=$r_rc"
  [ $r_rc -ne 0 ] && { rc=$r_rc; tail -20 "$out/${name%.json}.err"; }
done
"$node" benches/dawn_compare.mjs "$out/native.json" "$out"/dawn.json "$out"/dawn_run*.json > "$out/dawn_vs_native.md" 2>&1
cat "$out/dawn_vs_native.md"
exit $rc
