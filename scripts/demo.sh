#!/usr/bin/env bash
# The chat demo from a fresh machine: set up the toolchain, download the default models
# (SmolLM2-135M-Instruct for chat, all-MiniLM-L6-v2 for embeddings), build the npm package into
# pkg/ (copied to www/pkg/), and serve www/ and models/ (HTTP Range) on localhost.
# Usage: scripts/demo.sh [PORT]   (default 8080; HOST=0.0.0.0 to listen on all interfaces)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
host=${HOST:-127.0.0.1}
bash scripts/setup.sh
bash scripts/fetch_models.sh
bash scripts/build_pkg.sh
echo
echo "Demo: http://localhost:$port/  (a browser with WebGPU: Chrome/Edge 113+; on Linux start Chrome with --enable-unsafe-webgpu)"
exec node scripts/serve.mjs --port "$port" --host "$host" /=www /models/=models
