// The demo page in headless Chromium: it must create a WebGPU device and show the capabilities.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serve, browser, screenshot, root } from './harness.mjs';

test('demo page shows the adapter capabilities and chosen variants', async () => {
  const server = await serve(join(root, 'www'));
  const b = await browser();
  try {
    const page = await b.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
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
  } finally {
    await b.close();
    await server.close();
  }
});
