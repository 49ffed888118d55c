import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage, isPiimgError } from '@piimg/core';
import { fixturePath, rawFixture, testCacheDir, type FixtureName } from './support/fixtures.js';
import { hasTool, run } from './support/tools.js';
import { makeZip } from './support/zip.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-image-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(isPiimgError(caught), `expected PiimgError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

describe('openImage on the fixtures', () => {
  const expected: Record<FixtureName, { scheme: string; sectorSize: number; parts: [number, string, string | undefined][] }> = {
    'pi-trixie': { scheme: 'mbr', sectorSize: 512, parts: [[1, 'fat32', 'bootfs'], [2, 'ext4', 'rootfs']] },
    'pi-bookworm': { scheme: 'mbr', sectorSize: 512, parts: [[1, 'fat32', 'bootfs'], [2, 'ext4', 'rootfs']] },
    'pi-bookworm-8m': { scheme: 'mbr', sectorSize: 512, parts: [[1, 'fat32', 'bootfs'], [2, 'ext4', 'rootfs']] },
    'pi-bullseye': { scheme: 'mbr', sectorSize: 512, parts: [[1, 'fat32', 'bootfs'], [2, 'ext4', 'rootfs']] },
    'pi-gpt': { scheme: 'gpt', sectorSize: 512, parts: [[1, 'fat32', 'BOOT'], [2, 'ext4', 'ROOT']] },
    'pi-gpt-4k': { scheme: 'gpt', sectorSize: 4096, parts: [[1, 'fat32', 'BOOT'], [2, 'ext4', 'ROOT']] },
    'pi-logical': {
      scheme: 'mbr',
      sectorSize: 512,
      parts: [[1, 'fat32', 'bootfs'], [5, 'ext4', 'rootfs'], [6, 'swap', 'swap'], [7, 'ext4', 'data']],
    },
  };
  for (const [name, want] of Object.entries(expected) as [FixtureName, (typeof expected)[FixtureName]][]) {
    it(`${name}: table, filesystems and labels`, async () => {
      await using image = await openImage(fixturePath(name), { cacheDir: testCacheDir });
      expect(image.compression).toBe('xz');
      expect(image.table.scheme).toBe(want.scheme);
      expect(image.table.sectorSize).toBe(want.sectorSize);
      expect(image.partitions.map((p) => [p.number, p.filesystem.type, p.filesystem.label])).toEqual(want.parts);
      expect(image.partition('boot').number).toBe(1);
      expect(image.partition('root').filesystem.type).toBe('ext4');
    });
  }

  it('reports ext4 features of the pi-gen root', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    const features = image.partition('root').filesystem.features!;
    expect(features).toEqual(expect.arrayContaining(['has_journal', 'extent', 'metadata_csum', 'flex_bg']));
    expect(features).not.toContain('64bit');
    expect(image.partition(2).partUuid).toBe('5e3da7a1-02');
  });

  it('lays out the 8 MiB aligned images as pi-gen does since 2025, with the Trixie ext4 features', async () => {
    for (const name of ['pi-trixie', 'pi-bookworm-8m'] as const) {
      await using image = await openImage(fixturePath(name), { cacheDir: testCacheDir });
      expect(image.partitions.map((p) => p.firstLba)).toEqual([16384, 16384 + 131072]);
      expect(image.partitions.every((p) => (p.firstLba * 512) % (8 << 20) === 0)).toBe(true);
    }
    await using trixie = await openImage(fixturePath('pi-trixie'), { cacheDir: testCacheDir });
    const features = trixie.partition('root').filesystem.features!;
    expect(features).toEqual(expect.arrayContaining(['metadata_csum', 'metadata_csum_seed', 'orphan_file']));
    expect(features).not.toContain('64bit');
  });
});

