import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { mountExt4, type Ext4Volume } from '../../src/fs/ext4/index.js';
import { assertClean, cleanupWorkDir, debugfsCat, debugfsStat, fixtures, haveOracles, imageFile, makeImage } from './support.js';

afterAll(cleanupWorkDir);

const T0 = new Date('2024-05-06T07:08:09.123Z');

async function expectCode(promise: Promise<unknown>, code: string, path?: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(isPiimgError(error), String(error)).toBe(true);
    expect((error as { code: string }).code).toBe(code);
    if (path !== undefined) expect((error as { data: { path?: string } }).data.path).toBe(path);
    return;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** Byte-for-byte equality; toEqual on megabyte arrays is far too slow. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))).toBe(true);
}

function bytesOf(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

for (const fixture of fixtures) {
  describe.skipIf(!haveOracles)(`ext4 volume on ${fixture.name}`, () => {
    let device: MemoryDevice;
    let volume: Ext4Volume;
    let imagePath: string | undefined;

    beforeEach(async () => {
      device = new MemoryDevice(makeImage(fixture));
      volume = await mountExt4(device, { now: () => new Date(T0) });
      imagePath = undefined;
    });

    /** Flushes and writes the image to a file for debugfs. */
    async function snapshot(): Promise<string> {
      await volume.flush();
      if (imagePath) rmSync(imagePath, { force: true });
      imagePath = imageFile(device.bytes);
      return imagePath;
    }

    afterEach(async () => {
      await volume.close();
      if (imagePath) rmSync(imagePath, { force: true });
      // Every test leaves a filesystem both e2fsck builds call clean.
      await assertClean(device.bytes);
    });

    it('writes and reads files; debugfs agrees on content, mode, owner and times', async () => {
      const data = bytesOf(100_000, 7);
      await volume.writeFile('/blob.bin', data, { mode: 0o600, uid: 1000, gid: 1001 });
      await volume.writeFile('/hello.txt', 'hello, pi\n');
      await volume.writeFile('/empty', new Uint8Array(0));
      expectSameBytes(await volume.readFile('/blob.bin'), data);
      expect(new TextDecoder().decode(await volume.readFile('/hello.txt'))).toBe('hello, pi\n');
      expect((await volume.readFile('/empty')).length).toBe(0);

      const stat = await volume.stat('/blob.bin');
      expect(stat).toMatchObject({ type: 'file', mode: 0o100600, uid: 1000, gid: 1001, size: 100_000, nlink: 1 });
      expect(stat.mtime.getTime()).toBe(fixture.largeInodes ? T0.getTime() : Math.floor(T0.getTime() / 1000) * 1000);

      const path = await snapshot();
      expectSameBytes(debugfsCat(path, '/blob.bin'), data);
      const native = debugfsStat(path, '/blob.bin');
      expect(native).toMatchObject({ type: 'regular', mode: 0o600, uid: 1000, gid: 1001, size: 100_000, links: 1 });
      expect(native.mtime.sec).toBe(Math.floor(T0.getTime() / 1000));
      if (fixture.largeInodes) expect(native.mtime.nsec).toBe(123_000_000);
      // New files use extents when the filesystem has them (EXT4_EXTENTS_FL).
      expect((native.flags & 0x80000) !== 0).toBe(fixture.name.startsWith('ext4'));
    });

    it('overwrites in place, streams chunks and keeps the inode', async () => {
      await volume.writeFile('/f', bytesOf(50_000, 1));
      const ino = (await volume.stat('/f')).ino;
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < 5; i++) yield bytesOf(3000, i + 10);
      }
      await volume.writeFile('/f', chunks(), { mtime: new Date('2001-02-03T04:05:06Z') });
      const expected = new Uint8Array(15000);
      for (let i = 0; i < 5; i++) expected.set(bytesOf(3000, i + 10), i * 3000);
      expect(await volume.readFile('/f')).toEqual(expected);
      const stat = await volume.stat('/f');
      expect(stat.ino).toBe(ino);
      expect(stat.size).toBe(15000);
      expect(stat.mtime.toISOString()).toBe('2001-02-03T04:05:06.000Z');
      await volume.writeFile('/f', [bytesOf(10, 3)]);
      expect(await volume.readFile('/f')).toEqual(bytesOf(10, 3));
      const path = await snapshot();
      expect(debugfsCat(path, '/f')).toEqual(bytesOf(10, 3));
    });

    it('streams a multi-MiB file in odd-sized chunks; debugfs reads the same bytes', async () => {
      const total = 6 * 1024 * 1024 + 1234;
      const data = bytesOf(total, 99);
      function* chunks(): Generator<Uint8Array> {
        for (let at = 0; at < total; at += 777_777) yield data.subarray(at, Math.min(at + 777_777, total));
      }
      await volume.writeFile('/stream.bin', chunks());
      expect((await volume.stat('/stream.bin')).size).toBe(total);
      expectSameBytes(await volume.readFile('/stream.bin'), data);
      const path = await snapshot();
      expectSameBytes(debugfsCat(path, '/stream.bin'), data);
      expect(debugfsStat(path, '/stream.bin').size).toBe(total);
    });

    it('mkdir (recursive, mode, owner), readdir with types, rm recursive', async () => {
      await volume.mkdir('/a/b/c', { recursive: true, mode: 0o750, uid: 5, gid: 6 });
      await volume.mkdir('/a/b/c', { recursive: true });
      await expectCode(volume.mkdir('/a/b/c'), 'EEXIST', '/a/b/c');
      await expectCode(volume.mkdir('/x/y'), 'ENOENT', '/x/y');
      await volume.writeFile('/a/b/file', 'x');
      await volume.symlink('c', '/a/b/link');
      const entries = await volume.readdir('/a/b');
      expect(entries.sort((p, q) => p.name.localeCompare(q.name))).toEqual([
        { name: 'c', type: 'directory' },
        { name: 'file', type: 'file' },
        { name: 'link', type: 'symlink' },
      ]);
      expect(await volume.stat('/a/b/c')).toMatchObject({ type: 'directory', mode: 0o40750, uid: 5, gid: 6, nlink: 2 });
      expect((await volume.stat('/a/b')).nlink).toBe(3);
      const path = await snapshot();
      expect(debugfsStat(path, '/a/b/c')).toMatchObject({ type: 'directory', mode: 0o750, uid: 5, gid: 6, links: 2 });

      await expectCode(volume.rm('/a'), 'ENOTEMPTY', '/a');
      await volume.rm('/a', { recursive: true });
      expect(await volume.exists('/a')).toBe(false);
      await volume.rm('/a', { force: true });
      await expectCode(volume.rm('/a'), 'ENOENT', '/a');
      expect((await volume.stat('/')).nlink).toBe(3); // ".", "..", lost+found's ".."
    });

    it('symlinks fast and slow, readlink, lstat against stat', async () => {
      await volume.writeFile('/target', 'T');
      const slowTarget = '/' + 'long-directory-name/'.repeat(10) + 'target';
      await volume.symlink('/target', '/fast', { uid: 7, gid: 8 });
      await volume.symlink(slowTarget, '/slow');
      expect(await volume.readlink('/fast')).toBe('/target');
      expect(await volume.readlink('/slow')).toBe(slowTarget);
      expect(await volume.lstat('/fast')).toMatchObject({ type: 'symlink', mode: 0o120777, uid: 7, gid: 8, size: 7 });
      expect((await volume.stat('/fast')).type).toBe('file');
      expect(new TextDecoder().decode(await volume.readFile('/fast'))).toBe('T');
      await expectCode(volume.stat('/slow'), 'ENOENT');
      await expectCode(volume.readlink('/target'), 'EINVAL', '/target');
      const path = await snapshot();
      expect(debugfsStat(path, '/fast')).toMatchObject({ type: 'symlink', fastLink: '/target', uid: 7, gid: 8 });
      const slow = debugfsStat(path, '/slow');
      expect(slow.type).toBe('symlink');
      expect(slow.fastLink).toBeUndefined();
      expect(new TextDecoder().decode(debugfsCat(path, '/slow'))).toBe(slowTarget);
    });

    it('hard links count and survive removal of the first name', async () => {
      await volume.writeFile('/one', 'shared');
      await volume.link('/one', '/two');
      expect((await volume.stat('/one')).nlink).toBe(2);
      expect((await volume.stat('/two')).ino).toBe((await volume.stat('/one')).ino);
      await volume.rm('/one');
      expect(new TextDecoder().decode(await volume.readFile('/two'))).toBe('shared');
      expect((await volume.stat('/two')).nlink).toBe(1);
      await expectCode(volume.link('/', '/rootlink'), 'EPERM');
    });

    it('paths resolved before name the new directories after rename, rm and a symlink in their place', async () => {
      await volume.mkdir('/a/b', { recursive: true });
      await volume.writeFile('/a/b/one', 'one');
      expect((await volume.lstat('/a/b')).type).toBe('directory');
      // The whole tree moves away: /a/b must not still lead to the moved directory.
      await volume.rename('/a', '/moved');
      await expectCode(volume.lstat('/a/b'), 'ENOENT', '/a/b');
      expect(await volume.lstatIfPresent('/a/b/one')).toBeUndefined();
      await volume.mkdir('/a');
      await expectCode(volume.writeFile('/a/b/two', 'two'), 'ENOENT');
      expect(await volume.readdir('/moved/b')).toEqual([{ name: 'one', type: 'file' }]);
      // Removed and made again (libext2fs may hand out the freed inodes again): an empty directory.
      await volume.rm('/moved', { recursive: true });
      await expectCode(volume.readdir('/moved/b'), 'ENOENT', '/moved/b');
      await volume.mkdir('/moved/b', { recursive: true });
      expect(await volume.readdir('/moved/b')).toEqual([]);
      // A directory replaced by a symlink: lstat describes the link, stat follows it.
      await volume.mkdir('/target');
      await volume.writeFile('/target/inside', 'x');
      await volume.rm('/a');
      await volume.symlink('/target', '/a');
      expect((await volume.lstat('/a')).type).toBe('symlink');
      expect(new TextDecoder().decode(await volume.readFile('/a/inside'))).toBe('x');
      expect(await volume.lstatIfPresent('/a/missing')).toBeUndefined();
      expect((await volume.lstatIfPresent('/a'))?.type).toBe('symlink');
      await expectCode(volume.stat('/a/missing'), 'ENOENT', '/a/missing');
    });

    it('rename replaces an existing file, moves directories, refuses cycles', async () => {
      await volume.writeFile('/new', 'new content');
      await volume.writeFile('/old', 'old content that is longer');
      const newIno = (await volume.stat('/new')).ino;
      await volume.rename('/new', '/old');
      expect(await volume.exists('/new')).toBe(false);
      expect(new TextDecoder().decode(await volume.readFile('/old'))).toBe('new content');
      expect((await volume.stat('/old')).ino).toBe(newIno);

      await volume.mkdir('/d1/sub', { recursive: true });
      await volume.mkdir('/d2');
      await volume.writeFile('/d1/sub/f', 'f');
      await volume.rename('/d1/sub', '/d2/moved');
      expect(new TextDecoder().decode(await volume.readFile('/d2/moved/f'))).toBe('f');
      expect((await volume.stat('/d1')).nlink).toBe(2);
      expect((await volume.stat('/d2')).nlink).toBe(3);
      await expectCode(volume.rename('/d2', '/d2/moved/inside'), 'EINVAL');
      await volume.mkdir('/d3');
      await volume.writeFile('/d3/x', 'x');
      await expectCode(volume.rename('/d2/moved', '/d3'), 'ENOTEMPTY');
      await expectCode(volume.rename('/d2/moved', '/old'), 'ENOTDIR');
      await expectCode(volume.rename('/old', '/d2'), 'EISDIR');
      await volume.mkdir('/empty');
      await volume.rename('/d2/moved', '/empty');
      expect(new TextDecoder().decode(await volume.readFile('/empty/f'))).toBe('f');
      const path = await snapshot();
      expect(new TextDecoder().decode(debugfsCat(path, '/old'))).toBe('new content');
    });

    it('chmod, chown and utimes reach the inode (times beyond 2038 where inodes are large)', async () => {
      await volume.writeFile('/f', 'x');
      await volume.chmod('/f', 0o4755);
      await volume.chown('/f', 70000, 70001);
      const atime = new Date('2030-01-01T00:00:00.5Z');
      const mtime = fixture.largeInodes ? new Date('2100-06-01T12:00:00.25Z') : new Date('1999-12-31T23:59:59Z');
      await volume.utimes('/f', atime, mtime);
      const stat = await volume.stat('/f');
      expect(stat).toMatchObject({ mode: 0o104755, uid: 70000, gid: 70001 });
      expect(stat.mtime.getTime()).toBe(mtime.getTime());
      const path = await snapshot();
      const native = debugfsStat(path, '/f');
      expect(native).toMatchObject({ mode: 0o4755, uid: 70000, gid: 70001 });
      expect(native.mtime.sec).toBe(Math.floor(mtime.getTime() / 1000));
      expect(native.atime.sec).toBe(Math.floor(atime.getTime() / 1000));
    });

    it('reports errno codes with the path', async () => {
      await volume.writeFile('/file', 'x');
      await expectCode(volume.readFile('/missing'), 'ENOENT', '/missing');
      await expectCode(volume.readFile('/file/below'), 'ENOTDIR', '/file/below');
      await expectCode(volume.writeFile('/file/below', 'x'), 'ENOTDIR', '/file/below');
      await expectCode(volume.readFile('/'), 'EISDIR', '/');
      await expectCode(volume.writeFile('/lost+found', 'x'), 'EISDIR', '/lost+found');
      await expectCode(volume.writeFile('/' + 'n'.repeat(256), 'x'), 'ENAMETOOLONG');
      await expectCode(volume.symlink('x', '/file'), 'EEXIST', '/file');
      await expectCode(volume.readdir('/file'), 'ENOTDIR', '/file');
      await expectCode(volume.writeFile('relative', 'x'), 'EINVAL');
    });
  });
}
