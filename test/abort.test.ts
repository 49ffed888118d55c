import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
