#!/usr/bin/env node
// The npm package (pkg/, scripts/build_pkg.sh) on Dawn — Chrome's WebGPU implementation, from the
// `webgpu` npm package (dawn.node) — under node, with no browser: the same measurement as the
// demo's Benchmark tab (www/bench.js), on model directories of the real shapes with random weights
// (benches/dawn_models.mjs) served over HTTP by scripts/serve.mjs on 127.0.0.1. Prints a JSON
// report whose cases have kjarni-bench's names (decoder_smollm2_135m, …) and a summary on stderr.
//
//   node benches/dawn.mjs [--quick] [--models smollm2_135m,qwen2.5_0.5b,minilm_l6]
//        [--pkg pkg] [--dawn DIR holding dist/linux-x64/dawn.node (default: node_modules/webgpu)]
//        [--files DIR with <model>/config.json + tokenizer files] [--work DIR for the models]
//        [--out FILE] [--kv f16,int8] [--dawn-flag TOGGLE …]
//
// Exit status 1 when any case failed (the report still lists the others) or, with --quick (the
// smoke run of scripts/test.sh), when a figure is missing or not positive.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { serveStatic } from '../scripts/serve.mjs';
import { ensureModel, SHAPES } from './dawn_models.mjs';
import { benchDecoder, benchEncoder, profileCase, summary } from '../www/bench.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function parseArgs(argv) {
  const a = { quick: false, models: null, pkg: join(root, 'pkg'), dawn: null, files: null, work: null, out: null, kv: null, dawnFlags: [] };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--quick') a.quick = true;
    else if (k === '--models') a.models = v().split(',').filter(Boolean);
    else if (k === '--pkg') a.pkg = resolve(v());
    else if (k === '--dawn') a.dawn = resolve(v());
    else if (k === '--files') a.files = resolve(v());
    else if (k === '--work') a.work = resolve(v());
    else if (k === '--out') a.out = resolve(v());
    else if (k === '--kv') a.kv = v().split(',').filter(Boolean);
    else if (k === '--dawn-flag') a.dawnFlags.push(v());
    else throw new Error(`unknown argument ${k}`);
  }
  a.models ??= a.quick ? ['tiny_decoder', 'tiny_encoder'] : ['smollm2_135m', 'qwen2.5_0.5b', 'minilm_l6'];
  a.kv ??= a.quick ? ['f16'] : ['f16', 'int8'];
  a.work ??= join(tmpdir(), 'kjarni-dawn-models');
  return a;
}

const log = (...m) => console.error(...m);