describe('compressed bases and the cache', () => {
  let raw: string;
  beforeAll(async () => {
    raw = await rawFixture('pi-bookworm', dir);
  });

  it('opens .gz and .zip by signature and caches by content hash', async () => {
    const bytes = readFileSync(raw);
    const gz = join(dir, 'base.img.gz');
    writeFileSync(gz, gzipSync(bytes, { level: 1 }));
    const zip = join(dir, 'base.zip');
    writeFileSync(zip, makeZip([{ name: 'readme.txt', data: Buffer.from('hi') }, { name: 'base.img', data: bytes }]));
    const cacheDir = join(dir, 'cache');
    const progress: string[] = [];
    for (const [path, compression] of [[gz, 'gzip'], [zip, 'zip']] as const) {
      await using image = await openImage(path, { cacheDir, onProgress: (p) => progress.push(p.phase) });
      expect(image.compression).toBe(compression);
      expect(image.partitions.map((p) => p.filesystem.type)).toEqual(['fat32', 'ext4']);
      expect(sha256(image.rawPath)).toBe(sha256(raw));
      // Holes stay holes: the cached copy takes far less disk than its length.
      expect(statSync(image.rawPath).blocks * 512).toBeLessThan(statSync(image.rawPath).size / 4);
    }
    expect(progress).toContain('decompress');
    expect(readdirSync(cacheDir).filter((n) => n.endsWith('.img'))).toHaveLength(2);
    await using again = await openImage(gz, { cacheDir });
    expect(readdirSync(cacheDir).filter((n) => n.endsWith('.partial'))).toEqual([]);
    expect(again.rawPath.startsWith(cacheDir)).toBe(true);
  });

  it('hashes a compressed base once, and again only when the file changes', async () => {
    const gz = join(dir, 'rehash.img.gz');
    writeFileSync(gz, gzipSync(readFileSync(raw), { level: 1 }));
    const cacheDir = join(dir, 'cache-rehash');
    const phases = async () => {
      const seen = new Set<string>();
      await using image = await openImage(gz, { cacheDir, onProgress: (p) => seen.add(p.phase) });
      return seen;
    };
    expect(await phases()).toEqual(new Set(['hash', 'decompress']));
    expect(await phases()).toEqual(new Set());
    const later = new Date(Date.now() + 60_000);
    (await import('node:fs')).utimesSync(gz, later, later);
    expect(await phases()).toEqual(new Set(['hash']));
  });

  it('refuses a zip without exactly one .img', async () => {
    const zip = join(dir, 'none.zip');
    writeFileSync(zip, makeZip([{ name: 'a.txt', data: Buffer.from('x') }]));
    await expectCode(openImage(zip, { cacheDir: join(dir, 'cache2') }), 'E_BAD_ARCHIVE');
  });

  it('gives E_BAD_COMPRESSED for corrupt and truncated .xz and .gz, leaving no cache entry', async () => {
    const xz = readFileSync(fixturePath('pi-bookworm'));
    const cacheDir = join(dir, 'cache3');
    const corrupt = Buffer.from(xz);
    for (let i = 200; i < 260; i++) corrupt[i] = corrupt[i]! ^ 0x5a;
    writeFileSync(join(dir, 'corrupt.img.xz'), corrupt);
    writeFileSync(join(dir, 'short.img.xz'), xz.subarray(0, xz.length >> 1));
    writeFileSync(join(dir, 'short.img.gz'), gzipSync(Buffer.alloc(1 << 20, 1)).subarray(0, 500));
    for (const name of ['corrupt.img.xz', 'short.img.xz', 'short.img.gz']) {
      await expectCode(openImage(join(dir, name), { cacheDir }), 'E_BAD_COMPRESSED');
    }
    expect(existsSync(cacheDir) ? readdirSync(cacheDir) : []).toEqual([]);
  });

  it('enforces the decompressed size limit', async () => {
    const gz = join(dir, 'bomb.img.gz');
    writeFileSync(gz, gzipSync(Buffer.alloc(8 << 20)));
    await expectCode(openImage(gz, { cacheDir: join(dir, 'cache4'), maxImageSize: 1 << 20 }), 'E_LIMIT');
  });
});

describe('bad raw images', () => {
  it('zero-length, garbage and truncated images give typed errors', async () => {
    const empty = join(dir, 'empty.img');
    writeFileSync(empty, new Uint8Array(0));
    await expectCode(openImage(empty), 'E_NO_PARTITION_TABLE');
    const garbage = join(dir, 'garbage.img');
    writeFileSync(garbage, Buffer.alloc(1 << 20, 0x37));
    await expectCode(openImage(garbage), 'E_NO_PARTITION_TABLE');
    const truncated = await rawFixture('pi-bookworm', join(dir, 'trunc'));
    truncateSync(truncated, 100 * 1024 * 1024);
    await expectCode(openImage(truncated), 'E_PARTITION_OUT_OF_RANGE');
    await expectCode(openImage(join(dir, 'missing.img')), 'E_NOT_FOUND');
  });
});

