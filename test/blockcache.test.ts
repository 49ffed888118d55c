import { mkdtempSync, readdirSync, renameSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockCache, type BlockKey } from '../packages/core/src/image/blockcache.js';

/** The content-addressed part of the block cache stays within its bound, least recently used entries first. */

const dir = mkdtempSync(join(tmpdir(), 'piimg-blockcache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const settings = { format: 'xz', level: 6, blockSize: 24 << 20, check: 4, freeSpace: 'zero' as const };
const key = (n: number): BlockKey => {
  const content = n.toString(16).padStart(64, '0');
  return { content, byteOffset: 0, length: 1 << 20, keep: `sha256:${content}` };
};
const block = (n: number) => ({ pieces: [new Uint8Array(3000).fill(n)], unpaddedSize: 3000, uncompressedSize: 1 << 20 });

describe('content-addressed block cache', () => {
  it('removes the least recently used entries once over its bound; a hit counts as a use', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    const cache = new BlockCache(cacheDir, 'base', settings, { contentLimitBytes: 10_000 });
    for (const n of [0, 1, 2]) cache.put(key(n), block(n));
    await cache.flush();
    const contentDir = join(cacheDir, 'blocks', readdirSync(join(cacheDir, 'blocks')).find((name) => name.startsWith('content-'))!);
    // Three entries of about 3.2 kB: under the bound, all kept.
    expect(readdirSync(contentDir).filter((name) => name.endsWith('.blk')).length).toBe(3);
    const now = Date.now() / 1000;
    for (const n of [0, 1, 2]) utimesSync(join(contentDir, `${key(n).content}.blk`), now - 300 + n * 100, now - 300 + n * 100);
    // Entry 0, the oldest, is used again: it becomes the most recent.
    expect(Buffer.from((await cache.get(key(0)))!.pieces[0]!).equals(Buffer.from(block(0).pieces[0]!))).toBe(true);
    cache.put(key(3), block(3));
    await cache.flush();
    // Over 10 000 bytes: the least recent (1, then 2) go until at most 7 500 remain.
    expect(readdirSync(contentDir).filter((name) => name.endsWith('.blk')).sort()).toEqual([`${key(0).content}.blk`, `${key(3).content}.blk`]);
    expect(await cache.get(key(1))).toBeUndefined();
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1, damaged: 0 });
  });

  it('an entry stored under another content is a miss', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    const cache = new BlockCache(cacheDir, 'base', settings);
    cache.put(key(5), block(5));
    await cache.flush();
    const contentDir = join(cacheDir, 'blocks', readdirSync(join(cacheDir, 'blocks')).find((name) => name.startsWith('content-'))!);
    // The file renamed as if it held content 6: its header says 5.
    renameSync(join(contentDir, `${key(5).content}.blk`), join(contentDir, `${key(6).content}.blk`));
    expect(await cache.get(key(6))).toBeUndefined();
    expect(cache.stats.damaged).toBe(1);
  });
});