/** Dawn's `create` and globals from `dir/dist/<platform>-<arch>/dawn.node`. */
function loadDawn(dir) {
  const base = dir ?? dirname(require.resolve('webgpu/package.json'));
  const arch = process.platform === 'darwin' ? 'universal' : process.arch;
  const path = join(base, 'dist', `${process.platform}-${arch}`, 'dawn.node');
  return { path, ...require(path) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const dawn = loadDawn(args.dawn);
  // What a page has and node lacks: the WebGPU globals, navigator.gpu, and a `Window` global
  // (wgpu's browser backend looks for Window or WorkerGlobalScope before reading navigator.gpu).
  Object.assign(globalThis, dawn.globals);
  globalThis.Window ??= class Window {};
  // Timestamps unquantised: per-kernel times of a few µs are the point of the profile (Chrome
  // clears the low 16 bits of the ns count unless its WebGPU developer features are on).
  const flags = ['backend=vulkan', 'disable-dawn-features=timestamp_quantization', ...args.dawnFlags];
  const gpu = dawn.create(flags);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: `node ${process.version} + Dawn` }, configurable: true });
  const pkg = await import(pathToFileURL(join(args.pkg, 'index.js')).href);
  await pkg.initialize(readFileSync(join(args.pkg, 'kjarni_web_bg.wasm')));

  const report = {
    engine: 'kjarni-web npm package on Dawn (node)',
    node: process.version,
    dawn: { dawn_node: dawn.path, flags },
    quick: args.quick,
    adapter: null,
    backend: null,
    variants_chosen: null,
    cases: [],
  };
  const caps = await pkg.capabilities();
  Object.assign(report, { adapter: caps.adapter, backend: caps.backend, driver: caps.driver, variants_chosen: caps.variants, capabilities: caps });
  log(`adapter: ${caps.adapter} (${caps.backend}); subgroups ${caps.subgroups}, f16 ${caps.f16}, timestamps ${caps.timestamps}; variants ${JSON.stringify(caps.variants)}`);

  mkdirSync(args.work, { recursive: true });
  const server = await serveStatic({ '/': args.work });
  let failed = 0;
  try {
    for (const name of args.models) {
      const shape = SHAPES[name];
      if (!shape) throw new Error(`unknown model '${name}' (known: ${Object.keys(SHAPES).join(', ')})`);
      const caseName = `${shape.kind}_${name}`;
      log(`== ${caseName}`);
      try {
        const t0 = performance.now();
        const m = await ensureModel(name, join(args.work, name), { files: args.files });
        log(`  model directory ready in ${Math.round(performance.now() - t0)} ms (${(m.weightBytes / 1e6).toFixed(0)} MB of weights, ${m.realFiles ? 'real' : 'generated'} config/tokenizer)`);
        const url = `${server.url}${name}/`;
        const c = { case: caseName, shape: { weight_bytes: m.weightBytes, real_tokenizer: m.realFiles }, variants: [] };
        if (shape.kind === 'decoder') {
          let profile = null;
          for (const kv of args.kv) {
            const t = performance.now();
            const engine = await pkg.Engine.load(url, { cache: false, worker: false, kvCache: kv, maxContext: 1024 });
            c.shape[`load_ms_kv_${kv}`] = Math.round(performance.now() - t);
            try {
              const r = await benchDecoder(engine, { quick: args.quick, label: `kv_${kv}`, log });
              Object.assign(c.shape, r.shape);
              c.variants.push(...r.variants);
              profile ??= r.profile;
            } finally {
              await engine.dispose();
            }
          }
          report.cases.push(c);
          const p = profileCase(caseName, profile);
          if (p) report.cases.push(p);
        } else {
          const t = performance.now();
          const engine = await pkg.Engine.load(url, { cache: false, worker: false });
          c.shape.load_ms = Math.round(performance.now() - t);
          try {
            const r = await benchEncoder(engine, { quick: args.quick, log });
            Object.assign(c.shape, r.shape);
            c.variants.push(...r.variants);
          } finally {
            await engine.dispose();
          }
          report.cases.push(c);
        }
      } catch (e) {
        failed++;
        log(`  FAILED: ${e?.code ? `${e.code}: ` : ''}${e?.stack ?? e}`);
        report.cases.push({ case: caseName, error: `${e?.code ? `${e.code}: ` : ''}${e?.message ?? e}` });
      }
    }
  } finally {
    await server.close();
  }
  const problems = args.quick ? check(report) : [];
  for (const p of problems) log(`CHECK FAILED: ${p}`);
  const json = JSON.stringify(report, null, 1);
  if (args.out) writeFileSync(args.out, json + '\n');
  else console.log(json);
  log(`\n${summary(report)}`);
  return failed || problems.length ? 1 : 0;
}

/** What the smoke run requires of a report: every figure present and positive. */
function check(report) {
  const problems = [];
  const positive = (c, k) => typeof c.shape?.[k] === 'number' && c.shape[k] > 0 || problems.push(`${c.case}: ${k} = ${c.shape?.[k]}`);
  for (const c of report.cases) {
    if (c.error) problems.push(`${c.case}: ${c.error}`);
    else if (c.case.startsWith('decoder_')) {
      for (const k of Object.keys(c.shape).filter((k) => /^(decode_tok_s_kv|prefill_\d+_tok_s_kv|ttft_ms|gpu_peak_bytes)/.test(k))) positive(c, k);
      positive(c, 'dispatches_per_token');
      const p = report.cases.find((x) => x.case === `profile_${c.case}`);
      if (!p) problems.push(`${c.case}: no profile`);
      else if (report.capabilities.timestamps && !(p.variants[0].median_us > 0)) problems.push(`${p.case}: no GPU time`);
      else if (p.kernels.reduce((n, k) => n + k.count, 0) !== p.shape.dispatches) problems.push(`${p.case}: kernel counts do not add up`);
    } else if (c.case.startsWith('encoder_')) {
      for (const k of Object.keys(c.shape).filter((k) => k.startsWith('embeddings_per_s'))) positive(c, k);
    }
  }
  if (!report.cases.some((c) => c.case.startsWith('decoder_'))) problems.push('no decoder case ran');
  return problems;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    log(`dawn bench failed: ${e?.stack ?? e}`);
    process.exit(2);
  },
);