describe('saving', () => {
  it('writes base + changes to a new file atomically and never touches the base', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'save'));
    const before = sha256(base);
    const out = join(dir, 'save', 'out.img');
    {
      await using image = await openImage(base);
      const device = image.device;
      const root = image.partition('root');
      // Change a byte in the middle of the root partition and one near the end of the disk.
      device.write(root.byteOffset + 40 * 4096 * 100, new Uint8Array([1, 2, 3, 4]));
      device.write(image.size - 10, new Uint8Array([9]));
      const result = await image.save(out);
      expect(result.changedBytes).toBeGreaterThan(0);
      expect(result.changedBytes).toBeLessThanOrEqual(2 * 64 * 1024);
      await expect(image.save(base)).rejects.toMatchObject({ code: 'E_SAME_FILE' });
    }
    expect(sha256(base)).toBe(before);
    const a = readFileSync(base);
    const b = readFileSync(out);
    expect(b.length).toBe(a.length);
    const diffs: number[] = [];
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diffs.push(i);
    expect(diffs.length).toBeGreaterThan(0);
    expect(diffs.length).toBeLessThanOrEqual(5);
    expect(readdirSync(join(dir, 'save')).filter((n) => n.includes('piimg-partial'))).toEqual([]);
    expect(statSync(out).blocks * 512).toBeLessThan(statSync(out).size / 4);
  });

  it('a failed save leaves no output and no temporary file', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'fail'));
    await using image = await openImage(base);
    image.device.write(0x1000, new Uint8Array([1]));
    await expect(image.save(join(dir, 'fail', 'no-such-dir', 'out.img'))).rejects.toMatchObject({ code: 'E_IO' });
    expect(readdirSync(join(dir, 'fail'))).toEqual(['pi-bookworm.img']);
  });

  it('edits in place only when asked, and streams the merged image', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'inplace'));
    {
      await using image = await openImage(base);
      await expect(image.save()).rejects.toMatchObject({ code: 'EINVAL' });
    }
    {
      await using image = await openImage(base, { inPlace: true });
      image.device.write(0x2000, new Uint8Array([0xab]));
      const chunks: Buffer[] = [];
      for await (const chunk of image.createReadStream()) chunks.push(chunk as Buffer);
      const streamed = Buffer.concat(chunks);
      expect(streamed.length).toBe(image.size);
      expect(streamed[0x2000]).toBe(0xab);
      await image.save();
    }
    expect(readFileSync(base)[0x2000]).toBe(0xab);
  });

  it.skipIf(!hasTool('sfdisk'))('a new disk id is written where sfdisk reads it', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'diskid'));
    const out = join(dir, 'diskid', 'out.img');
    {
      await using image = await openImage(base);
      expect(image.setDiskId('a1b2c3d4')).toBe('a1b2c3d4');
      expect(image.partition(2).partUuid).toBe('a1b2c3d4-02');
      await image.save(out);
    }
    expect(run('sfdisk', ['--dump', out]).stdout).toContain('label-id: 0xa1b2c3d4');
    expect(run('sfdisk', ['--dump', base]).stdout).toContain('label-id: 0x5e3da7a1');
  });
});

describe('data maps', () => {
  it('a raw base is scanned once, the map is reused, and a changed base is scanned again', async () => {
    const { dataMapFor, scanDataMap } = await import('../packages/core/src/image/datamap.js');
    const work = join(dir, 'maps');
    const base = await rawFixture('pi-bookworm', work);
    const cacheDir = join(work, 'cache');
    const size = statSync(base).size;
    const map = dataMapFor(base, cacheDir);
    expect(map.length).toBeGreaterThan(0);
    const covered = map.reduce((sum, r) => sum + r.length, 0);
    expect(covered).toBeLessThan(size / 4);
    // Everything outside the map is zero.
    const bytes = readFileSync(base);
    let outside = 0;
    let at = 0;
    for (const r of [...map, { byteOffset: size, length: 0 }]) {
      for (let i = at; i < r.byteOffset; i++) outside |= bytes[i]!;
      at = r.byteOffset + r.length;
    }
    expect(outside).toBe(0);
    expect(readdirSync(join(cacheDir, 'maps'))).toHaveLength(1);
    expect(dataMapFor(base, cacheDir)).toEqual(map);
    // Data written where the map said zeros: the file's identity changed, so it is scanned again.
    const fd = (await import('node:fs')).openSync(base, 'r+');
    (await import('node:fs')).writeSync(fd, Buffer.from([7]), 0, 1, size - 1);
    (await import('node:fs')).closeSync(fd);
    const after = dataMapFor(base, cacheDir);
    expect(after[after.length - 1]!.byteOffset + after[after.length - 1]!.length).toBe(size);
    expect(after).toEqual(scanDataMap(base, size));
  });

  it('decompressing records the map beside the cache entry', async () => {
    await using image = await openImage(fixturePath('pi-gpt'), { cacheDir: join(dir, 'fresh-cache') });
    expect(existsSync(`${image.rawPath}.map.json`)).toBe(true);
    const map = JSON.parse(readFileSync(`${image.rawPath}.map.json`, 'utf8'));
    const { scanDataMap } = await import('../packages/core/src/image/datamap.js');
    expect(map).toEqual(scanDataMap(image.rawPath, image.size));
  });
});
