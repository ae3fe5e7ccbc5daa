#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with .gl (Vulkan loader debs)
# and .bin (binaries built here: kjarni-bench, gpu-tests) carried:
#   bash scripts/device_bench.sh [FILTER]
# Writes everything under $OUT: tests.log, bench.json, bench.err, torch_*.json, and, when .dawn/
# and pkg/ are carried too, dawn/ (scripts/dawn_bench.sh: the npm package on Dawn beside native).
# Build the binaries first with scripts/build_device_bins.sh (and scripts/build_device_dawn.sh).
#   bash scripts/device_bench.sh --dawn
# runs only Dawn vs native (carry [".gl", ".bin/kjarni-bench", ".dawn", "pkg"]): $OUT/dawn/.
set -uo pipefail
out=${OUT:-out}
mkdir -p "$out"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
if [ "${1:-}" = "--dawn" ]; then
  bash scripts/dawn_bench.sh "$out/dawn"
  exit $?
fi
if [ -x .bin/gpu-tests ]; then
  ./.bin/gpu-tests --test-threads=1 --skip load:: --skip tokenizer:: --skip models:: --skip bert:: --skip llama:: > "$out/tests.log" 2>&1
  grep -E "test result|FAILED|panicked" "$out/tests.log" | head -20
fi
./.bin/kjarni-bench ${1:-} > "$out/bench.json" 2> "$out/bench.err"
echo "bench rc=$?"
tail -3 "$out/bench.err"
for py in scripts/bench_torch*.py; do
  [ -f "$py" ] || continue
  timeout 300 python3 "$py" > "$out/$(basename "$py" .py).json" 2> "$out/$(basename "$py" .py).err"
  echo "$py rc=$?"
done
if [ -f .dawn/node.xz ] && [ -f pkg/kjarni_web_bg.wasm ]; then
  bash scripts/dawn_bench.sh "$out/dawn" --once
  echo "dawn rc=$?"
fi
