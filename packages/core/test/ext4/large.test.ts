import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/device/file.js';
import { mountExt4 } from '../../src/fs/ext4/index.js';
import { run } from '../../../../test/support/tools.js';
import { cleanupWorkDir, haveOracles, workDir } from './support.js';

afterAll(cleanupWorkDir);

/**
 * Writing a 1 GiB file into an image on disk (about 15 s with the oracles;
 * PIIMG_SKIP_LARGE_TESTS=1 skips it, and it needs ~1 GiB of temp space).
 * bench/ext4.bench.mjs measures the same job's peak RSS in a fresh process.
 */
describe.skipIf(!haveOracles || process.env.PIIMG_SKIP_LARGE_TESTS === '1')('ext4: a 1 GiB file', () => {
  it('streams 1 GiB into a file-backed image with bounded memory; e2fsck and debugfs agree', async () => {
    const image = join(workDir, 'large.img');
    run('truncate', ['-s', '1600M', image]);
    run('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^64bit,^huge_file', image]);
    const total = 1024 * 1024 * 1024;
    const chunk = new Uint8Array(4 * 1024 * 1024);
    const hash = createHash('sha256');
    function* chunks(): Generator<Uint8Array> {
      for (let i = 0; i < total / chunk.length; i++) {
        chunk.fill(i & 0xff);
        new DataView(chunk.buffer).setUint32(0, i);
        hash.update(chunk);
        yield chunk;
      }
    }
    const before = process.memoryUsage().rss;
    const device = FileDevice.open(image);
    const volume = await mountExt4(device, { now: () => new Date('2024-01-01T00:00:00Z') });
    await volume.writeFile('/big.bin', chunks());
    expect((await volume.stat('/big.bin')).size).toBe(total);
    await volume.close();
    device.close();
    const grownMiB = (process.memoryUsage().rss - before) / 2 ** 20;
    // The image is never held in memory: growth stays far below the 1 GiB written.
    expect(grownMiB).toBeLessThan(200);
    expect(run('e2fsck', ['-fn', image], { allowFail: true }).status).toBe(0);
    const native = execFileSync('sh', ['-c', `debugfs -R "cat /big.bin" "${image}" 2>/dev/null | sha256sum`], {
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
    })
      .toString()
      .split(' ')[0];
    expect(native).toBe(hash.digest('hex'));
    rmSync(image, { force: true });
  }, 600_000);
});
