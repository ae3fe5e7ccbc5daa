#!/usr/bin/env bash
# Build the x86-64 binaries the GPU machine runs (it has no Rust toolchain) into .bin/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .bin
cargo build --release --features bench --bin kjarni-bench
cp target/release/kjarni-bench .bin/
exe=$(cargo test --release --test gpu --no-run --message-format=json 2>/dev/null |
  python3 -c "import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get('reason') == 'compiler-artifact' and m.get('executable') and m['target']['name'] == 'gpu':
        print(m['executable'])")
cp "$exe" .bin/gpu-tests
ls -la .bin
