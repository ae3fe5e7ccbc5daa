#!/usr/bin/env node
// What a workgroup barrier costs on this WebGPU adapter (Dawn under node, like benches/dawn.mjs):
// a trivial kernel (one load, `bar` rounds of store / workgroupBarrier / load of a neighbour, one
// store) over 512 workgroups of 4 … 256 invocations, best-of-3 wall time per dispatch. On a CPU
// adapter (SwiftShader) a workgroup that reaches a barrier runs one coroutine per SIMD group, and
// the cost per invocation grows with the workgroup size (notes/dawn.md, "CPU adapters").
//
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node benches/barriers.mjs
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';

const require = createRequire(import.meta.url);
const base = dirname(require.resolve('webgpu/package.json'));
const dawn = require(join(base, 'dist', `${process.platform}-${process.arch}`, 'dawn.node'));
Object.assign(globalThis, dawn.globals);
// Keep the GPU object referenced: dawn.node crashes when it is collected while in use.
const gpu = dawn.create(['backend=vulkan']);
const adapter = await gpu.requestAdapter();
const device = await adapter.requestDevice();
const buf = device.createBuffer({ size: 1 << 22, usage: GPUBufferUsage.STORAGE });
const groups = 512;

async function time(code) {
  const module = device.createShaderModule({ code });
  const p = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
  const once = async () => {
    const e = device.createCommandEncoder();
    const c = e.beginComputePass();
    c.setPipeline(p);
    c.setBindGroup(0, bg);
    c.dispatchWorkgroups(groups);
    c.end();
    device.queue.submit([e.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await once();
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await once();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

const kernel = (wg, bar) => `
@group(0) @binding(0) var<storage, read_write> b: array<f32>;
var<workgroup> s: array<f32, ${wg}>;
@compute @workgroup_size(${wg}) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  var a = b[g.x];
  ${`s[l] = a; workgroupBarrier(); a = a + s[(l + 1u) % ${wg}u];\n`.repeat(bar)}
  b[g.x] = a;
}`;

const rows = [];
for (const wg of [4, 16, 64, 128, 256]) {
  for (const bar of [0, 1, 4]) {
    const ms = await time(kernel(wg, bar));
    rows.push({ workgroup: wg, barriers: bar, ms_per_dispatch: +ms.toFixed(3), us_per_workgroup: +((ms * 1000) / groups).toFixed(2), us_per_invocation: +((ms * 1000) / groups / wg).toFixed(3) });
  }
}
console.log(JSON.stringify({ command: 'node benches/barriers.mjs', adapter: adapter.info?.description || adapter.info?.device || '', groups, rows }, null, 2));
process.exit(0);
