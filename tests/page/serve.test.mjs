// The page-test server: Range requests (206, Content-Range, 416), request log, ETag. No browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { serve, parseRange } from './harness.mjs';

test('parseRange', () => {
  assert.deepEqual(parseRange('bytes=0-7', 100), [0, 7]);
  assert.deepEqual(parseRange('bytes=90-', 100), [90, 99]);
  assert.deepEqual(parseRange('bytes=90-200', 100), [90, 99]);
  assert.deepEqual(parseRange('bytes=-10', 100), [90, 99]);
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,5-6', 100), null, 'multi-range: whole file');
  assert.equal(parseRange('bytes=5-2', 100), null);
  assert.equal(parseRange(undefined, 100), null);
});

test('serve answers ranges and logs requests', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kjarni-serve-'));
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  await writeFile(join(dir, 'f.bin'), data);
  const s = await serve(dir);
  try {
    let r = await fetch(s.url + 'f.bin', { headers: { Range: 'bytes=10-19' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), 'bytes 10-19/1000');
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), data.subarray(10, 20));
    r = await fetch(s.url + 'f.bin', { headers: { Range: 'bytes=995-' } });
    assert.equal(r.status, 206);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), data.subarray(995));
    r = await fetch(s.url + 'f.bin', { headers: { Range: 'bytes=1000-' } });
    assert.equal(r.status, 416);
    assert.equal(r.headers.get('content-range'), 'bytes */1000');
    await r.arrayBuffer();
    r = await fetch(s.url + 'f.bin');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), '1000');
    const etag = r.headers.get('etag');
    assert.ok(etag);
    await r.arrayBuffer();
    r = await fetch(s.url + 'missing.bin');
    assert.equal(r.status, 404);
    await r.arrayBuffer();
    assert.deepEqual(s.requests, ['/f.bin', '/f.bin', '/f.bin', '/f.bin', '/missing.bin']);
    assert.deepEqual(s.log.map((e) => [e.range, e.status]),
      [['bytes=10-19', 206], ['bytes=995-', 206], ['bytes=1000-', 416], [null, 200], [null, 404]]);
  } finally {
    await s.close();
  }
  const ignoring = await serve(dir, { ranges: false });
  try {
    const r = await fetch(ignoring.url + 'f.bin', { headers: { Range: 'bytes=10-19' } });
    assert.equal(r.status, 200);
    assert.equal((await r.arrayBuffer()).byteLength, 1000);
  } finally {
    await ignoring.close();
    await rm(dir, { recursive: true });
  }
});

test('symbolic links out of the served folder are not followed; links inside are', async () => {
  const { symlink, mkdir } = await import('node:fs/promises');
  const outside = await mkdtemp(join(tmpdir(), 'kjarni-outside-'));
  const dir = await mkdtemp(join(tmpdir(), 'kjarni-serve-'));
  await writeFile(join(outside, 'secret.txt'), 'secret');
  await writeFile(join(dir, 'a.txt'), 'inside');
  await mkdir(join(dir, 'sub'));
  await symlink(join(outside, 'secret.txt'), join(dir, 'leak.txt'));
  await symlink(outside, join(dir, 'sub', 'out'));
  await symlink(join(dir, 'a.txt'), join(dir, 'sub', 'b.txt'));
  const s = await serve(dir);
  try {
    for (const [path, status, body] of [['a.txt', 200, 'inside'], ['leak.txt', 404], ['sub/out/secret.txt', 404], ['sub/b.txt', 200, 'inside']]) {
      const r = await fetch(s.url + path);
      assert.equal(r.status, status, path);
      const text = await r.text();
      if (body) assert.equal(text, body);
      else assert.ok(!text.includes('secret'), path);
    }
  } finally {
    await s.close();
    await rm(dir, { recursive: true });
    await rm(outside, { recursive: true });
  }
});

test('ranges on an empty file get a valid answer (the whole, empty file)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kjarni-serve-'));
  await writeFile(join(dir, 'empty.bin'), '');
  const s = await serve(dir);
  try {
    for (const range of ['bytes=0-', 'bytes=-10', 'bytes=0-0']) {
      const r = await fetch(s.url + 'empty.bin', { headers: { Range: range } });
      assert.equal(r.status, 200, range);
      assert.equal(r.headers.get('content-length'), '0');
      assert.equal(r.headers.get('content-range'), null);
      assert.equal((await r.arrayBuffer()).byteLength, 0);
    }
  } finally {
    await s.close();
    await rm(dir, { recursive: true });
  }
});

test('the command line serves nothing by default', async () => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const script = fileURLToPath(new URL('../../scripts/serve.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script, '--port', '0'], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /nothing is served by default/);
});
