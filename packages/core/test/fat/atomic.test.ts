import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { PiimgError, isPiimgError } from '../../src/errors.js';
import { FREE } from '../../src/fs/fat/codec.js';
import { type FatVolume, checkFat, formatFat, mountFat } from '../../src/fs/fat/index.js';
import { hasTool } from '../../../../test/support/tools.js';
import { fsck, pattern, tempDir } from './support.js';

/** A memory device whose `failAt`-th write (counting from 1) throws, like an I/O error; `failFrom` fails every write from then on. */
class FailingDevice extends MemoryDevice {
  writes = 0;
  failAt = Infinity;
  failFrom = Infinity;
  override write(byteOffset: number, data: Uint8Array): void {
    this.writes++;
    if (this.writes === this.failAt || this.writes >= this.failFrom) throw new PiimgError('EIO', `write ${this.writes} failed (test)`);
    super.write(byteOffset, data);
  }
  /** Back to `original` (only the 64 KiB chunks that differ are copied), with the counters cleared. */
  reset(original: Uint8Array, failAt = Infinity): void {
    const chunk = 64 * 1024;
    for (let start = 0; start < original.length; start += chunk) {
      const end = Math.min(start + chunk, original.length);
      const ours = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + start, end - start);
      if (!ours.equals(Buffer.from(original.buffer, original.byteOffset + start, end - start))) this.bytes.set(original.subarray(start, end), start);
    }
    this.writes = 0;
    this.failAt = failAt;
  }
}

const haveFsck = hasTool('fsck.fat');
const { dir, cleanup } = tempDir();
afterAll(cleanup);

function nativeClean(bytes: Uint8Array, name: string): void {
  if (!haveFsck) return;
  const path = join(dir, `${name.replace(/\W+/g, '-')}.img`);
  writeFileSync(path, bytes);
  const verdict = fsck(path);
  expect(verdict.clean, verdict.output).toBe(true);
}

async function base(fatType: 'fat12' | 'fat16' | 'fat32'): Promise<Uint8Array> {
  const device = new MemoryDevice(fatType === 'fat12' ? 1440 * 1024 : fatType === 'fat16' ? 16 * 2 ** 20 : 34 * 2 ** 20);
  formatFat(device, { fatType, label: 'ATOMIC', clusterSize: 512 });
  const volume = await mountFat(device);
  await volume.mkdir('/dir/sub', { recursive: true });
  await volume.writeFile('/dir/Existing Long Name.txt', pattern(5000, 1));
  await volume.writeFile('/dir/sub/inner.bin', pattern(3000, 2));
  await volume.writeFile('/config.txt', pattern(1500, 3));
  await volume.close();
  return device.bytes.slice();
}

/** Byte offsets where `after` differs from `before`, other than in clusters free in `before`'s FAT (first few). */
async function changedOutsideFreeClusters(before: Uint8Array, after: Uint8Array): Promise<number[]> {
  const volume = await mountFat(new MemoryDevice(before), { readOnly: true });
  const { dataByteOffset, clusterSize } = volume.geometry;
  const out: number[] = [];
  const chunk = 64 * 1024;
  for (let start = 0; start < before.length && out.length < 5; start += chunk) {
    const end = Math.min(start + chunk, before.length);
    // Whole chunks compared natively first: a byte loop over 34 MiB per case is what would cost.
    if (Buffer.from(before.buffer, before.byteOffset + start, end - start).equals(Buffer.from(after.buffer, after.byteOffset + start, end - start))) continue;
    for (let i = start; i < end && out.length < 5; i++) {
      if (before[i] === after[i]) continue;
      if (i >= dataByteOffset && volume.table.get(2 + Math.floor((i - dataByteOffset) / clusterSize)) === FREE) continue;
      out.push(i);
    }
  }
  return out;
}

