// Page-test harness: a static server on 127.0.0.1 and Debian's Chromium with WebGPU,
// driven by playwright-core (pageSuite: the setup every browser test file shares). Screenshots
// go to target/page-artifacts/.
import { before, after } from 'node:test';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serveStatic, parseRange } from '../../scripts/serve.mjs';

export const root = resolve(fileURLToPath(import.meta.url), '../../..');
export const artifacts = join(root, 'target', 'page-artifacts');

/**
 * Serve `dir` on a free localhost port (scripts/serve.mjs: Range, ETag, streamed files); resolves
 * to { url, close, requests, log }: `requests` the paths asked for, in order, `log` one
 * { path, range, status } per request. { ranges: false }: a server that ignores Range.
 */
export async function serve(dir, { ranges = true } = {}) {
  const s = await serveStatic({ '/': dir }, { ranges });
  return {
    url: s.url,
    close: s.close,
    get requests() { return s.requests.map((r) => r.path); },
    get log() { return s.requests.map(({ path, range, status }) => ({ path, range, status })); },
  };
}

export { parseRange };

/** Headless Chromium with WebGPU enabled (Debian's build; SwiftShader on a machine without GPU). */
export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/**
 * The setup of a browser test file, as `before` / `after` hooks of the file: before its tests,
 * `mounts` served on a free localhost port (scripts/serve.mjs; `{ prefix: folder }`, or an async
 * function returning it, for folders written first, e.g. ensureTinyModel) and Chromium started
 * (browser()); with `page` (newPage's options, `true` for none), one page opened whose uncaught
 * errors are collected in `errors`; then `ready(suite)`, if given (e.g. navigating the page: a
 * second top-level `before` hook would not wait for this one, node 20 runs them concurrently).
 * After its tests, the browser and the server are closed. Returns the suite, filled in by the
 * hook: `{ server, browser, page, errors }` (`server` as serveStatic gives it: url, requests,
 * close).
 */
export function pageSuite(mounts, { page, ready } = {}) {
  const suite = { server: undefined, browser: undefined, page: undefined, errors: [] };
  before(async () => {
    suite.server = await serveStatic(typeof mounts === 'function' ? await mounts() : mounts);
    suite.browser = await browser();
    if (page) {
      suite.page = await suite.browser.newPage(page === true ? {} : page);
      suite.page.on('pageerror', (e) => suite.errors.push(String(e)));
    }
    await ready?.(suite);
  });
  after(async () => {
    await suite.browser?.close();
    await suite.server?.close();
  });
  return suite;
}

export async function screenshot(page, name) {
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}
