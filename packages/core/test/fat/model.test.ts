import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { checkFat, formatFat, mountFat, type FatType } from '../../src/fs/fat/index.js';
import { hasTool } from '../../../../test/support/tools.js';
import { fsck, tempDir } from './support.js';

/** Names chosen to collide case-insensitively and in their short names. */
const NAME = fc.constantFrom('a.txt', 'A.TXT', 'Long File Name.txt', 'long file name.TXT', 'Long File Name2.txt', 'ñ.txt', 'UPPER', 'x y', 'dir');
const DIR = fc.constantFrom('/', '/dir', '/Other Dir');

type Op =
  | { op: 'write'; dir: string; name: string; size: number }
  | { op: 'append'; dir: string; name: string; size: number }
  | { op: 'truncate'; dir: string; name: string; size: number }
  | { op: 'rm'; dir: string; name: string }
  | { op: 'rename'; dir: string; name: string; toDir: string; toName: string }
  | { op: 'remount' };

/** Sizes: mostly small, some a large part of the volume, so sequences fill it, free space and fill it again. */
const size = (volumeBytes: number) =>
  fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 5000 }), weight: 1 },
    // Without bias: fast-check otherwise favours small values, and volumes would rarely fill.
    { arbitrary: fc.noBias(fc.integer({ min: Math.floor(volumeBytes / 6), max: Math.floor((volumeBytes * 2) / 3) })), weight: 3 },
  );

function ops(volumeBytes: number): fc.Arbitrary<Op> {
  return fc.oneof(
    fc.record({ op: fc.constant('write' as const), dir: DIR, name: NAME, size: size(volumeBytes) }),
    fc.record({ op: fc.constant('append' as const), dir: DIR, name: NAME, size: size(volumeBytes) }),
    fc.record({ op: fc.constant('truncate' as const), dir: DIR, name: NAME, size: size(volumeBytes) }),
    fc.record({ op: fc.constant('rm' as const), dir: DIR, name: NAME }),
    fc.record({ op: fc.constant('rm' as const), dir: DIR, name: NAME }),
    fc.record({ op: fc.constant('rename' as const), dir: DIR, name: NAME, toDir: DIR, toName: NAME }),
    fc.constant({ op: 'remount' as const }),
  );
}

const join2 = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

/**
 * Free clusters counted straight from the first FAT on the device, apart from
 * the code under test. Ref: Microsoft FAT spec §3.1 (BPB), §3.5 (type from the
 * cluster count), §4 (FAT entries; 0 is free; FAT32 uses the low 28 bits).
 */
