import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage, type Image, type OutputStats } from '@piimg/core';
import { fixturePath, testCacheDir } from './support/fixtures.js';
import { hasTool, run } from './support/tools.js';

/**
 * A fleet pays for compression once: the second and later compressed outputs
 * of one base take the base's Blocks from the cache and compress only those
 * they changed, and free space comes out as zeros. Oracles: xz -dc,
 * xz -T2 -dc and gzip -dc against the raw output saved with the same
 * free-space treatment (freeSpace: 'zero', written by a different path: the
 * overlay read range by range, no Blocks, no cache).
 */

const dir = mkdtempSync(join(tmpdir(), 'piimg-fleet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const tools = hasTool('xz') && hasTool('gzip');

function dc(command: string, args: string[], path: string): Buffer {
  const result = spawnSync(command, [...args, path], { maxBuffer: 1 << 30 });
  expect(result.status, String(result.stderr)).toBe(0);
  return result.stdout;
}

/** The sub-Block size at level 0 (Blocks of 1 MiB): an eighth of a Block. */
const SUB_BLOCK = 128 << 10;

let counter = 0;
/** Saves `image` as `format` with a fresh name; returns the path and the Block counts. */
async function save(image: Image, format: 'xz' | 'gzip', cacheDir: string, extra: { freeSpace?: 'zero' | 'keep' } = {}): Promise<{ path: string; stats: OutputStats }> {
  const path = join(dir, `out-${counter++}.img.${format === 'xz' ? 'xz' : 'gz'}`);
  const result = await image.save(path, { format, level: format === 'xz' ? 0 : 1, threads: 2, ...extra });
  expect(result.blocks).toBeDefined();
  void cacheDir;
  return { path, stats: result.blocks! };
}

/** The raw output with free space as zeros: what a compressed output must decode to. */
async function rawZero(image: Image): Promise<Buffer> {
  const path = join(dir, `raw-${counter++}.img`);
  await image.save(path, { freeSpace: 'zero' });
  return readFileSync(path);
}

describe.skipIf(!tools)('a fleet pays for compression once', () => {
  it('second device: xz -dc, xz -T2 -dc and gzip -dc give the raw output byte for byte, and only changed Blocks are compressed', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir });
    await using first = await base.derive();
    first.setDiskId('0a0b0c0d');
    const a = await save(first, 'xz', cacheDir);
    // The first device compresses every Block but the all-zero ones after the first.
    expect(a.stats.encoded).toBeGreaterThan(5);
    expect(a.stats.damaged).toBe(0);
    const rawA = await rawZero(first);
    expect(sha256(dc('xz', ['-dc'], a.path))).toBe(sha256(rawA));

    await using second = await base.derive();
    second.setDiskId('11223344');
    // A change inside the root filesystem's used data, far from the partition table.
    const root = second.partitions[1]!;
    const used = (await second.usedRanges()).find((r) => r.byteOffset >= root.byteOffset && r.length >= 4 << 20)!;
    second.device.write(used.byteOffset + (2 << 20) + 512, randomBytes(4096));
    const b = await save(second, 'xz', cacheDir);
    const rawB = await rawZero(second);
    expect(sha256(dc('xz', ['-dc'], b.path))).toBe(sha256(rawB));
    expect(sha256(dc('xz', ['-T2', '-dc'], b.path))).toBe(sha256(rawB));
    // Block 0 (partition table) and the Block of the change are cut into sub-Blocks; of those,
    // only the sub-Block of the disk id and the one of the change are new bytes.
    expect(b.stats.encoded).toBe(2);
    expect(b.stats.subBlocksEncoded).toBe(2);
    expect(b.stats.encodedBytes).toBe(2 * SUB_BLOCK);
    expect(b.stats.subBlocks).toBeGreaterThanOrEqual(2);
    expect(b.stats.blocks).toBeGreaterThan(Math.ceil(rawB.length / (1 << 20)));
    expect(b.stats.reused).toBe(b.stats.blocks - 2);
    // Still a multi-Block file with sizes in every Block Header; Blocks of two sizes in its Index.
    const list = spawnSync('xz', ['-lvv', '--robot', b.path], { encoding: 'utf8' }).stdout;
    const listed = list.split('\n').filter((line) => line.startsWith('block\t'));
    expect(listed.length).toBe(b.stats.blocks);
    expect(new Set(listed.map((line) => line.split('\t')[7])).size).toBeGreaterThan(1);
    // piimg's own block-parallel decoder reads it too.
    await using reopened = await openImage(b.path, { cacheDir });
    const decodedPath = join(dir, `decoded-${counter++}.img`);
    await reopened.save(decodedPath);
    expect(sha256(readFileSync(decodedPath))).toBe(sha256(rawB));

    const ga = await save(first, 'gzip', cacheDir);
    expect(sha256(dc('gzip', ['-dc'], ga.path))).toBe(sha256(rawA));
    const gb = await save(second, 'gzip', cacheDir);
    expect(sha256(dc('gzip', ['-dc'], gb.path))).toBe(sha256(rawB));
    expect(gb.stats.encoded).toBe(2);
  });

  it('a fleet: the second device compresses only the sub-Blocks with its own bytes, not the files every device shares', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir });
    // What every device gets (an agent), and what is each device's own (its host name).
    const agent = randomBytes(3 << 20);
    const device = async (name: string) => {
      const image = await base.derive();
      const volume = await image.mount('root');
      await volume.writeFile('/opt-agent.bin', agent);
      await volume.writeFile('/etc/hostname', `${name}\n`);
      await volume.close();
      return image;
    };
    await using first = await device('sensor-0001');
    const a = await save(first, 'xz', cacheDir);
    // The first device compresses every sub-Block of its changed Blocks: the agent's 24 at least.
    expect(a.stats.subBlocksEncoded).toBeGreaterThanOrEqual(agent.length / SUB_BLOCK);
    await using second = await device('sensor-0002');
    const b = await save(second, 'xz', cacheDir);
    expect(sha256(dc('xz', ['-dc'], b.path))).toBe(sha256(await rawZero(second)));
    // Only the sub-Blocks holding the host name, and the inode and directory blocks that differ, are compressed.
    expect(b.stats.subBlocks).toBe(a.stats.subBlocks);
    expect(b.stats.subBlocksEncoded).toBeGreaterThan(0);
    expect(b.stats.subBlocksEncoded).toBeLessThanOrEqual(4);
    expect(b.stats.encodedBytes).toBeLessThan(agent.length / 4);
    // The same for gzip members: the unchanged members by place, the changed ones by content.
    const ga = await save(first, 'gzip', cacheDir);
    const gb = await save(second, 'gzip', cacheDir);
    expect(dc('gzip', ['-dc'], gb.path).equals(dc('xz', ['-dc'], b.path))).toBe(true);
    expect(ga.stats.subBlocksEncoded).toBeGreaterThanOrEqual(3);
    expect(gb.stats.subBlocksEncoded).toBeLessThanOrEqual(2);
  });

  it('a damaged content-addressed entry is a miss, recompressed, never shipped', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir });
    await using first = await base.derive();
    const root = first.partitions[1]!;
    const used = (await first.usedRanges()).find((r) => r.byteOffset >= root.byteOffset && r.length >= 4 << 20)!;
    first.device.write(used.byteOffset + (1 << 20), randomBytes(3 * SUB_BLOCK));
    const a = await save(first, 'xz', cacheDir);
    expect(a.stats.subBlocksEncoded).toBeGreaterThanOrEqual(3);
    const contentDir = join(cacheDir, 'blocks', readdirSync(join(cacheDir, 'blocks')).find((name) => name.startsWith('content-'))!);
    const entries = readdirSync(contentDir).filter((name) => name.endsWith('.blk'));
    expect(entries.length).toBe(a.stats.subBlocksEncoded);
    // Every entry damaged: one byte flipped in each payload.
    for (const name of entries) {
      const bytes = readFileSync(join(contentDir, name));
      bytes.writeUInt8(bytes[bytes.length - 7]! ^ 0x01, bytes.length - 7);
      writeFileSync(join(contentDir, name), bytes);
    }
    const b = await save(first, 'xz', cacheDir);
    expect(b.stats.damaged).toBe(entries.length);
    expect(b.stats.subBlocksEncoded).toBe(a.stats.subBlocksEncoded);
    const raw = await rawZero(first);
    expect(sha256(dc('xz', ['-dc'], b.path))).toBe(sha256(raw));
    // Rewritten: the next output finds every entry whole.
    const c = await save(first, 'xz', cacheDir);
    expect(c.stats).toMatchObject({ damaged: 0, encoded: 0, subBlocksEncoded: 0 });
    expect(sha256(dc('xz', ['-dc'], c.path))).toBe(sha256(raw));
  });

  it('free space is written as zeros: the used ranges are as they were, the filesystems verify', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir });
    const keepPath = join(dir, 'keep.img');
    await image.save(keepPath);
    const kept = readFileSync(keepPath);
    const zeroed = await rawZero(image);
    const used = await image.usedRanges();
    let position = 0;
    for (const range of [...used, { byteOffset: kept.length, length: 0 }]) {
      expect(zeroed.subarray(position, range.byteOffset).every((byte) => byte === 0)).toBe(true);
      expect(zeroed.subarray(range.byteOffset, range.byteOffset + range.length).equals(kept.subarray(range.byteOffset, range.byteOffset + range.length))).toBe(true);
      position = range.byteOffset + range.length;
    }
    const zeroPath = join(dir, 'zero.img');
    writeFileSync(zeroPath, zeroed);
    await using reopened = await openImage(zeroPath, { cacheDir });
    for (const finding of await reopened.verify()) expect(finding.clean, finding.problems.join('\n')).toBe(true);
    // The native checkers agree: each partition cut out and checked read-only.
    if (hasTool('e2fsck') && hasTool('fsck.fat')) {
      for (const partition of reopened.partitions) {
        const part = join(dir, `part-${partition.number}.img`);
        writeFileSync(part, zeroed.subarray(partition.byteOffset, partition.byteOffset + partition.size));
        const ext = partition.filesystem.type.startsWith('ext');
        const check = run(ext ? 'e2fsck' : 'fsck.fat', ext ? ['-fn', part] : ['-n', part], { allowFail: true });
        expect(check.status, check.stdout + check.stderr).toBe(0);
      }
    }
    // freeSpace: 'keep' gives the raw image as it is.
    const keptXz = await save(image, 'xz', cacheDir, { freeSpace: 'keep' });
    expect(sha256(dc('xz', ['-dc'], keptXz.path))).toBe(sha256(kept));
  });

  it('a range freed in the device comes out as zeros, though no change touches its Blocks', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    // A base holding two files of recognisable patterns one after the other in the root filesystem:
    // the Block where the first ends and the second begins is half used once the second is removed.
    const pattern = (marker: Buffer, bytes: number) =>
      Buffer.concat(Array.from({ length: bytes / 4096 }, () => Buffer.concat([marker, randomBytes(4096 - marker.length)])));
    const kept = Buffer.from('piimg-kept-file-marker-');
    const freed = Buffer.from('piimg-freed-range-marker-');
    const basePath = join(dir, 'base-with-files.img');
    {
      await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir });
      const volume = await image.mount('root');
      await volume.writeFile('/kept.bin', pattern(kept, 3 << 19));
      await volume.writeFile('/freed.bin', pattern(freed, 3 << 20));
      await volume.close();
      await image.save(basePath);
    }
    await using base = await openImage(basePath, { cacheDir });
    await using first = await base.derive();
    const a = await save(first, 'xz', cacheDir);
    expect(dc('xz', ['-dc'], a.path).includes(freed)).toBe(true);
    await using second = await base.derive();
    const volume = await second.mount('root');
    await volume.rm('/freed.bin');
    await volume.close();
    const b = await save(second, 'xz', cacheDir);
    const decoded = dc('xz', ['-dc'], b.path);
    expect(decoded.equals(await rawZero(second))).toBe(true);
    expect(decoded.includes(freed)).toBe(false);
    expect(decoded.includes(kept)).toBe(true);
    // The half-freed Block is not the base's: it was not looked up as such (an entry of the base's Block would not match it).
    expect(b.stats.damaged).toBe(0);
    const g = await save(second, 'gzip', cacheDir);
    expect(dc('gzip', ['-dc'], g.path).equals(decoded)).toBe(true);
  });

  it('a damaged cache entry is detected, recompressed and rewritten, never shipped', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir });
    await using first = await base.derive();
    await save(first, 'xz', cacheDir);
    const blocksDir = join(cacheDir, 'blocks');
    const baseDir = readdirSync(blocksDir).find((name) => !name.startsWith('zero-') && !name.startsWith('content-'))!;
    const entries = readdirSync(join(blocksDir, baseDir)).filter((name) => name.endsWith('.blk'));
    expect(entries.length).toBeGreaterThan(3);
    // One byte of one entry's payload flipped, another entry truncated.
    const flipped = join(blocksDir, baseDir, entries[1]!);
    const bytes = readFileSync(flipped);
    bytes.writeUInt8(bytes[bytes.length - 10]! ^ 0x40, bytes.length - 10);
    writeFileSync(flipped, bytes);
    const truncated = join(blocksDir, baseDir, entries[2]!);
    writeFileSync(truncated, readFileSync(truncated).subarray(0, 100));
    await using second = await base.derive();
    const b = await save(second, 'xz', cacheDir);
    expect(b.stats.damaged).toBe(2);
    expect(b.stats.encoded).toBe(2);
    expect(sha256(dc('xz', ['-dc'], b.path))).toBe(sha256(await rawZero(second)));
    const c = await save(second, 'xz', cacheDir);
    expect(c.stats).toMatchObject({ damaged: 0, encoded: 0 });
  });

  it('devices saved at once into one cache all decode right, and the next reuses what they stored', async () => {
    const cacheDir = mkdtempSync(join(dir, 'cache-'));
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir });
    const devices = await Promise.all([1, 2, 3].map(async (n) => {
      const device = await base.derive();
      device.setDiskId(`0000000${n}`);
      return device;
    }));
    try {
      const outputs = await Promise.all(devices.map((device) => save(device, 'xz', cacheDir)));
      for (const [i, output] of outputs.entries()) expect(sha256(dc('xz', ['-dc'], output.path))).toBe(sha256(await rawZero(devices[i]!)));
      const again = await save(devices[0]!, 'xz', cacheDir);
      // Its changed sub-Block (the disk id) is in the cache by content since its first save.
      expect(again.stats).toMatchObject({ damaged: 0, encoded: 0 });
    } finally {
      for (const device of devices) await device.close();
    }
  });
});

describe('free-space option', () => {
  it('refuses an unknown freeSpace value', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    expect(() => image.createReadStream({ format: 'xz', freeSpace: 'wipe' as never })).toThrow(/freeSpace/);
  });
});
