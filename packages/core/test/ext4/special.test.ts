import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import type { BlockReader } from '../../src/device/types.js';
import { isPiimgError } from '../../src/errors.js';
import { formatExt4, mountExt4, probeExt, verifyExt4 } from '../../src/fs/ext4/index.js';
import { run } from '../../../../test/support/tools.js';
import { assertClean, cleanupWorkDir, debugfsStat, fixtures, haveOracles, imageFile, makeImage } from './support.js';

afterAll(cleanupWorkDir);

const defaults = fixtures[0]!;
const pigen = fixtures[1]!;
const ext2 = fixtures[5]!;
const fixedClock = () => new Date('2023-03-04T05:06:07Z');

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (isPiimgError(error)) return error.code;
    throw error;
  }
  return 'OK';
}

/** A reader that counts what reaches it and has no write method at all. */
function readerOf(bytes: Uint8Array): BlockReader & { reads: number } {
  const reader = {
    size: bytes.length,
    reads: 0,
    read(byteOffset: number, length: number) {
      reader.reads++;
      return bytes.slice(byteOffset, byteOffset + length);
    },
  };
  return reader;
}

describe.skipIf(!haveOracles)('ext4 volume: limits and safety', () => {
  it('a full filesystem gives ENOSPC and stays clean; the failed file is gone', async () => {
    const device = new MemoryDevice(makeImage(pigen, 8));
    const volume = await mountExt4(device, { now: fixedClock });
    await volume.writeFile('/keep', 'kept');
    const code = await codeOf(volume.writeFile('/huge', new Uint8Array(16 << 20)));
    expect(code).toBe('ENOSPC');
    expect(await volume.exists('/huge')).toBe(false);
    // Many small files until inodes or blocks run out.
    let error = 'OK';
    for (let i = 0; i < 10_000 && error === 'OK'; i++) error = await codeOf(volume.writeFile(`/f${i}`, new Uint8Array(3000)));
    expect(error).toBe('ENOSPC');
    expect(new TextDecoder().decode(await volume.readFile('/keep'))).toBe('kept');
    // Whatever else is tried on the full filesystem fails cleanly or succeeds.
    const outcomes = [
      await codeOf(volume.mkdir('/newdir')),
      await codeOf(volume.symlink('/' + 'long-target/'.repeat(20), '/slowlink')),
      await codeOf(volume.symlink('/short', '/fastlink')),
      await codeOf(volume.writeFile('/keep', new Uint8Array(1 << 20))),
      await codeOf(volume.rename('/keep', '/kept')),
    ];
    for (const outcome of outcomes) expect(['OK', 'ENOSPC']).toContain(outcome);
    // A replacement that cannot fit leaves the old content in place.
    expect(outcomes[3]).toBe('ENOSPC');
    expect(new TextDecoder().decode(await volume.readFile(outcomes[4] === 'OK' ? '/kept' : '/keep'))).toBe('kept');
    // Freeing space makes room again.
    await volume.rm('/f0');
    await volume.rm('/f1');
    await volume.writeFile('/after', 'x');
    await volume.close();
    await assertClean(device.bytes);
  });

  const htreeCases = [
    { fixture: defaults, count: 20_000, sizeMiB: 64 },
    { fixture: fixtures[3]!, count: 3000, sizeMiB: 16 },
    { fixture: pigen, count: 3000, sizeMiB: 16 },
  ];
  it('refuses to move a directory below itself through a directory large enough for a name index', async () => {
    const device = new MemoryDevice(makeImage(fixtures[3]!, 16, []));
    const volume = await mountExt4(device, { now: fixedClock });
    await volume.mkdir('/outer/big/sub', { recursive: true });
    // 300 entries: /outer/big spans several blocks, so its names come from the in-memory index.
    for (let i = 0; i < 300; i++) await volume.writeFile(`/outer/big/entry-with-a-longish-name-${i}`, '');
    expect(await codeOf(volume.rename('/outer', '/outer/big/sub/outer'))).toBe('EINVAL');
    expect(await volume.exists('/outer/big/sub')).toBe(true);
    await volume.close();
  });

  for (const { fixture, count, sizeMiB } of htreeCases) {
    it(`a directory with ${count} entries becomes an htree and stays consistent (${fixture.name})`, async () => {
      const device = new MemoryDevice(makeImage(fixture, sizeMiB, ['-N', String(count + 5000)]));
      const volume = await mountExt4(device, { now: fixedClock });
      await volume.mkdir('/big');
      for (let i = 0; i < count; i++) await volume.writeFile(`/big/entry-with-a-longish-name-${i}`, i % 100 === 0 ? `${i}` : '');
      const names = await volume.readdir('/big');
      expect(names.length).toBe(count);
      expect(new Set(names.map((entry) => entry.name)).size).toBe(count);
      expect(new TextDecoder().decode(await volume.readFile('/big/entry-with-a-longish-name-1200'))).toBe('1200');
      await volume.rm('/big/entry-with-a-longish-name-777');
      await volume.rename('/big/entry-with-a-longish-name-778', '/big/renamed');
      await volume.mkdir('/big/subdir');
      await volume.symlink('renamed', '/big/link');
      expect(await volume.exists('/big/entry-with-a-longish-name-777')).toBe(false);
      expect(await volume.exists('/big/renamed')).toBe(true);
      await volume.close();
      const path = imageFile(device.bytes);
      try {
        // EXT2_INDEX_FL (0x1000): the directory is hashed.
        expect(debugfsStat(path, '/big').flags & 0x1000).toBe(0x1000);
        const listing = run('debugfs', ['-R', 'ls /big', path]).stdout;
        expect(listing).toContain('entry-with-a-longish-name-1999');
        expect(listing).toContain('renamed');
      } finally {
        rmSync(path, { force: true });
      }
      await assertClean(device.bytes);
    });
  }

  it('reads files written by native debugfs, holes included, on every fixture', async () => {
    const { writeFileSync, openSync, writeSync, closeSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { workDir } = await import('./support.js');
    const host = join(workDir, 'sparse.bin');
    // 3 MiB + 5 bytes with data only at 0, 1 MiB and the end: debugfs leaves holes between.
    writeFileSync(host, new Uint8Array(0));
    const fd = openSync(host, 'r+');
    writeSync(fd, new Uint8Array(5000).fill(1), 0, 5000, 0);
    writeSync(fd, new Uint8Array(3).fill(2), 0, 3, 1 << 20);
    writeSync(fd, new Uint8Array(5).fill(3), 0, 5, 3 << 20);
    closeSync(fd);
    const expected = new Uint8Array(readFileSync(host));
    for (const fixture of fixtures) {
      const path = imageFile(makeImage(fixture));
      run('debugfs', ['-w', '-R', `write ${host} sparse`, path]);
      const bytes = new Uint8Array(readFileSync(path));
      rmSync(path, { force: true });
      const volume = await mountExt4(new MemoryDevice(bytes), { readOnly: true });
      const actual = await volume.readFile('/sparse');
      await volume.close();
      expect(actual.length, fixture.name).toBe(expected.length);
      expect(Buffer.from(actual).equals(Buffer.from(expected)), fixture.name).toBe(true);
    }
  });

  it('a directory with more than 65,000 subdirectories gets the dir_nlink count of 1', async () => {
    const count = 65_010;
    const device = new MemoryDevice(makeImage(fixtures[3]!, 112, ['-N', String(count + 200), '-I', '128']));
    const volume = await mountExt4(device, { now: fixedClock });
    await volume.mkdir('/many');
    for (let i = 0; i < count; i++) await volume.mkdir(`/many/${i}`);
    // Past EXT2_LINK_MAX (65000) the kernel and e2fsck expect 1: "too many to count".
    expect((await volume.stat('/many')).nlink).toBe(1);
    await volume.rm('/many/5');
    expect((await volume.stat('/many')).nlink).toBe(1);
    await volume.close();
    await assertClean(device.bytes);
  }, 300_000);

  it('the same operations with a fixed clock give byte-identical images', async () => {
    const base = makeImage(defaults);
    const images: Uint8Array[] = [];
    for (let round = 0; round < 2; round++) {
      const device = new MemoryDevice(base.slice());
      const volume = await mountExt4(device, { now: fixedClock });
      await volume.mkdir('/etc/ssh', { recursive: true });
      await volume.writeFile('/etc/hostname', 'pi-0042\n');
      await volume.writeFile('/etc/ssh/key', new Uint8Array(10_000).fill(7), { mode: 0o600 });
      await volume.symlink('/etc/hostname', '/hn');
      await volume.rename('/etc/hostname', '/etc/hostname2');
      await volume.close();
      images.push(device.bytes);
    }
    expect(Buffer.compare(Buffer.from(images[0]!), Buffer.from(images[1]!))).toBe(0);
  });

  it('SOURCE_DATE_EPOCH drives the default clock', async () => {
    const saved = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    try {
      const device = new MemoryDevice(makeImage(defaults));
      const volume = await mountExt4(device);
      await volume.writeFile('/f', 'x');
      expect((await volume.stat('/f')).mtime.getTime()).toBe(1_700_000_000_000);
      expect((await volume.stat('/')).mtime.getTime()).toBe(1_700_000_000_000);
      await volume.close();
    } finally {
      if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = saved;
    }
  });

  it('a read-only mount over a BlockReader reads and never writes', async () => {
    const device = new MemoryDevice(makeImage(defaults));
    const writer = await mountExt4(device, { now: fixedClock });
    await writer.writeFile('/data', 'payload');
    await writer.close();
    const before = device.bytes.slice();
    const reader = readerOf(device.bytes);
    const volume = await mountExt4(reader);
    expect(volume.readOnly).toBe(true);
    expect(new TextDecoder().decode(await volume.readFile('/data'))).toBe('payload');
    expect(await codeOf(volume.writeFile('/x', 'x'))).toBe('EROFS');
    expect(await codeOf(volume.mkdir('/d'))).toBe('EROFS');
    await volume.close();
    expect(reader.reads).toBeGreaterThan(0);

    // readOnly on a writable device: not one write reaches it.
    let writes = 0;
    const guarded = {
      size: device.size,
      read: (o: number, n: number) => device.read(o, n),
      write: () => {
        writes++;
      },
      flush: () => {},
    };
    const ro = await mountExt4(guarded, { readOnly: true });
    await ro.readdir('/');
    await ro.flush();
    await ro.close();
    expect(writes).toBe(0);
    expect(Buffer.compare(Buffer.from(before), Buffer.from(device.bytes))).toBe(0);
  });

  it('refuses to write unknown incompat/ro_compat features, names them, and still reads when safe', async () => {
    const bytes = makeImage(ext2);
    const setup = await mountExt4(new MemoryDevice(bytes), { now: fixedClock });
    await setup.writeFile('/f', 'readable');
    await setup.close();
    const view = new DataView(bytes.buffer, 1024, 1024);

    // An unknown ro_compat bit (bit 20): reading is safe, writing is not.
    const ro = bytes.slice();
    new DataView(ro.buffer, 1024, 1024).setUint32(0x64, view.getUint32(0x64, true) | 0x100000, true);
    try {
      await mountExt4(new MemoryDevice(ro));
      throw new Error('mounted');
    } catch (error) {
      expect(isPiimgError(error, 'E_EXT4_UNSUPPORTED_FEATURE')).toBe(true);
      expect((error as { data: { features: string[] } }).data.features).toEqual(['FEATURE_R20']);
    }
    const readable = await mountExt4(new MemoryDevice(ro), { readOnly: true });
    expect(new TextDecoder().decode(await readable.readFile('/f'))).toBe('readable');
    await readable.close();

    // dirdata (incompat 0x1000) changes the directory format: not even reading.
    const inc = bytes.slice();
    new DataView(inc.buffer, 1024, 1024).setUint32(0x60, view.getUint32(0x60, true) | 0x1000, true);
    for (const readOnly of [false, true]) {
      try {
        await mountExt4(new MemoryDevice(inc), { readOnly });
        throw new Error('mounted');
      } catch (error) {
        expect(isPiimgError(error, 'E_EXT4_UNSUPPORTED_FEATURE')).toBe(true);
        expect((error as Error).message).toContain('dirdata');
      }
    }
    expect(await codeOf(mountExt4(new MemoryDevice(4096)))).toBe('E_EXT4_BAD_SUPERBLOCK');
  });
});

describe.skipIf(!haveOracles)('verifyExt4 and formatExt4', () => {
  it('verify finds a damaged filesystem and reads only', async () => {
    const bytes = makeImage(pigen);
    const clean = await verifyExt4(readerOf(bytes));
    expect(clean).toMatchObject({ clean: true, problems: [] });
    // Make the root inode claim 7 links: a classic pass 4 finding.
    const path = imageFile(bytes);
    run('debugfs', ['-w', '-R', 'sif / links_count 7', path]);
    const { readFileSync } = await import('node:fs');
    const damaged = new Uint8Array(readFileSync(path));
    rmSync(path, { force: true });
    const copy = damaged.slice();
    const result = await verifyExt4(readerOf(damaged));
    expect(result.clean).toBe(false);
    expect(result.status).toBe(4);
    expect(result.problems.join('\n')).toMatch(/Inode 2 ref count is 7, should be/);
    expect(Buffer.compare(Buffer.from(copy), Buffer.from(damaged))).toBe(0);
  });

  const formats: Array<{ name: string; options: Parameters<typeof formatExt4>[1]; type: string; features: string[] }> = [
    { name: 'ext4 defaults', options: { label: 'rootfs' }, type: 'ext4', features: ['metadata_csum', 'extent', 'has_journal'] },
    { name: 'pi-gen', options: { features: ['^64bit', '^huge_file'] }, type: 'ext4', features: ['metadata_csum'] },
    { name: 'orphan_file', options: { features: ['orphan_file', 'metadata_csum_seed'], blockSize: 1024 }, type: 'ext4', features: ['orphan_file'] },
    { name: 'ext3', options: { type: 'ext3' }, type: 'ext3', features: ['has_journal'] },
    { name: 'ext2', options: { type: 'ext2', inodeSize: 128 }, type: 'ext2', features: [] },
  ];
  for (const format of formats) {
    it(`formatExt4 ${format.name}: native e2fsck clean, probe agrees, files can be written`, async () => {
      const device = new MemoryDevice(24 << 20);
      await formatExt4(device, format.options);
      const probe = probeExt(device);
      expect(probe?.type).toBe(format.type);
      for (const feature of format.features) expect(probe?.features).toContain(feature);
      if (format.name === 'pi-gen') expect(probe?.features).not.toContain('64bit');
      if (format.options?.label) expect(probe?.label).toBe(format.options.label);
      const volume = await mountExt4(device, { now: fixedClock });
      await volume.writeFile('/hello', 'hi');
      await volume.close();
      await assertClean(device.bytes);
    });
  }

  it('formatExt4 with uuid, hash seed and time gives identical bytes twice', async () => {
    const options = {
      uuid: '11111111-2222-3333-4444-555555555555',
      hashSeed: '66666666-7777-8888-9999-aaaaaaaaaaaa',
      now: new Date('2024-01-01T00:00:00Z'),
    };
    const a = new MemoryDevice(16 << 20);
    const b = new MemoryDevice(16 << 20);
    await formatExt4(a, options);
    await formatExt4(b, options);
    expect(probeExt(a)?.uuid).toBe(options.uuid);
    expect(Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes))).toBe(0);
    // Times libext2fs stamps itself keep all 32 bits (patch 0001: 1.47.2 kept 28, which cuts 2024 down to 1978).
    const volume = await mountExt4(a, { readOnly: true });
    expect((await volume.stat('/')).mtime.getTime()).toBe(options.now.getTime());
    await volume.close();
  });
});
