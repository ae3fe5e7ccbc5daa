// The demo's Benchmark tab in headless Chromium (SwiftShader): a quick run on tiny random models
// (benches/dawn_models.mjs) must fill the results, the per-kernel profile of a decode step and the
// JSON report (what "Copy report" copies). Screenshot: target/page-artifacts/demo-benchmark.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pageSuite, screenshot, root } from './harness.mjs';
import { ensureModel } from '../../benches/dawn_models.mjs';

const suite = pageSuite(
  async () => {
    const dir = join(root, 'target', 'page-models', 'bench');
    await ensureModel('tiny_decoder', join(dir, 'tiny_decoder'));
    await ensureModel('tiny_encoder', join(dir, 'tiny_encoder'));
    return { '/': join(root, 'www'), '/bench-models/': dir };
  },
  { page: { viewport: { width: 1100, height: 900 } } },
);

test('demo Benchmark tab: quick run on tiny models, per-kernel profile, JSON report', { timeout: 300_000 }, async () => {
  const { server, page, errors } = suite;
  await page.goto(server.url);
  await page.waitForSelector('#status.ok, #status.error', { timeout: 60_000 });
  await page.click('#tab-bench');
  assert.equal(await page.isVisible('#panel-bench'), true);
  assert.equal(await page.isDisabled('#bench-copy'), true, 'nothing to copy before a run');
  await page.selectOption('#bench-decoder', 'custom');
  await page.fill('#bench-decoder-url', `${server.url}bench-models/tiny_decoder/`);
  await page.selectOption('#bench-encoder', 'custom');
  await page.fill('#bench-encoder-url', `${server.url}bench-models/tiny_encoder/`);
  await page.check('#bench-quick');
  const t0 = Date.now();
  await page.click('#bench-run');
  await page.waitForSelector('body[data-bench="done"], body[data-bench="failed"]', { state: 'attached', timeout: 280_000 });
  console.log(`benchmark tab: ${((Date.now() - t0) / 1000).toFixed(0)} s; ${await page.textContent('#bench-status')}`);
  await screenshot(page, 'demo-benchmark');
  const report = JSON.parse(await page.textContent('#bench-json'));
  assert.equal(report.error, undefined, `${report.error}; page errors: ${errors.join('; ')}`);
  assert.equal(await page.evaluate(() => document.body.dataset.bench), 'done');
  // Decoder figures, the profile and the embeddings, in the report and on the page.
  const dec = report.cases.find((c) => c.case === 'decoder tiny_decoder');
  assert.ok(dec.shape.decode_tok_s_kv_f16 > 0 && dec.shape.prefill_16_tok_s_kv_f16 > 0, JSON.stringify(dec.shape));
  assert.equal(dec.shape.prefill_new_tokens, 16, 'the prefill prompt is calibrated to the asked length');
  assert.ok(dec.shape.dispatches_per_token > 0 && dec.shape.gpu_peak_bytes_kv_f16 > 0, JSON.stringify(dec.shape));
  const prof = report.cases.find((c) => c.case === 'profile_decoder tiny_decoder');
  assert.ok(prof, 'the per-kernel profile is in the report');
  assert.equal(prof.kernels.reduce((n, k) => n + k.count, 0), prof.shape.dispatches);
  assert.ok(prof.kernels.every((k) => /^\w+::\w+\[/.test(k.label)), `labels name kernel::entry[variant]: ${prof.kernels.map((k) => k.label)}`);
  if (report.capabilities.timestamps) {
    assert.ok(prof.variants[0].median_us > 0 && prof.kernels.every((k) => k.gpu_us >= 0), JSON.stringify(prof));
  }
  const enc = report.cases.find((c) => c.case === 'encoder tiny_encoder');
  assert.ok(enc.shape.embeddings_per_s_batch_1 > 0 && enc.shape.embeddings_per_s_batch_4 > 0, JSON.stringify(enc.shape));
  const rows = await page.$$eval('#bench-results tbody tr', (trs) => trs.map((t) => t.textContent));
  assert.ok(rows.some((r) => /decode tok\/s/.test(r)) && rows.some((r) => /embeddings\/s/.test(r)), rows.join('\n'));
  const kernels = await page.$$eval('#bench-profile tbody tr', (trs) => trs.length);
  assert.equal(kernels, prof.kernels.length);
  assert.match(await page.textContent('#bench-variants'), /variants: reduction/);
  assert.equal(await page.isEnabled('#bench-copy'), true);
  assert.deepEqual(errors, []);
});
