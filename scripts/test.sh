#!/usr/bin/env bash
# All tests: fetch the test models (idempotent), then the native tests (lavapipe or a real GPU)
# and the same GPU tests in headless Chromium. Extra arguments filter the native test names.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/fetch_models.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo test --lib --test gpu -- "$@"
TMPDIR=$(mktemp -d) RUSTUP_TOOLCHAIN=${RUSTUP_TOOLCHAIN:-debian-web} CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver} \
  wasm-pack test --headless --chrome --release -- --test gpu
