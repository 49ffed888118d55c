import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPiimgError, openImage } from '@piimg/core';
import { rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';
import { hasTool } from './support/tools.js';

// Paths that name something other than a regular file where piimg reads a whole file at
// any offset (a base image, a delta, a file to copy in): a FIFO would block the first
// open or read for good, and a thread blocked in open(2) cannot be stopped by a signal.
// Each is a typed error at once. The command runs in a child with a time limit, so a
// hang fails the test instead of stopping the suite.

const dir = mkdtempSync(join(tmpdir(), 'piimg-not-a-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
const canFifo = process.platform !== 'win32' && hasTool('mkfifo');
if (!built) console.warn('\n*** SKIPPED: the not-a-file tests run the built piimg command; `npm test` builds it first ***\n');
if (!canFifo) {
  if (process.env.CI) throw new Error('CI runs on Debian, which has mkfifo');
  console.warn('\n*** SKIPPED: the not-a-file tests need mkfifo ***\n');
}

const piimg = (args: string[]) => {
  const result = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, PIIMG_CACHE_DIR: testCacheDir }, encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
  // status null: killed at the time limit, that is, it hung.
  return { code: result.status, stderr: result.stderr };
};

describe.skipIf(!built || !canFifo)('a path that is not a regular file', () => {
  let base = '';
  const fifo = join(dir, 'fifo');
  const out = join(dir, 'out');
  beforeAll(async () => {
    base = await rawFixture('pi-bookworm', join(dir, 'base'));
    spawnSync('mkfifo', [fifo]);
    mkdirSync(out);
  });

  it('as a base image: E_BAD_IMAGE (exit 2) naming what it is, for the commands and openImage', async () => {
    const config = join(dir, 'device.yaml');
    writeFileSync(config, 'hostname: x\n');
    for (const [path, kind] of [
      [fifo, 'a FIFO'],
      [dir, 'a directory'],
      ['/dev/null', 'a character device'],
    ] as const) {
      for (const args of [['info', path], ['inject', path, '-o', join(out, 'x.img'), '--config', config]]) {
        const result = piimg(args);
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toContain(`is not an image file: it is ${kind} [E_BAD_IMAGE]`);
      }
    }
    const error = await openImage(fifo).catch((e: unknown) => e);
    expect(isPiimgError(error, 'E_BAD_IMAGE'), String(error)).toBe(true);
    expect(readdirSync(out)).toEqual([]);
  });

  it('as a delta: E_BAD_DELTA (exit 2)', () => {
    const result = piimg(['apply', base, fifo, '-o', join(out, 'x.img')]);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('not a delta file: it is a FIFO [E_BAD_DELTA]');
    expect(readdirSync(out)).toEqual([]);
  });

  it('as a file to copy in or a configuration to extend: a configuration error (exit 3); piimg cp skips it and writes no output (exit 5)', () => {
    const config = join(dir, 'fifo-source.yaml');
    writeFileSync(config, `hostname: x\nfiles:\n  - source: ${JSON.stringify(fifo)}\n    target: /opt/f\n`);
    const injected = piimg(['inject', base, '-o', join(out, 'x.img'), '--config', config]);
    expect(injected.code, injected.stderr).toBe(3);
    expect(injected.stderr).toContain('is not a regular file or directory');
    const extending = join(dir, 'extends-fifo.yaml');
    writeFileSync(extending, `extends: ${JSON.stringify(fifo)}\nhostname: x\n`);
    const extended = piimg(['inject', base, '-o', join(out, 'x.img'), '--config', extending]);
    expect(extended.code, extended.stderr).toBe(3);
    expect(extended.stderr).toContain('which is not a regular file [E_CONFIG]');
    const copied = piimg(['cp', base, fifo, 'root:/opt/f', '-o', join(out, 'y.img')]);
    expect(copied.code, copied.stderr).toBe(5);
    expect(copied.stderr).toContain('nothing was copied');
    expect(readdirSync(out)).toEqual([]);
  });
});