function rawFreeClusters(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bytesPerSector = view.getUint16(0x0b, true);
  const sectorsPerCluster = view.getUint8(0x0d);
  const reserved = view.getUint16(0x0e, true);
  const fats = view.getUint8(0x10);
  const rootEntries = view.getUint16(0x11, true);
  const totalSectors = view.getUint16(0x13, true) || view.getUint32(0x20, true);
  const fatSectors = view.getUint16(0x16, true) || view.getUint32(0x24, true);
  const rootSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const clusters = Math.floor((totalSectors - reserved - fats * fatSectors - rootSectors) / sectorsPerCluster);
  const fat = reserved * bytesPerSector;
  let free = 0;
  for (let cluster = 2; cluster < clusters + 2; cluster++) {
    let value: number;
    if (clusters < 4085) {
      const pair = view.getUint16(fat + Math.floor((cluster * 3) / 2), true);
      value = cluster & 1 ? pair >> 4 : pair & 0xfff;
    } else if (clusters < 65525) value = view.getUint16(fat + cluster * 2, true);
    else value = view.getUint32(fat + cluster * 4, true) & 0x0fffffff;
    if (value === 0) free++;
  }
  return free;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface Layout {
  fatType: FatType;
  clusterSize: number;
  bytes: number;
  runs: number;
}

// Small volumes of each FAT type and several cluster sizes, so random sequences fill them up.
const LAYOUTS: Layout[] = [
  { fatType: 'fat12', clusterSize: 512, bytes: 1440 * 1024, runs: 40 },
  { fatType: 'fat12', clusterSize: 4096, bytes: 1024 * 1024, runs: 40 },
  { fatType: 'fat16', clusterSize: 512, bytes: 2304 * 1024, runs: 30 },
  { fatType: 'fat16', clusterSize: 2048, bytes: 9 * 1024 * 1024, runs: 20 },
  { fatType: 'fat32', clusterSize: 512, bytes: 34 * 1024 * 1024, runs: 12 },
  { fatType: 'fat32', clusterSize: 1024, bytes: 67 * 1024 * 1024, runs: 6 },
];

describe('free-cluster search', () => {
  it.each(LAYOUTS)('$fatType, $clusterSize-byte clusters: finds free clusters behind the search cursor', async ({ fatType, clusterSize, bytes }) => {
    const device = new MemoryDevice(bytes);
    formatFat(device, { fatType, clusterSize });
    const volume = await mountFat(device);
    const free = rawFreeClusters(device.bytes);
    const quarter = Math.floor(free / 4) * clusterSize;
    // Fill the volume to its last cluster: the cursor wraps to the start.
    await volume.writeFile('/a', new Uint8Array(quarter).fill(1));
    await volume.writeFile('/b', new Uint8Array(quarter).fill(2));
    await volume.writeFile('/c', new Uint8Array(quarter).fill(3));
    await volume.flush();
    await volume.writeFile('/d', new Uint8Array(rawFreeClusters(device.bytes) * clusterSize).fill(4));
    await volume.flush();
    expect(rawFreeClusters(device.bytes)).toBe(0);
    // Free the first quarter, fill it again (the cursor now stops right behind it), free it again.
    await volume.rm('/a');
    await volume.writeFile('/x', new Uint8Array(quarter).fill(5));
    await volume.rm('/x');
    await volume.flush();
    expect(rawFreeClusters(device.bytes)).toBe(quarter / clusterSize);
    // Everything after the cursor is in use; the free space is all before it.
    await volume.writeFile('/y', new Uint8Array(quarter).fill(6));
    await volume.close();
    const check = checkFat(device);
    expect(check.problems).toEqual([]);
    expect(check.freeClusters).toBe(0);
    expect((await (await mountFat(device, { readOnly: true })).readFile('/y'))[quarter - 1]).toBe(6);
  });
});

describe('random operations against an in-memory model', () => {
  const withFsck = hasTool('fsck.fat');
  it.each(LAYOUTS)('$fatType, $clusterSize-byte clusters: stays equal to the model, ENOSPC only when full', async ({ fatType, clusterSize, bytes, runs }) => {
    const { dir: tmp, cleanup } = tempDir();
    let counter = 0;
    let fullVolumes = 0;
    const clustersOf = (length: number) => Math.ceil(length / clusterSize);
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(ops(bytes), { minLength: 1, maxLength: 40, size: 'max' }), async (list) => {
          const device = new MemoryDevice(bytes);
          formatFat(device, { fatType, clusterSize });
          let volume = await mountFat(device);
          expect(checkFat(device).fatType).toBe(fatType);
          await volume.mkdir('/dir');
          await volume.mkdir('/Other Dir');
          // Model: directory -> (upper-case key -> { name, data }).
          const model = new Map<string, Map<string, { name: string; data: Uint8Array }>>([
            ['/', new Map()],
            ['/dir', new Map()],
            ['/Other Dir', new Map()],
          ]);
          model.get('/')!.set('DIR', { name: 'dir', data: new Uint8Array() });
          model.get('/')!.set('OTHER DIR', { name: 'Other Dir', data: new Uint8Array() });
          const isDirKey = (dir: string, key: string) => dir === '/' && (key === 'DIR' || key === 'OTHER DIR');
          // A new entry may need one more directory cluster (never in FAT12/16's fixed root).
          const entrySlack = (dir: string) => (dir === '/' && fatType !== 'fat32' ? 0 : 1);
          let step = 0;
          let sawFull = false;
          for (const op of list) {
            step++;
            const fill = (n: number) => new Uint8Array(n).fill(step & 0xff);
            if (op.op === 'remount') {
              await volume.close();
              volume = await mountFat(device);
              continue;
            }
            const files = model.get(op.dir)!;
            const key = op.name.toUpperCase();
            const path = join2(op.dir, op.name);
            const current = files.get(key);
            const dirClash = isDirKey(op.dir, key);
            // Moving or removing the two fixed directories is covered by the oracle suite.
            if (op.op !== 'write' && op.op !== 'append' && dirClash) continue;
            if (op.op === 'rename' && isDirKey(op.toDir, op.toName.toUpperCase())) continue;
            // The free space before the operation, read from the FAT itself.
            await volume.flush();
            const free = rawFreeClusters(device.bytes);
            const held = current ? clustersOf(current.data.length) : 0;
            // Clusters the operation needs beyond what the file already holds, at least and at most.
            let fewest = 0;
            let most = 0;
            if (op.op === 'write' && !dirClash) {
              // The old chain is freed before the new data is written.
              fewest = clustersOf(op.size) - held;
              most = fewest + (current ? 0 : entrySlack(op.dir));
            } else if ((op.op === 'append' && !dirClash) || (op.op === 'truncate' && current && op.size > current.data.length)) {
              const length = op.op === 'append' ? (current?.data.length ?? 0) + op.size : op.size;
              fewest = clustersOf(length) - held;
              most = fewest + (current ? 0 : entrySlack(op.dir));
            } else if (op.op === 'rename' && current) {
              most = entrySlack(op.toDir);
            }
            try {
              if (op.op === 'write') {
                await volume.writeFile(path, fill(op.size));
                expect(dirClash).toBe(false);
                files.set(key, { name: current?.name ?? op.name, data: fill(op.size) });
              } else if (op.op === 'append') {
                await volume.appendFile(path, fill(op.size));
                expect(dirClash).toBe(false);
                files.set(key, { name: current?.name ?? op.name, data: concat(current?.data ?? new Uint8Array(), fill(op.size)) });
              } else if (op.op === 'truncate') {
                await volume.truncate(path, op.size);
                expect(current && !dirClash).toBeTruthy();
                const data = new Uint8Array(op.size);
                data.set(current!.data.subarray(0, op.size));
                files.set(key, { name: current!.name, data });
              } else if (op.op === 'rm') {
                await volume.rm(path);
                expect(current && !dirClash).toBeTruthy();
                files.delete(key);
              } else {
                await volume.rename(path, join2(op.toDir, op.toName));
                expect(current && !dirClash).toBeTruthy();
                const target = model.get(op.toDir)!;
                const toKey = op.toName.toUpperCase();
                expect(isDirKey(op.toDir, toKey)).toBe(false);
                files.delete(key);
                target.set(toKey, { name: op.toName, data: current!.data });
              }
              // It fitted, so it cannot have needed more than was free.
              expect(fewest, `${op.op} ${path} succeeded needing ${fewest} clusters with ${free} free`).toBeLessThanOrEqual(free);
            } catch (error) {
              if (!isPiimgError(error)) throw error;
              // Failures the model predicts: missing source, a directory in the way, no space.
              const expected = ['ENOENT', 'EISDIR', 'ENOTDIR', 'ENOTEMPTY', 'ENOSPC'];
              expect(expected, `${op.op} ${path}: ${error.message}`).toContain(error.code);
              if (error.code === 'ENOENT') expect(current).toBeUndefined();
              if (error.code === 'ENOSPC') {
                // Only a volume that really lacks the space may say so.
                expect(most, `${op.op} ${path}: ENOSPC needing at most ${most} clusters with ${free} free`).toBeGreaterThan(free);
                sawFull = true;
              }
            }
          }
          if (sawFull) fullVolumes++;
          await volume.close();
          const check = await mountFat(device, { readOnly: true });
          for (const [dir, files] of model) {
            const listed = (await check.readdir(dir)).map((e) => e.name).sort();
            expect(listed).toEqual([...files.values()].map((f) => f.name).sort());
            for (const file of files.values()) {
              if (isDirKey(dir, file.name.toUpperCase())) continue;
              // Buffer.equals: toEqual walks typed arrays element by element, too slow for MiBs.
              const read = await check.readFile(join2(dir, file.name));
              expect(Buffer.from(read).equals(Buffer.from(file.data)), `${join2(dir, file.name)} content`).toBe(true);
            }
          }
          // Our own check must agree with fsck.fat: the volume is clean.
          const checked = checkFat(device);
          expect(checked.problems).toEqual([]);
          expect(checked.clean).toBe(true);
          expect(checked.freeClusters).toBe(rawFreeClusters(device.bytes));
          if (withFsck) {
            const image = join(tmp, `model-${counter++}.img`);
            writeFileSync(image, device.bytes);
            const result = fsck(image);
            expect(result.clean, result.output).toBe(true);
          }
        }),
        // No shrinking: on these sizes it takes many minutes; the seed in the report replays the case.
        { numRuns: runs, endOnFailure: true },
      );
      // The sequences did fill volumes, so the ENOSPC rule above was exercised.
      expect(fullVolumes).toBeGreaterThan(0);
    } finally {
      cleanup();
    }
  });
});
