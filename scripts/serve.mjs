#!/usr/bin/env node
// A small static server for the demo and the page tests: several directories mounted at URL
// prefixes, HTTP Range (206 / 416, one range per request), files streamed (a 269 MB model is
// never read into memory), requests counted. No dependencies.
//
//   node scripts/serve.mjs [--port 8080] [--host 127.0.0.1] /=www /models/=models /pkg/=pkg
//
// Only what is under a mounted directory is served: symbolic links that lead out of it are 404,
// and nothing is mounted by default (serving `.` would expose `.git`).
//
// As a module: `const s = await serveStatic({ '/': 'www', '/models/': 'models' }, { port: 0 })`
// → { url, port, requests, close() }.
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.jinja': 'text/plain; charset=utf-8',
};

/**
 * One `bytes=` range of a file of `size` bytes: [first, last] inclusive, 'unsatisfiable' (416),
 * or null: ignore the header and send the whole file (malformed, multi-range, last < first).
 */
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(String(header ?? '').trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]); // suffix: the last n bytes
    if (n === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return [start, m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
}

/**
 * Serve `mounts` ({ urlPrefix: dir }); the longest matching prefix wins. `requests` logs
 * { method, path, range, status } per request. `ranges: false` answers every Range with the
 * whole file (200), as a server without Range support does.
 */
export async function serveStatic(mounts, { port = 0, host = '127.0.0.1', log = false, ranges = true } = {}) {
  const table = Object.entries(mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : prefix + '/', resolve(dir)])
    .map(([prefix, dir]) => [prefix, dir, realpath(dir).catch(() => dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const requests = [];
  const server = createServer(async (req, res) => {
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const range = req.headers.range ?? null;
    const entry = { method: req.method, path, range, status: 0 };
    requests.push(entry);
    const done = (status) => {
      entry.status = status;
      if (log) console.log(`${status} ${req.method} ${path}${range ? ` ${range}` : ''}`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      done(405);
      return;
    }
    const mount = table.find(([prefix]) => path.startsWith(prefix) || path + '/' === prefix);
    if (!mount) {
      res.writeHead(404).end('not found');
      done(404);
      return;
    }
    const [prefix, base, realBase] = mount;
    let file = normalize(join(base, path.slice(prefix.length)));
    if (file !== base && !file.startsWith(base + sep)) {
      res.writeHead(403).end();
      done(403);
      return;
    }
    let info;
    try {
      info = await stat(file);
      if (info.isDirectory()) {
        file = join(file, 'index.html');
        info = await stat(file);
      }
      // A symbolic link (the file or a directory on its way) must not lead out of the mount.
      const real = await realpath(file);
      const root = await realBase;
      if (real !== root && !real.startsWith(root + sep)) throw new Error('outside the mount');
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      done(404);
      return;
    }
    const size = info.size;
    const headers = {
      'content-type': types[extname(file)] ?? 'application/octet-stream',
      'accept-ranges': ranges ? 'bytes' : 'none',
      'cache-control': 'no-store', // the Cache API, not the browser's HTTP cache, is what persists models
      'last-modified': info.mtime.toUTCString(),
      etag: `"${size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`,
    };
    let status = 200;
    let start = 0;
    let end = size - 1;
    // An empty file has no bytes to range over: the whole (empty) file, 200.
    if (range && ranges && size > 0) {
      const r = parseRange(range, size);
      if (r === 'unsatisfiable') {
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        done(416);
        return;
      }
      if (r) {
        [start, end] = r;
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
    }
    headers['content-length'] = String(size === 0 ? 0 : end - start + 1);
    res.writeHead(status, headers);
    done(status);
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy()); // the client cancelled (e.g. a range read completed early)
    stream.pipe(res);
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, ok);
  });
  const actual = server.address().port;
  return {
    url: `http://${host}:${actual}/`,
    port: actual,
    requests,
    close: () =>
      new Promise((ok) => {
        server.closeAllConnections?.();
        server.close(ok);
      }),
  };
}

// Command line.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let port = 8080;
  let host = '127.0.0.1';
  const mounts = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--host') host = args[++i];
    else {
      const at = args[i].indexOf('=');
      if (at < 1) {
        console.error(`usage: serve.mjs [--port N] [--host H] /prefix/=dir ...  (bad argument: ${args[i]})`);
        process.exit(2);
      }
      mounts[args[i].slice(0, at)] = args[i].slice(at + 1);
    }
  }
  if (Object.keys(mounts).length === 0) {
    console.error('usage: serve.mjs [--port N] [--host H] /prefix/=dir ...  (name what to serve: nothing is served by default)');
    process.exit(2);
  }
  const s = await serveStatic(mounts, { port, host, log: !!process.env.SERVE_LOG });
  const list = Object.entries(mounts).map(([p, d]) => `${p} → ${d}`).join(', ');
  console.log(`Serving ${list} at ${s.url}`);
}
