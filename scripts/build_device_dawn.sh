#!/usr/bin/env bash
# Prepare the Dawn benchmark (benches/dawn.mjs) for the GPU machine, which has neither node nor
# npm: the ignored .dawn/ gets node and Dawn's dawn.node (from the `webgpu` dev dependency),
# xz-compressed, and the real config/tokenizer files of SmolLM2 and MiniLM (no weights: those
# are generated there); pkg/ is built (scripts/build_pkg.sh) unless --no-pkg.
# Then carry [".gl", ".bin/kjarni-bench", ".dawn", "pkg"] and run scripts/device_bench.sh --dawn
# (README, "Benchmarks").
# Usage: scripts/build_device_dawn.sh [--no-pkg]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/webgpu/dist/linux-x64/dawn.node ]; then
  npm ci --no-audit --no-fund
fi
if [ "${1:-}" != "--no-pkg" ]; then
  bash scripts/build_pkg.sh --no-www
fi
[ -f pkg/kjarni_web_bg.wasm ] || { echo "pkg/ is not built (scripts/build_pkg.sh)" >&2; exit 1; }
mkdir -p .dawn
node_bin=$(readlink -f "$(command -v node)")
echo "== .dawn/node.xz from $node_bin ($(node --version))"
xz -T2 -6 -c "$node_bin" > .dawn/node.xz
echo "== .dawn/dawn.node.xz (webgpu $(node -p "require('./node_modules/webgpu/package.json').version"))"
xz -T2 -6 -c node_modules/webgpu/dist/linux-x64/dawn.node > .dawn/dawn.node.xz
models=${KJARNI_MODELS:-models}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for d in SmolLM2-135M-Instruct all-MiniLM-L6-v2; do
  if [ -f "$models/$d/tokenizer.json" ]; then
    mkdir -p "$stage/$d"
    find "$models/$d" -maxdepth 1 -type f \( -name '*.json' -o -name '*.jinja' -o -name 'vocab.txt' \) -exec cp {} "$stage/$d/" \;
  else
    echo "note: $models/$d has no tokenizer.json: the device run generates a tokenizer for it" >&2
  fi
done
tar -cJf .dawn/files.tar.xz -C "$stage" .
du -sh .dawn/* pkg
echo "== ready: carry [\".gl\", \".bin/kjarni-bench\", \".dawn\", \"pkg\"], run: bash scripts/device_bench.sh --dawn"
