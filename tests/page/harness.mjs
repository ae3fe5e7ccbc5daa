// Page-test harness: a static server on 127.0.0.1 and Debian's Chromium with WebGPU,
// driven by playwright-core. Screenshots go to target/page-artifacts/.
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

export async function screenshot(page, name) {
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}
