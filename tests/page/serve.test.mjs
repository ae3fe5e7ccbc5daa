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
