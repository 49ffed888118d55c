import { describe, expect, it } from 'vitest';
import { isPiimgError } from '../../src/errors.js';
import { MemoryVolume } from '../support/memory-volume.js';

async function code(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return isPiimgError(error) ? error.code : String(error);
  }
}

describe('MemoryVolume (test support)', () => {
  it('keeps modes, owners, links and errno codes like a POSIX filesystem', async () => {
    const v = new MemoryVolume();
    await v.mkdir('/a/b', { recursive: true });
    await v.writeFile('/a/b/f', 'x', { mode: 0o600, uid: 5, gid: 6 });
    expect((await v.stat('/a/b/f')).mode).toBe(0o100600);
    await v.writeFile('/a/b/f', 'yy');
    expect(await v.stat('/a/b/f')).toMatchObject({ uid: 5, gid: 6, size: 2, mode: 0o100600 });
    await v.symlink('b', '/a/link');
    expect(await v.text('/a/link/f')).toBe('yy');
    expect((await v.lstat('/a/link')).type).toBe('symlink');
    await v.symlink('/a/loop', '/a/loop');
    expect(await code(v.readFile('/a/loop'))).toBe('ELOOP');
    expect(await code(v.readFile('/nope'))).toBe('ENOENT');
    expect(await code(v.mkdir('/a'))).toBe('EEXIST');
    expect(await code(v.rm('/a'))).toBe('ENOTEMPTY');
    expect(await code(v.readFile('/a'))).toBe('EISDIR');
    expect(await code(v.readdir('/a/b/f'))).toBe('ENOTDIR');
    await v.link('/a/b/f', '/a/hard');
    expect((await v.stat('/a/hard')).nlink).toBe(2);
    await v.rename('/a/hard', '/a/moved');
    expect(await v.text('/a/moved')).toBe('yy');
    await v.rm('/a', { recursive: true });
    expect(await v.exists('/a')).toBe(false);
  });

  it('behaves like FAT when asked: no owners, no symlinks, case-insensitive names', async () => {
    const v = new MemoryVolume({ kind: 'fat' });
    await v.writeFile('/Config.txt', 'x', { mode: 0o600, uid: 1 });
    expect(await v.text('/config.TXT')).toBe('x');
    expect((await v.stat('/config.txt')).uid).toBe(0);
    expect(await code(v.symlink('a', '/b'))).toBe('ENOTSUP');
    const ro = new MemoryVolume({ readOnly: true });
    expect(await code(ro.writeFile('/x', 'y'))).toBe('EROFS');
  });
});
