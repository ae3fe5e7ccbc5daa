#!/usr/bin/env node
// Dawn (benches/dawn.mjs) beside wgpu native (kjarni-bench) for the cases both report, as a
// Markdown table; with a second Dawn report, the run-to-run spread of each Dawn figure.
//   node benches/dawn_compare.mjs NATIVE.json DAWN.json [DAWN_RUN2.json]
// Missing or unreadable files are reported and skipped.
import { readFileSync } from 'node:fs';

function load(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    console.log(`(${path}: ${e.code === 'ENOENT' ? 'missing' : e.message})`);
    return null;
  }
}

const [nativePath, dawnPath, run2Path] = process.argv.slice(2);
const native = nativePath ? load(nativePath) : null;
const dawn = dawnPath ? load(dawnPath) : null;
const run2 = run2Path ? load(run2Path) : null;
const byCase = (r) => Object.fromEntries((r?.cases ?? []).map((c) => [c.case, c]));
const N = byCase(native);
const D = byCase(dawn);
const D2 = byCase(run2);

const fmt = (v) => (v == null || Number.isNaN(v) ? '–' : typeof v === 'number' ? (Number.isInteger(v) || Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : String(v));
const ratio = (a, b) => (a != null && b != null && b !== 0 ? (a / b).toFixed(2) : '–');
const spread = (a, b) => (a != null && b != null && a !== 0 ? `${((Math.abs(a - b) / Math.max(a, b)) * 100).toFixed(1)} %` : '–');

console.log(`Dawn: ${dawn?.adapter ?? '?'} (${dawn?.engine ?? ''}, node ${dawn?.node ?? '?'}) · native: ${native?.adapter ?? '?'} (${native?.backend ?? ''})\n`);
console.log('| case | figure | wgpu native | Dawn | Dawn / native | Dawn run 2 | runs differ by |');
console.log('|---|---|---|---|---|---|---|');
let worst = 0;
for (const [name, d] of Object.entries(D)) {
  if (d.error) {
    console.log(`| ${name} | FAILED on Dawn: ${d.error.replace(/\|/g, '/')} | | | | | |`);
    continue;
  }
  if (d.kernels) continue;
  const n = N[name];
  const d2 = D2[name];
  const keys = Object.keys(d.shape).filter((k) => /^(decode_tok_s_kv|prefill_\d+_tok_s_kv|ttft_ms|dispatches_per_token|embeddings_per_s)/.test(k));
  for (const k of keys) {
    const dv = d.shape[k];
    const nv = n?.shape?.[k];
    const d2v = d2?.shape?.[k];
    if (d2v != null && dv != null && dv !== 0 && !/ttft|dispatches/.test(k)) worst = Math.max(worst, Math.abs(dv - d2v) / Math.max(dv, d2v));
    console.log(`| ${name} | ${k} | ${fmt(nv)} | ${fmt(dv)} | ${/ttft|dispatches/.test(k) ? '' : ratio(dv, nv)} | ${fmt(d2v)} | ${spread(dv, d2v)} |`);
  }
}
if (run2) console.log(`\nLargest run-to-run difference of a Dawn speed figure: ${(worst * 100).toFixed(1)} % (${worst <= 0.1 ? 'within' : 'NOT within'} 10 %).`);

// Per-kernel GPU time of one decode step, side by side.
for (const [name, d] of Object.entries(D)) {
  if (!d.kernels) continue;
  const n = N[name];
  const nk = Object.fromEntries((n?.kernels ?? []).map((k) => [k.label, k]));
  console.log(`\n${name}: one decode step, GPU µs per kernel (one compute pass per dispatch, timestamp queries)`);
  console.log(`dispatches: native ${n?.shape?.dispatches ?? '–'}, Dawn ${d.shape.dispatches}; total GPU: native ${fmt(n?.variants?.[0]?.median_us)} µs, Dawn ${fmt(d.variants[0].median_us)} µs${d.shape.quantized ? ' (Dawn timestamps quantised!)' : ''}\n`);
  console.log('| kernel [variant] | count | wgpu native µs | Dawn µs | Dawn / native |');
  console.log('|---|---|---|---|---|');
  const labels = [...new Set([...d.kernels.map((k) => k.label), ...Object.keys(nk)])];
  const dk = Object.fromEntries(d.kernels.map((k) => [k.label, k]));
  for (const l of labels) {
    const a = dk[l];
    const b = nk[l];
    console.log(`| ${l} | ${a?.count ?? b?.count} | ${fmt(b?.gpu_us)} | ${fmt(a?.gpu_us)} | ${ratio(a?.gpu_us, b?.gpu_us)} |`);
  }
}
