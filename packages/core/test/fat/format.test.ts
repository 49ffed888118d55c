import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { formatFat, mountFat, probeFat } from '../../src/fs/fat/index.js';
import { hasTool } from '../../../../test/support/tools.js';
import { fsck, mdirNames, mlabel, mtype, tempDir } from './support.js';

const cases = [
  { fatType: 'fat12', size: 1440 * 1024 },
  { fatType: 'fat16', size: 32 * 2 ** 20 },
  { fatType: 'fat32', size: 64 * 2 ** 20, clusterSize: 512 },
  { fatType: 'fat32', size: 300 * 2 ** 20 },
] as const;

describe('formatFat (in memory, no native tools)', () => {
  it.each(cases)('makes a $fatType volume that mounts, takes files and reads them back', async ({ fatType, size, ...rest }) => {
    const device = new MemoryDevice(size);
    formatFat(device, { fatType, label: 'PIIMG', ...rest });
    expect(probeFat(device)).toMatchObject({ fatType, label: 'PIIMG', volumeId: '1234-5678', sectorSize: 512 });
    const volume = await mountFat(device, { now: () => new Date(Date.UTC(2030, 0, 1)) });
    expect(volume.getLabel()).toBe('PIIMG');
    const free = volume.freeBytes();
    await volume.mkdir('/overlays');
    await volume.writeFile('/overlays/Some Overlay.dtbo', new Uint8Array(10_000).fill(7));
    await volume.writeFile('/cmdline.txt', 'console=serial0,115200 root=PARTUUID=1234abcd-02\n');
    await volume.close();
    const again = await mountFat(device, { readOnly: true });
    expect(new TextDecoder().decode(await again.readFile('/CMDLINE.TXT'))).toContain('PARTUUID=1234abcd-02');
    expect((await again.readFile('/overlays/some overlay.dtbo')).length).toBe(10_000);
    expect(again.freeBytes()).toBeLessThan(free);
    expect((await again.stat('/cmdline.txt')).mtime.toISOString()).toBe('2030-01-01T00:00:00.000Z');
  });

  it('refuses impossible requests', () => {
    expect(() => formatFat(new MemoryDevice(1024 * 1024), { fatType: 'fat32' })).toThrow(/cannot hold/);
    expect(() => formatFat(new MemoryDevice(1024 * 1024), { clusterSize: 3000 })).toThrow(/cluster size/);
    expect(() => formatFat(new MemoryDevice(1024 * 1024), { label: 'a/b' })).toThrow(/label/);
  });

  describe.skipIf(!hasTool('fsck.fat') || !hasTool('mtype'))('checked by fsck.fat and mtools', () => {
    it.each(cases)('$fatType from formatFat is fsck-clean before and after writes', async ({ fatType, size, ...rest }) => {
      const { dir, cleanup } = tempDir();
      try {
        const device = new MemoryDevice(size);
        formatFat(device, { fatType, label: 'bootfs', ...rest });
        const image = join(dir, 'fmt.img');
        writeFileSync(image, device.bytes);
        expect(fsck(image).clean, fsck(image).output).toBe(true);
        expect(mlabel(image)).toContain('bootfs');
        const volume = await mountFat(device);
        await volume.writeFile('/config.txt', 'dtparam=audio=on\n');
        await volume.mkdir('/A Directory');
        await volume.writeFile('/A Directory/ñandú.txt', 'x');
        await volume.close();
        writeFileSync(image, device.bytes);
        const result = fsck(image);
        expect(result.clean, result.output).toBe(true);
        expect(mdirNames(image, '/')).toEqual(['A Directory', 'config.txt']);
        expect(new TextDecoder().decode(mtype(image, '/A Directory/ñandú.txt'))).toBe('x');
      } finally {
        cleanup();
      }
    });
  });
});
