#!/usr/bin/env bash
# Build the npm package into pkg/: the wasm (wasm-pack, profile wasm-release, --target web), the hand-written
# ESM API (js/index.js, js/index.d.ts, js/worker.js), package.json and README.md; then copy it
# to www/pkg/ for the demo page.
# Usage: scripts/build_pkg.sh [--no-www]
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo profile: wasm-release (Cargo.toml: opt-level "z", fat LTO, one codegen unit; smaller
# than `release`, which the browser tests and native benches use). KJARNI_WASM_PROFILE=release
# builds with `release` instead: it reuses the browser tests' wasm32 dependencies (minutes less
# in CI) where the size does not matter.
profile=${KJARNI_WASM_PROFILE:-wasm-release}
if [ "$profile" = release ]; then profile_args=(--release); else profile_args=(--profile "$profile"); fi
# Two wasm modules (notes/structured.md): the core (kjarni_web_bg.wasm) without llguidance
# (--no-default-features: feature `structured` off), and the structured module
# (kjarni_structured_bg.wasm: the same crate with `structured-module`, exporting only the
# constraint classes), which the JS layer loads on the first constrained request.
export RUSTUP_TOOLCHAIN=${RUSTUP_TOOLCHAIN:-debian-web}
echo "== wasm-pack build ($profile, --target web, core without llguidance) -> pkg/"
wasm-pack build "${profile_args[@]}" --target web --out-dir pkg --no-pack -- --no-default-features
echo "== wasm-pack build ($profile, --target web, structured module) -> pkg/kjarni_structured*"
rm -rf target/structured-pkg
wasm-pack build "${profile_args[@]}" --target web --out-dir target/structured-pkg --out-name kjarni_structured \
  --no-pack -- --no-default-features --features structured-module
cp target/structured-pkg/kjarni_structured.js target/structured-pkg/kjarni_structured_bg.wasm pkg/
# Its typings without the `llg_*` exports that wasm-opt removes below.
grep -v 'readonly llg_' target/structured-pkg/kjarni_structured.d.ts > pkg/kjarni_structured.d.ts
# wasm-opt from the npm `binaryen` package (devDependency: `npm ci`; wasm-pack's own download
# of binaryen cannot work offline, so its wasm-opt step is off in Cargo.toml). -Oz drops the
# name section and shrinks the code: 1.65 → 1.51 MB gzipped (measured at the commit adding it).
wasm_opt=node_modules/.bin/wasm-opt
if [ -x "$wasm_opt" ]; then
  # The shipped profile gets a second -Oz pass (3.4 KB gzipped more off the core, a minute more
  # of build); KJARNI_WASM_PROFILE=release (CI's page tests) one pass.
  # --merge-similar-functions first (functions that differ only in constants become one with
  # parameters): 1.7 KB gzipped off the core, 1.5 KB off the structured module (measured with
  # `-Oz -Oz`; notes/structured.md, "Sizes").
  passes=(--merge-similar-functions -Oz)
  if [ "$profile" != release ]; then passes=(--merge-similar-functions -Oz -Oz); fi
  echo "== wasm-opt ${passes[*]} ($("$wasm_opt" --version))"
  for w in pkg/kjarni_web_bg.wasm pkg/kjarni_structured_bg.wasm; do
    before=$(stat -c %s "$w")
    # The structured module also exports llguidance's C API (its `#[no_mangle]` `llg_*`
    # functions: a cdylib exports those of its dependencies too), which nothing calls: removing
    # the exports lets -Oz drop the code behind them (27 KB gzipped, notes/structured.md).
    drop_exports=()
    if [ "$w" = pkg/kjarni_structured_bg.wasm ]; then
      drop_exports=(--remove-exports --pass-arg='remove-exports@llg_*')
    fi
    "$wasm_opt" "${drop_exports[@]}" "${passes[@]}" --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$w" -o "${w%.wasm}.opt.wasm"
    mv "${w%.wasm}.opt.wasm" "$w"
    echo "   $w: $before → $(stat -c %s "$w") bytes"
  done
elif [ "${KJARNI_NO_WASM_OPT:-}" != 1 ]; then
  echo "build_pkg: $wasm_opt not found: run 'npm ci' (binaryen), or set KJARNI_NO_WASM_OPT=1 to skip" >&2
  exit 1
fi
cp js/index.js js/request.js js/index.d.ts js/worker.js pkg/
cp js/README.md pkg/README.md
# Whole-line comments out of the shipped JS (6 KB gzipped of 26; index.d.ts and README.md keep
# the documentation).
node scripts/strip_js_comments.mjs pkg/index.js pkg/request.js pkg/worker.js pkg/kjarni_web.js pkg/kjarni_structured.js
rm -f pkg/.gitignore
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cat > pkg/package.json <<JSON
{
  "name": "kjarni-web",
  "version": "$version",
  "description": "Transformer inference on WebGPU (Rust + WGSL, compiled to WebAssembly): OpenAI-style chat completions and sentence embeddings in the browser.",
  "license": "MIT OR Apache-2.0",
  "repository": { "type": "git", "url": "https://github.com/kjarni/kjarni-web" },
  "type": "module",
  "main": "./index.js",
  "module": "./index.js",
  "types": "./index.d.ts",
  "exports": {
    ".": { "types": "./index.d.ts", "default": "./index.js" },
    "./worker.js": "./worker.js",
    "./raw": { "types": "./kjarni_web.d.ts", "default": "./kjarni_web.js" },
    "./kjarni_web_bg.wasm": "./kjarni_web_bg.wasm",
    "./kjarni_structured.js": "./kjarni_structured.js",
    "./kjarni_structured_bg.wasm": "./kjarni_structured_bg.wasm",
    "./package.json": "./package.json"
  },
  "files": ["index.js", "request.js", "index.d.ts", "worker.js", "kjarni_web.js", "kjarni_web.d.ts", "kjarni_web_bg.wasm", "kjarni_web_bg.wasm.d.ts", "kjarni_structured.js", "kjarni_structured.d.ts", "kjarni_structured_bg.wasm", "snippets/", "README.md"],
  "sideEffects": false,
  "keywords": ["webgpu", "wasm", "llm", "transformers", "embeddings", "inference", "openai"]
}
JSON
# What a page downloads (gzip -9, each file on its own): the wasm and the JS modules; the
# structured module only at the first constrained request.
gz() { local n=0 f; for f in "$@"; do n=$((n + $(gzip -9 -c "$f" | wc -c))); done; echo "$n"; }
wasm_gz=$(gz pkg/kjarni_web_bg.wasm)
js_gz=$(gz pkg/index.js pkg/request.js pkg/worker.js pkg/kjarni_web.js)
echo "== gzip -9: kjarni_web_bg.wasm $wasm_gz + JS $js_gz = $((wasm_gz + js_gz)) bytes"
st_gz=$(gz pkg/kjarni_structured_bg.wasm)
st_js_gz=$(gz pkg/kjarni_structured.js)
echo "== gzip -9, loaded lazily: kjarni_structured_bg.wasm $st_gz + JS $st_js_gz = $((st_gz + st_js_gz)) bytes"
if [ "${1:-}" != "--no-www" ]; then
  rm -rf www/pkg
  mkdir -p www/pkg
  cp -r pkg/index.js pkg/request.js pkg/index.d.ts pkg/worker.js pkg/kjarni_web.js pkg/kjarni_web.d.ts pkg/kjarni_web_bg.wasm \
    pkg/kjarni_structured.js pkg/kjarni_structured.d.ts pkg/kjarni_structured_bg.wasm pkg/snippets pkg/package.json www/pkg/
  echo "== pkg/ built and copied to www/pkg/"
fi
ls -l pkg/
