import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/device/file.js';
import { isPiimgError } from '../../src/errors.js';
import { mountFat, probeFat } from '../../src/fs/fat/index.js';
import { hasTool } from '../../../../test/support/tools.js';
import { FIXTURES, fsck, makeFat, mcopy, mdirNames, mlabel, mmd, mtype, pattern, tempDir } from './support.js';

const haveTools = hasTool('mkfs.fat') && hasTool('fsck.fat') && hasTool('mtype');
const fixedClock = () => new Date(Date.UTC(2024, 4, 17, 12, 34, 56));

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    if (isPiimgError(error, code)) return;
    throw error;
  }
  throw new Error(`expected ${code}`);
}

const NAMES = [
  'Hello World.txt',
  'MixedCase.Txt',
  'ünïcödé ✓.txt',
  'readme.txt',
  'UPPER.TXT',
  'lower.TXT',
  'config.txt',
  'a',
  'many.dots.in.name.tar.gz',
  '  leading spaces',
  'x'.repeat(200),
  '日本語のファイル名.md',
];

describe.skipIf(!haveTools).each(FIXTURES)('FAT volume against fsck.fat and mtools: $name', (fixture) => {
  let dir: string;
  let cleanup: () => void;
  let image: string;

  beforeAll(() => {
    ({ dir, cleanup } = tempDir());
  });
  afterAll(() => cleanup());

  function fresh(name: string): string {
    image = makeFat(dir, fixture, `${name}.img`);
    return image;
  }

  function assertClean(): void {
    const result = fsck(image);
    expect(result.clean, result.output).toBe(true);
  }

  it('probes and reads a volume written by mtools', async () => {
    fresh('read');
    const host = join(dir, 'host.bin');
    const content = pattern(70_000, 1);
    writeFileSync(host, content);
    mmd(image, '/Sub Dir');
    mcopy(image, host, '/Sub Dir/Data File.bin');
    writeFileSync(host, 'tiny');
    mcopy(image, host, '/TINY.TXT');
    const device = FileDevice.open(image);
    try {
      const probe = probeFat(device);
      expect(probe?.fatType).toBe(fixture.name.slice(0, 5).toLowerCase());
      expect(probe?.label).toBe('TESTVOL');
      expect(probe?.volumeId).toBe('1234-5678');
      const volume = await mountFat(device, { readOnly: true });
      expect(volume.getLabel()).toBe('TESTVOL');
      expect((await volume.readdir('/')).map((e) => e.name).sort()).toEqual(['Sub Dir', 'TINY.TXT']);
      expect(await volume.readFile('/sub dir/DATA FILE.BIN')).toEqual(content);
      expect(new TextDecoder().decode(await volume.readFile('/tiny.txt'))).toBe('tiny');
      const stats = await volume.stat('/Sub Dir');
      expect(stats.type).toBe('directory');
      expect(stats.mode).toBe(0o040755);
      expect((await volume.stat('/TINY.TXT')).size).toBe(4);
      await expectCode(volume.writeFile('/x', 'y'), 'EROFS');
      await expectCode(volume.readFile('/nope'), 'ENOENT');
      await expectCode(volume.readFile('/Sub Dir'), 'EISDIR');
      await volume.close();
    } finally {
      device.close();
    }
  });

  it('writes names and sizes that fsck.fat accepts and mtools reads back exactly', async () => {
    fresh('write');
    const device = FileDevice.open(image);
    const volume = await mountFat(device, { now: fixedClock });
    const cs = volume.geometry.clusterSize;
    const sizes = [0, 1, cs - 1, cs, cs + 1, 3 * cs + 7, 100_000];
    const expected = new Map<string, Uint8Array>();
    await volume.mkdir('/dir/deeper/deepest', { recursive: true });
    for (const [i, name] of NAMES.entries()) {
      const data = pattern(sizes[i % sizes.length]!, i);
      const path = i % 2 ? `/dir/${name}` : `/${name}`;
      await volume.writeFile(path, data);
      expected.set(path, data);
    }
    await volume.writeFile('/dir/deeper/deepest/streamed.bin', (function* () {
      for (let i = 0; i < 5; i++) yield pattern(1000 + i, i);
    })());
    expected.set('/dir/deeper/deepest/streamed.bin', new Uint8Array(Buffer.concat([0, 1, 2, 3, 4].map((i) => pattern(1000 + i, i)))));
    await volume.close();
    device.close();
    assertClean();
    const rootNames = NAMES.filter((_, i) => i % 2 === 0);
    const dirNames = NAMES.filter((_, i) => i % 2 === 1);
    expect(mdirNames(image, '/')).toEqual([...rootNames, 'dir'].sort());
    expect(mdirNames(image, '/dir')).toEqual([...dirNames, 'deeper'].sort());
    for (const [path, data] of expected) expect(mtype(image, path), path).toEqual(data);
    const again = await mountFat(FileDevice.open(image), { readOnly: true });
    const stat = await again.stat('/dir/readme.txt');
    expect(stat.mtime.toISOString()).toBe('2024-05-17T12:34:56.000Z');
    expect((await again.readdir('/')).map((e) => e.name).sort()).toEqual([...rootNames, 'dir'].sort());
  });

  it('overwrites, appends, truncates, deletes, renames and moves', async () => {
    fresh('modify');
    const device = FileDevice.open(image);
    const volume = await mountFat(device, { now: fixedClock });
    const cs = volume.geometry.clusterSize;
    const freeAtStart = volume.freeBytes();
    await volume.mkdir('/a');
    await volume.mkdir('/b');
    await volume.writeFile('/a/file one.txt', pattern(5 * cs, 1));
    await volume.writeFile('/a/file one.txt', pattern(2 * cs + 3, 2));
    await volume.appendFile('/a/file one.txt', pattern(cs, 3));
    await volume.writeFile('/a/trunc.bin', pattern(4 * cs, 4));
    await volume.truncate('/a/trunc.bin', cs + 10);
    await volume.writeFile('/a/grow.bin', 'ab');
    await volume.truncate('/a/grow.bin', 2 * cs);
    await volume.writeFile('/a/gone.txt', pattern(cs * 2, 5));
    await volume.rm('/a/gone.txt');
    await volume.writeFile('/a/moved.txt', 'moved content');
    await volume.rename('/a/moved.txt', '/b/Moved Here.txt');
    await volume.rename('/b/Moved Here.txt', '/b/moved here.TXT');
    await volume.mkdir('/a/sub dir');
    await volume.writeFile('/a/sub dir/inner.txt', 'inner');
    await volume.rename('/a/sub dir', '/b/Sub Dir Moved');
    await volume.rename('/b/Sub Dir Moved', '/top level dir');
    await volume.writeFile('/b/replace.txt', 'old');
    await volume.writeFile('/b/source.txt', 'new');
    await volume.rename('/b/source.txt', '/b/replace.txt');
    await expectCode(volume.rename('/b', '/b/inside'), 'EINVAL');
    await expectCode(volume.mkdir('/a'), 'EEXIST');
    await expectCode(volume.rm('/b'), 'ENOTEMPTY');
    await expectCode(volume.symlink('/x', '/link'), 'ENOTSUP');
    await expectCode(volume.writeFile('/bad:name', 'x'), 'EINVAL');
    await volume.writeFile('/remove/me/deep.txt', 'x').catch(() => undefined);
    await volume.mkdir('/remove/me', { recursive: true });
    await volume.writeFile('/remove/me/deep.txt', pattern(3 * cs, 9));
    await volume.rm('/remove', { recursive: true });
    await volume.chmod('/b/replace.txt', 0o600);
    await volume.chown('/b/replace.txt', 1000, 1000);
    await volume.utimes('/b/replace.txt', new Date(Date.UTC(2020, 0, 2)), new Date(Date.UTC(2021, 1, 3, 4, 5, 6)));
    await volume.close();
    device.close();
    assertClean();
    const expectedOne = new Uint8Array([...pattern(2 * cs + 3, 2), ...pattern(cs, 3)]);
    expect(mtype(image, '/a/file one.txt')).toEqual(expectedOne);
    expect(mtype(image, '/a/trunc.bin')).toEqual(pattern(4 * cs, 4).subarray(0, cs + 10));
    const grown = new Uint8Array(2 * cs);
    grown.set([97, 98]);
    expect(mtype(image, '/a/grow.bin')).toEqual(grown);
    expect(mdirNames(image, '/a').sort()).toEqual(['file one.txt', 'grow.bin', 'trunc.bin']);
    expect(mdirNames(image, '/b').sort()).toEqual(['moved here.TXT', 'replace.txt']);
    expect(new TextDecoder().decode(mtype(image, '/b/replace.txt'))).toBe('new');
    expect(new TextDecoder().decode(mtype(image, '/top level dir/inner.txt'))).toBe('inner');
    expect(mdirNames(image, '/')).toEqual(['a', 'b', 'top level dir']);
    const volume2 = await mountFat(FileDevice.open(image));
    const stat = await volume2.stat('/b/replace.txt');
    expect(stat.mtime.toISOString()).toBe('2021-02-03T04:05:06.000Z');
    expect(stat.atime.toISOString()).toBe('2020-01-02T00:00:00.000Z');
    // Deleting everything gives back all the space.
    await volume2.rm('/a', { recursive: true });
    await volume2.rm('/b', { recursive: true });
    await volume2.rm('/top level dir', { recursive: true });
    expect(volume2.freeBytes()).toBe(freeAtStart);
    await volume2.close();
    assertClean();
  });

  it('fills the fixed root of FAT12/16 with ENOSPC, grows directories on FAT32', async () => {
    fresh('full');
    const device = FileDevice.open(image);
    const volume = await mountFat(device, { now: fixedClock });
    const count = volume.geometry.fatType === 'fat32' ? 300 : volume.geometry.rootEntryCount;
    let written = 0;
    let error: unknown;
    try {
      for (let i = 0; i < count; i++) {
        await volume.writeFile(`/a rather long file name number ${i}.txt`, `${i}`);
        written++;
      }
    } catch (caught) {
      error = caught;
    }
    if (volume.geometry.fatType === 'fat32') {
      expect(error).toBeUndefined();
    } else {
      expect(isPiimgError(error, 'ENOSPC')).toBe(true);
      // Each name takes 3 long-name slots and 1 short slot; the label takes one slot.
      expect(written).toBe(Math.floor((volume.geometry.rootEntryCount - 1) / 4));
    }
    await volume.close();
    device.close();
    assertClean();
    const names = mdirNames(image, '/');
    expect(names.length).toBe(written);
    expect(new TextDecoder().decode(mtype(image, `/a rather long file name number ${written - 1}.txt`))).toBe(`${written - 1}`);
  });

  it('writes the volume label where mtools reads it', async () => {
    fresh('label');
    const device = FileDevice.open(image);
    const volume = await mountFat(device);
    volume.setLabel('bootfs');
    expect(volume.getLabel()).toBe('bootfs');
    await volume.close();
    device.close();
    expect(mlabel(image)).toContain('bootfs');
    expect(probeFat(FileDevice.open(image))?.label).toBe('bootfs');
    assertClean();
  });
});
