#!/usr/bin/env bash
# Build the wasm package and serve the demo page on localhost.
# Usage: scripts/demo.sh [PORT]   (default 8080)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
bash scripts/setup.sh
echo "== wasm-pack build (release, --target web) -> www/pkg"
RUSTUP_TOOLCHAIN=debian-web wasm-pack build --release --target web --out-dir www/pkg --no-pack
echo
echo "Demo: http://localhost:$port/  (open in a browser with WebGPU; on Linux Chromium needs --enable-unsafe-webgpu)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory www
