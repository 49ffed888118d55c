import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveSource } from '../../packages/core/src/image/source.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixturesDir = join(repoRoot, 'fixtures', 'images');

export type FixtureName = 'pi-trixie' | 'pi-bookworm' | 'pi-bookworm-8m' | 'pi-bullseye' | 'pi-gpt' | 'pi-gpt-4k' | 'pi-logical';

/** One cache for the whole test run, so each fixture is decompressed once. */
export const testCacheDir = join(tmpdir(), 'piimg-test-cache');

export function fixturePath(name: FixtureName): string {
  return join(fixturesDir, `${name}.img.xz`);
}

/** Decompresses a fixture (once, through the cache) and copies it to a fresh temp file. */
export async function rawFixture(name: FixtureName, dir?: string): Promise<string> {
  const { rawPath } = await resolveSource(fixturePath(name), { cacheDir: testCacheDir });
  const target = join(dir ?? mkdtempSync(join(tmpdir(), 'piimg-fixture-')), `${name}.img`);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(rawPath, target);
  return target;
}