/** Changing calls, each making several writes (directory slots, new clusters, the FAT, FSInfo, the dirty flag). */
const OPERATIONS: [string, (volume: FatVolume) => Promise<unknown>][] = [
  ['writeFile (new, long name, several clusters)', (v) => v.writeFile('/dir/sub/A New File With A Long Name.dat', pattern(9000, 4))],
  ['writeFile (replacing a file with a bigger one)', (v) => v.writeFile('/config.txt', pattern(6000, 5))],
  ['writeFile (streamed)', (v) => v.writeFile('/streamed.bin', (async function* () { for (let i = 0; i < 4; i++) yield pattern(1500, 10 + i); })())],
  ['appendFile', (v) => v.appendFile('/dir/Existing Long Name.txt', pattern(3000, 6))],
  ['truncate', (v) => v.truncate('/dir/Existing Long Name.txt', 700)],
  ['mkdir -p', (v) => v.mkdir('/new/deeper/deepest', { recursive: true })],
  ['rm -r', (v) => v.rm('/dir', { recursive: true })],
  ['rename into another directory', (v) => v.rename('/dir/sub', '/moved sub')],
  ['setLabel', async (v) => v.setLabel('RELABELED')],
];

describe.each(['fat12', 'fat16', 'fat32'] as const)('a failed call leaves the device as it was (%s)', (fatType) => {
  it.each(OPERATIONS)('%s: a device error at each of its writes is undone', async (name, operation) => {
    const original = await base(fatType);
    // Count the writes of a successful call.
    const counting = new FailingDevice(original.slice());
    const volume = await mountFat(counting);
    await operation(volume);
    await volume.close();
    const total = counting.writes;
    expect(total).toBeGreaterThan(2);
    expect(checkFat(counting).problems).toEqual([]);
    const device = new FailingDevice(original.slice());
    for (let failAt = 1; failAt <= total; failAt++) {
      device.reset(original, failAt);
      const failing = await mountFat(device);
      await expect(operation(failing)).rejects.toMatchObject({ code: 'EIO' });
      // All or nothing: the device holds the bytes it held before the call, except file
      // data written to clusters that were free before it (and still are).
      expect(await changedOutsideFreeClusters(original, device.bytes), `write ${failAt} of ${total} failed`).toEqual([]);
      // The volume is still usable: the same call now succeeds, and the result is clean.
      await operation(failing);
      await failing.close();
      expect(checkFat(device).problems, `after write ${failAt} of ${total} failed`).toEqual([]);
    }
    nativeClean(original, `${fatType}-${name}-before`);
  });
});

describe('a full volume', () => {
  it.each(['fat12', 'fat16', 'fat32'] as const)('%s: ENOSPC in the middle of a streamed writeFile leaves the device unchanged and clean', async (fatType) => {
    const original = await base(fatType);
    const device = new FailingDevice(original.slice());
    const volume = await mountFat(device);
    const free = volume.freeBytes();
    const chunks = async function* (): AsyncGenerator<Uint8Array> {
      for (let sent = 0; sent <= free; sent += 64 * 1024) yield pattern(64 * 1024, sent);
    };
    const error = await volume.writeFile('/dir/too big.bin', chunks()).catch((caught: unknown) => caught);
    expect(isPiimgError(error, 'ENOSPC'), String(error)).toBe(true);
    expect(await changedOutsideFreeClusters(original, device.bytes)).toEqual([]);
    expect(volume.freeBytes()).toBe(free);
    expect(checkFat(device).problems).toEqual([]);
    nativeClean(device.bytes, `${fatType}-enospc-streamed`);
    // Filling it exactly still works afterwards.
    await volume.writeFile('/fill.bin', new Uint8Array(free));
    await expect(volume.writeFile('/one more.bin', 'x')).rejects.toMatchObject({ code: 'ENOSPC' });
    await volume.close();
    expect(checkFat(device).problems).toEqual([]);
    nativeClean(device.bytes, `${fatType}-full`);
  });

  it('a device that refuses the undo too makes later changes fail with EIO, not guess', async () => {
    const original = await base('fat16');
    const device = new FailingDevice(original.slice());
    device.failFrom = 3;
    const volume = await mountFat(device);
    await expect(volume.writeFile('/dir/x.bin', pattern(4000, 9))).rejects.toMatchObject({ code: 'EIO' });
    device.failFrom = Infinity;
    await expect(volume.writeFile('/dir/y.bin', 'y')).rejects.toMatchObject({ code: 'EIO', message: expect.stringMatching(/could not be undone/) });
  });
});
