// Page-test harness: a static server for www/ on 127.0.0.1 and Debian's Chromium with WebGPU,
// driven by playwright-core. Screenshots go to target/page-artifacts/.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { readFile, mkdir } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = resolve(fileURLToPath(import.meta.url), '../../..');
export const artifacts = join(root, 'target', 'page-artifacts');

const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png',
};

/**
 * Serve `dir` on a free localhost port; resolves to { url, close, requests, log }.
 * `requests`: the paths asked for, in order (as before). `log`: one { path, range, status }
 * per request. Honours `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` (206 + Content-Range;
 * 416 past the end; a malformed or multi-range header gets the whole file, as servers do),
 * sends Content-Length, Accept-Ranges and a stable ETag. Options: { ranges: false } answers
 * 200 to every Range (a server that ignores Range).
 */
export async function serve(dir, { ranges = true } = {}) {
  const base = resolve(dir);
  const requests = [];
  const log = [];
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    requests.push(path);
    const entry = { path, range: req.headers.range ?? null, status: 0 };
    log.push(entry);
    const send = (status, headers, body) => {
      entry.status = status;
      res.writeHead(status, headers);
      res.end(body);
    };
    const file = normalize(join(base, path.endsWith('/') ? path + 'index.html' : path));
    if (!file.startsWith(base)) { send(403, {}); return; }
    let body;
    try {
      body = await readFile(file);
    } catch {
      send(404, {}, 'not found');
      return;
    }
    const headers = {
      'content-type': types[extname(file)] ?? 'application/octet-stream',
      'accept-ranges': ranges ? 'bytes' : 'none',
      etag: `"${body.length}-${createHash('sha1').update(body).digest('hex').slice(0, 16)}"`,
    };
    const r = ranges ? parseRange(req.headers.range, body.length) : null;
    if (r === 'unsatisfiable') {
      send(416, { ...headers, 'content-range': `bytes */${body.length}` });
    } else if (r) {
      const [a, b] = r;
      send(206, { ...headers, 'content-range': `bytes ${a}-${b}/${body.length}`, 'content-length': b - a + 1 },
        req.method === 'HEAD' ? undefined : body.subarray(a, b + 1));
    } else {
      send(200, { ...headers, 'content-length': body.length }, req.method === 'HEAD' ? undefined : body);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}/`, requests, log, close: () => new Promise((ok) => server.close(ok)) };
}

/** One `bytes=` range of a `len`-byte file: [first, last] inclusive, 'unsatisfiable', or null (ignore). */
export function parseRange(header, len) {
  const m = /^bytes=(\d*)-(\d*)$/.exec((header ?? '').trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return [Math.max(0, len - n), len - 1];
  }
  const a = Number(m[1]);
  const b = m[2] === '' ? len - 1 : Math.min(Number(m[2]), len - 1);
  if (m[2] !== '' && Number(m[2]) < a) return null;
  if (a >= len) return 'unsatisfiable';
  return [a, b];
}

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
