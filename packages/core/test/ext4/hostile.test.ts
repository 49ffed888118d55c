import { readFileSync, rmSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { mountExt4, verifyExt4, type Ext4Volume } from '../../src/fs/ext4/index.js';
import { run } from '../../../../test/support/tools.js';
import { cleanupWorkDir, fixtures, haveOracles, imageFile, makeImage } from './support.js';

afterAll(cleanupWorkDir);

/** Reads everything reachable, with bounds; returns how many entries were seen. */
async function walk(volume: Ext4Volume, dir: string, budget: { entries: number }, depth = 0): Promise<void> {
  if (depth > 8) return;
  for (const entry of await volume.readdir(dir)) {
    if (--budget.entries < 0) return;
    const path = (dir === '/' ? '' : dir) + '/' + entry.name;
    try {
      const stat = await volume.lstat(path);
      if (stat.type === 'directory') await walk(volume, path, budget, depth + 1);
      else if (stat.type === 'file') await volume.readFile(path);
      else if (stat.type === 'symlink') await volume.readlink(path);
    } catch (error) {
      if (!isPiimgError(error)) throw error;
    }
  }
}

describe.skipIf(!haveOracles)('ext4 on hostile images', () => {
  const fixture = fixtures[1]!;
  const base = haveOracles ? makeImage(fixture, 4, ['-N', '64']) : new Uint8Array(0);
  let seeded = base;
  if (haveOracles) {
    // Some content to damage: files, a directory, a slow symlink.
    const path = imageFile(base);
    run('debugfs', ['-w', '-R', 'mkdir /dir', path]);
    run('debugfs', ['-w', '-R', 'symlink /dir/link /' + 'x'.repeat(100), path]);
    run('debugfs', ['-w', '-R', `write ${path.replace(/[^/]*$/, '')} /dir/none`, path], { allowFail: true });
    seeded = new Uint8Array(readFileSync(path));
    rmSync(path, { force: true });
  }

  it('damaged metadata gives PiimgError or data, never a crash or a hang, and read-only use writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.integer({ min: 1024, max: 256 * 1024 - 1 }), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 40,
        }),
        async (edits) => {
          const bytes = seeded.slice();
          for (const { at, value } of edits) bytes[at] = value;
          const damaged = bytes.slice();
          let volume: Ext4Volume | undefined;
          try {
            volume = await mountExt4(new MemoryDevice(bytes), { readOnly: true });
            await walk(volume, '/', { entries: 500 });
          } catch (error) {
            if (!isPiimgError(error)) throw error;
          } finally {
            await volume?.close().catch(() => undefined);
          }
          const verdict = await verifyExt4(new MemoryDevice(bytes));
          expect(typeof verdict.clean).toBe('boolean');
          expect(Buffer.from(bytes).equals(Buffer.from(damaged))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('refuses to change case-insensitive directories (ENOTSUP) but reads them', async () => {
    const bytes = makeImage({ name: 'casefold', args: ['-t', 'ext4', '-O', 'casefold'], largeInodes: true }, 8);
    const path = imageFile(bytes);
    run('debugfs', ['-w', '-R', 'mkdir /cf', path]);
    run('debugfs', ['-w', '-R', 'set_inode_field /cf flags 0x40080000', path]);
    const image = new Uint8Array(readFileSync(path));
    rmSync(path, { force: true });
    const volume = await mountExt4(new MemoryDevice(image));
    await expect(volume.writeFile('/cf/Name', 'x')).rejects.toMatchObject({ code: 'ENOTSUP', data: { path: '/cf/Name' } });
    await expect(volume.mkdir('/cf/sub')).rejects.toMatchObject({ code: 'ENOTSUP' });
    await expect(volume.mkdir('/cf/sub/deeper', { recursive: true })).rejects.toMatchObject({ code: 'ENOTSUP', data: { path: '/cf/sub/deeper' } });
    expect(await volume.readdir('/cf')).toEqual([]);
    await volume.writeFile('/elsewhere', 'fine');
    await volume.close();
  });
});
