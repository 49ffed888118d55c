// Deltas: a device image as its changes against a base, applied back to the
// same base byte for byte; the wrong base, a damaged or hostile file, are
// refused with typed errors and leave no output.
import { createHash, randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPiimgError, openImage, readDeltaHeader } from '@piimg/core';
import { piimg } from './support/cli.js';
import { rawFixture, testCacheDir } from './support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-delta-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return undefined;
}

let base = '';
let deltaPath = '';
let fullPath = '';

beforeAll(async () => {
  base = await rawFixture('pi-bookworm', join(dir, 'base'));
  deltaPath = join(dir, 'device.pidelta');
  fullPath = join(dir, 'device.img');
  await using image = await openImage(base, { cacheDir: testCacheDir });
  const root = await image.mount('root');
  await root.writeFile('/etc/hostname', 'delta-0001\n');
  await root.mkdir('/opt/agent', { recursive: true });
  await root.writeFile('/opt/agent/blob.bin', randomFillSync(new Uint8Array(200_000)));
  // A zeroed region and a compressible one, to exercise every record encoding.
  await root.writeFile('/opt/agent/zeros.bin', new Uint8Array(300_000));
  await root.writeFile('/opt/agent/text.txt', 'sensor '.repeat(20_000));
  const boot = await image.mount('boot');
  await boot.writeFile('/ssh', '');
  image.setDiskId('0a1b2c3d');
  await image.saveDelta(deltaPath);
  await image.save(fullPath);
});

describe('delta files', () => {
  it('applied to the same base, give the full image byte for byte', async () => {
    const header = readDeltaHeader(deltaPath);
    expect(header.version).toBe(1);
    expect(header.imageSize).toBe(statSync(base).size);
    expect(header.baseSha256).toBe(sha256(readFileSync(base)));
    // Small: the changed chunks, compressed, not the image.
    expect(statSync(deltaPath).size).toBeLessThan(1 << 20);
    const out = join(dir, 'applied.img');
    {
      await using image = await openImage(base, { cacheDir: testCacheDir });
      await image.applyDelta(deltaPath);
      expect(image.table.diskId).toBe('0a1b2c3d');
      await image.save(out);
    }
    expect(sha256(readFileSync(out))).toBe(sha256(readFileSync(fullPath)));
  });

  it('piimg apply writes the image, verified, and refuses a delta for another base', async () => {
    const out = join(dir, 'cli.img');
    const ok = await piimg(['apply', base, deltaPath, '-o', out, '--json'], { PIIMG_CACHE_DIR: testCacheDir });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ verified: true, output: out });
    expect(sha256(readFileSync(out))).toBe(sha256(readFileSync(fullPath)));
    const other = await rawFixture('pi-bullseye', join(dir, 'other'));
    const refused = await piimg(['apply', other, deltaPath, '-o', join(dir, 'wrong.img')], { PIIMG_CACHE_DIR: testCacheDir });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/another base image.*E_DELTA_BASE_MISMATCH/s);
    expect(existsSync(join(dir, 'wrong.img'))).toBe(false);
  });

  it('a damaged delta is refused and leaves the image without changes', async () => {
    const bytes = readFileSync(deltaPath);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 10]! ^= 0xff;
    const path = join(dir, 'damaged.pidelta');
    writeFileSync(path, damaged);
    await using image = await openImage(base, { cacheDir: testCacheDir });
    const error = await caught(image.applyDelta(path));
    expect(isPiimgError(error, 'E_BAD_DELTA'), String(error)).toBe(true);
    expect(image.changes.changedChunks).toBe(0);
  });

  it('header problems have their own errors', async () => {
    const bytes = readFileSync(deltaPath);
    const cases: [string, (b: Buffer) => Buffer, string][] = [
      ['bad magic', (b) => (b.write('NOTADLTA', 0, 'latin1'), b), 'E_BAD_DELTA'],
      ['newer version', (b) => (b.writeUInt32LE(2, 8), b), 'E_UNSUPPORTED_DELTA'],
      ['truncated', (b) => b.subarray(0, b.length - 100), 'E_BAD_DELTA'],
      ['too short', (b) => b.subarray(0, 50), 'E_BAD_DELTA'],
      ['record count that cannot fit', (b) => (b.writeUInt32LE(0xffffffff, 0x40), b), 'E_BAD_DELTA'],
    ];
    for (const [what, mutate, code] of cases) {
      const path = join(dir, `case.pidelta`);
      writeFileSync(path, mutate(Buffer.from(bytes)));
      await using image = await openImage(base, { cacheDir: testCacheDir });
      const error = await caught(image.applyDelta(path));
      expect(isPiimgError(error, code), `${what}: ${String(error)}`).toBe(true);
    }
  });

  it('random damage gives only typed errors (seeded)', async () => {
    const bytes = readFileSync(deltaPath);
    let seed = Number(process.env.PIIMG_FUZZ_SEED ?? 20261130);
    const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0), seed);
    const path = join(dir, 'fuzz.pidelta');
    await using image = await openImage(base, { cacheDir: testCacheDir });
    for (let round = 0; round < 60; round++) {
      const mutated = Buffer.from(bytes);
      for (let i = 0; i < 1 + (next() % 4); i++) mutated[next() % Math.min(mutated.length, 4096)] = next() & 0xff;
      if (mutated.equals(bytes)) continue;
      writeFileSync(path, mutated);
      const error = await caught(image.applyDelta(path));
      // Every byte is covered by the checksum: any change is refused, with a typed error, and undone.
      expect(isPiimgError(error), `round ${round}: ${String(error)}`).toBe(true);
      expect(image.changes.changedChunks).toBe(0);
    }
  });
});

describe('inject --delta and --bmap', () => {
  it('writes a delta that piimg apply turns into the image inject would write, and a block map', async () => {
    const config = join(dir, 'cli.yaml');
    writeFileSync(config, 'hostname: delta-cli\nssh: { enabled: true }\n');
    const env = { PIIMG_CACHE_DIR: testCacheDir };
    // In-process runs read the clock from process.env: fix it, so both runs write the same times.
    const epoch = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1735689600';
    try {
    const full = join(dir, 'cli-full.img');
    const delta = join(dir, 'cli.pidelta');
    const bmap = join(dir, 'cli-full.img.bmap');
    const a = await piimg(['inject', base, '-o', full, '--config', config, '--bmap', bmap, '--json'], env);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout).bmap.mappedBlocks).toBeGreaterThan(0);
    expect(readFileSync(bmap, 'utf8')).toMatch(/<bmap version="2.0">/);
    const b = await piimg(['inject', base, '-o', delta, '--config', config, '--delta', '--json'], env);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).delta).toBe(true);
    expect(statSync(delta).size).toBeLessThan(statSync(full).size / 100);
    const applied = join(dir, 'cli-applied.img');
    const c = await piimg(['apply', base, delta, '-o', applied], env);
    expect(c.code, c.stderr).toBe(0);
    expect(sha256(readFileSync(applied))).toBe(sha256(readFileSync(full)));
    const refused = await piimg(['inject', base, '-o', '-', '--config', config, '--delta']);
    expect(refused.code).toBe(1);
    } finally {
      if (epoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = epoch;
    }
  });
});
