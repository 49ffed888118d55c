import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PiimgError } from '../packages/core/src/errors.js';
import { openImage } from '../packages/core/src/image/image.js';
import { fixturePath, rawFixture, testCacheDir } from './support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-abort-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('AbortSignal in the library', () => {
  it('save() with an aborted signal rejects with its reason and leaves no file', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'base'));
    await using image = await openImage(base, { cacheDir: testCacheDir });
    const boot = await image.mount('boot');
    await boot.writeFile('/x.txt', 'x');
    const controller = new AbortController();
    controller.abort(new PiimgError('E_ABORTED', 'stopped by the caller', { signal: 'test' }));
    const out = join(dir, 'out');
    await expect(image.save(join(out, '..', 'out.img'), { signal: controller.signal })).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(readdirSync(dir).filter((name) => name.includes('out'))).toEqual([]);
    // Without a reason of ours: E_ABORTED all the same.
    await expect(image.save(join(dir, 'out.img'), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(readdirSync(dir).filter((name) => name.includes('out'))).toEqual([]);
  });

  it('openImage() stops decompressing and removes the partial cache entry', async () => {
    const cache = join(dir, 'cache');
    const controller = new AbortController();
    const opening = openImage(fixturePath('pi-bookworm'), {
      cacheDir: cache,
      signal: controller.signal,
      onProgress: (progress) => {
        if (progress.phase === 'decompress' && progress.bytesDone > 1 << 20) controller.abort();
      },
    });
    await expect(opening).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(readdirSync(cache).filter((name) => name.endsWith('.piimg-partial') || name.endsWith('.img'))).toEqual([]);
  });
});

describe('partial files left by a crash', () => {
  it('decompression into the cache removes those of dead processes of this host, after the grace period', async () => {
    const cache = join(dir, 'stale-cache');
    mkdirSync(cache);
    const { spawnSync } = await import('node:child_process');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const tag = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
    const stale = `.0123abcd.img.${dead}-${tag}-00000000.piimg-partial`;
    const fresh = `.4567abcd.img.${dead}-${tag}-00000001.piimg-partial`;
    const living = `.89abcdef.img.${process.pid}-${tag}-00000002.piimg-partial`;
    const notOurs = 'notes.piimg-partial';
    for (const name of [stale, fresh, living, notOurs]) writeFileSync(join(cache, name), 'x');
    const old = new Date(Date.now() - 10 * 60_000);
    for (const name of [stale, living, notOurs]) utimesSync(join(cache, name), old, old);
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: cache });
    expect(image.cached).toBe(false);
    expect(readdirSync(cache).filter((name) => name.endsWith('.piimg-partial')).sort()).toEqual([fresh, living, notOurs].sort());
  });
});
