// The demo page in headless Chromium: it must create a WebGPU device and show the capabilities.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pageSuite, screenshot, root } from './harness.mjs';

const suite = pageSuite({ '/': join(root, 'www') }, { page: true });

test('demo page shows the adapter capabilities and chosen variants', async () => {
  const { server, page, errors } = suite;
  await page.goto(server.url);
  await page.waitForSelector('#status.ok, #status.error', { timeout: 60_000 });
  const status = await page.textContent('#status');
  const report = await page.textContent('#report');
  await screenshot(page, 'demo-capabilities');
  assert.equal(status, 'WebGPU device ready.', `status: ${status}; page errors: ${errors.join('; ')}`);
  assert.match(report, /variants: reduction (shared|subgroup)/);
  assert.match(report, /limits: workgroup storage \d+ B/);
  const caps = JSON.parse(await page.textContent('#json'));
  assert.ok(caps.max_workgroup_storage >= 16384, 'device created with the adapter limits');
  console.log(report);
  assert.deepEqual(errors, []);
});
