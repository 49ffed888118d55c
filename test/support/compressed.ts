import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { isPiimgError, resolveSource } from '@piimg/core';

// Shared by the tests of compressed inputs and outputs (test/xz.test.ts, test/zstd.test.ts).

export const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** The code of the PiimgError `promise` rejects with, or 'no error'; anything else fails the test. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(isPiimgError(error), String(error)).toBe(true);
    return (error as { code: string }).code;
  }
  return 'no error';
}

/** 6 MiB mixing compressible text, random bytes and zeros, like a disk image. */
export function sample(): Buffer {
  const text = Buffer.from('piimg writes images that boot; '.repeat(70_000));
  return Buffer.concat([text.subarray(0, 2 << 20), randomBytes(1 << 20), Buffer.alloc(2 << 20), randomBytes(1 << 20).fill(7, 0, 4096)]);
}

/**
 * One test per hostile input: opening it as a base fails with its code within 10 s and
 * leaves no cache entry (decoded image or partial file).
 */
export function itRefusesHostile(dir: string, extension: string, cases: [name: string, make: () => Buffer, code: string][]): void {
  for (const [name, make, code] of cases) {
    it(`${name} gives ${code} quickly, leaving no cache entry`, async () => {
      const path = join(dir, `hostile-${name.replace(/\W+/g, '-')}.${extension}`);
      writeFileSync(path, make());
      const cacheDir = join(dir, `cache-hostile-${name.replace(/\W+/g, '-')}`);
      const started = performance.now();
      expect(await codeOf(resolveSource(path, { cacheDir }))).toBe(code);
      expect(performance.now() - started).toBeLessThan(10_000);
      expect((existsSync(cacheDir) ? readdirSync(cacheDir) : []).filter((entry) => entry.endsWith('.img') || entry.endsWith('.partial'))).toEqual([]);
    });
  }
}
