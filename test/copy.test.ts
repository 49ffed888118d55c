import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyRanges, openImage } from '@piimg/core';
import { CONTROL_SLOTS, COPY_BLOCK, SLOTS, WRITE_SIZE, copyThread, splitBlocks, type FsSync } from '../packages/core/src/image/copy.js';
import { DATA_MAP_BLOCK, scanDataMap } from '../packages/core/src/image/datamap.js';
import { rawFixture } from './support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-copy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A sparse file with data in a few places, one of them in a last, partial 64 KiB unit. */
function sparseSource(name: string): string {
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  const size = 9 * 2 ** 20 + 1000;
  for (const at of [0, 65536 * 3 + 17, 2 ** 20 - 10, 5 * 2 ** 20, size - 500]) writeSync(fd, randomBytes(300), 0, 300, at);
  writeSync(fd, Buffer.alloc(1), 0, 1, size - 1);
  closeSync(fd);
  return path;
}

async function copy(from: string, to: string, ranges: Parameters<typeof copyRanges>[3], parallelMin: number) {
  const handle = await open(to, 'wx');
  try {
    return await copyRanges(from, handle, statSync(from).size, ranges, { parallelMin });
  } finally {
    await handle.close();
  }
}

describe('copyRanges', () => {
  for (const [mode, parallelMin] of [['on worker threads', 0], ['on the calling thread', Infinity]] as const) {
    it(`${mode}: without a map, copies every byte, leaves zero units as holes and returns the map`, async () => {
      const from = sparseSource(`detect-${parallelMin}.img`);
      const to = join(dir, `detect-${parallelMin}.out`);
      const progress: number[] = [];
      const handle = await open(to, 'wx');
      const map = await copyRanges(from, handle, statSync(from).size, undefined, {
        parallelMin,
        onProgress: (p) => progress.push(p.bytesDone),
      });
      await handle.close();
      expect(readFileSync(to).equals(readFileSync(from))).toBe(true);
      expect(map).toEqual(scanDataMap(from, statSync(from).size));
      expect(statSync(to).blocks * 512).toBeLessThanOrEqual(map.reduce((sum, r) => sum + r.length, 0) + 64 * 1024);
      expect(progress.at(-1)).toBe(statSync(from).size);
    });

    it(`${mode}: with a map, copies only the mapped ranges`, async () => {
      const from = sparseSource(`mapped-${parallelMin}.img`);
      const map = scanDataMap(from, statSync(from).size);
      const to = join(dir, `mapped-${parallelMin}.out`);
      expect(await copy(from, to, map, parallelMin)).toBe(map);
      expect(readFileSync(to).equals(readFileSync(from))).toBe(true);
      // A map that leaves out data leaves it out of the copy: only the map is read.
      const partial = join(dir, `partial-${parallelMin}.out`);
      await copy(from, partial, [map[0]!], parallelMin);
      const copied = readFileSync(partial);
      expect(copied.length).toBe(statSync(from).size);
      expect(copied.subarray(map[1]!.byteOffset, map[1]!.byteOffset + map[1]!.length).every((b) => b === 0)).toBe(true);
    });

    it(`${mode}: dense data, many times the ring between reader and writer, arrives intact`, async () => {
      const from = join(dir, `dense-${parallelMin}.img`);
      writeFileSync(from, randomBytes(13 * 2 ** 20 + 100));
      const to = join(dir, `dense-${parallelMin}.out`);
      await copy(from, to, [{ byteOffset: 0, length: statSync(from).size }], parallelMin);
      expect(readFileSync(to).equals(readFileSync(from))).toBe(true);
    });

    it(`${mode}: a base shorter than its map fails with E_TRUNCATED, without hanging`, async () => {
      const from = sparseSource(`short-${parallelMin}.img`);
      const size = statSync(from).size;
      const to = join(dir, `short-${parallelMin}.out`);
      const handle = await open(to, 'wx');
      await expect(copyRanges(from, handle, size, [{ byteOffset: 0, length: size + 3 * 2 ** 20 }], { parallelMin })).rejects.toMatchObject({
        code: 'E_TRUNCATED',
      });
      await handle.close();
    });

    it(`${mode}: a write error reaches the caller and stops every thread`, async () => {
      const from = sparseSource(`readonly-${parallelMin}.img`);
      const to = join(dir, `readonly-${parallelMin}.out`);
      closeSync(openSync(to, 'w'));
      const handle = await open(to, 'r'); // writes fail with EBADF
      await expect(copyRanges(from, handle, statSync(from).size, [{ byteOffset: 0, length: 8 * 2 ** 20 }], { parallelMin })).rejects.toMatchObject({
        code: 'EBADF',
      });
      await handle.close();
    });
  }
});

describe('save learns the data map of a raw base', () => {
  it('the JavaScript copy: the first save finds the map while copying; the next save reuses it and writes the same image', async () => {
    const work = join(dir, 'learn');
    const base = await rawFixture('pi-bookworm', work);
    const cacheDir = join(work, 'cache');
    const outputs: Buffer[] = [];
    for (const name of ['first.img', 'second.img']) {
      await using image = await openImage(base, { cacheDir });
      image.device.write(2 ** 20 + 5, new Uint8Array([1, 2, 3]));
      // The map is the JavaScript copy's: cp finds the data with SEEK_DATA itself.
      await image.save(join(work, name), { copier: 'js' });
      outputs.push(readFileSync(join(work, name)));
      expect(readdirSync(join(cacheDir, 'maps'))).toHaveLength(1);
    }
    const mapFile = readdirSync(join(cacheDir, 'maps'))[0]!;
    expect(JSON.parse(readFileSync(join(cacheDir, 'maps', mapFile), 'utf8'))).toEqual(scanDataMap(base, statSync(base).size));
    expect(outputs[1]!.equals(outputs[0]!)).toBe(true);
    const expected = readFileSync(base);
    expected.set([1, 2, 3], 2 ** 20 + 5);
    expect(outputs[0]!.equals(expected)).toBe(true);
  });
});

describe('copy thread write calls', () => {
  /** Runs one copy thread over `source` with a file system in memory; returns the output and the length of every write call. */
  function run(source: Buffer, ranges: { byteOffset: number; length: number }[] | undefined) {
    const output = Buffer.alloc(source.length);
    const writes: number[] = [];
    const fs: FsSync = {
      openSync: () => 3,
      closeSync: () => undefined,
      readSync: ((_fd: number, buffer: Buffer, offset: number, length: number, position: number) =>
        source.copy(buffer, offset, position, position + length)) as FsSync['readSync'],
      writeSync: ((_fd: number, buffer: Buffer, offset: number, length: number, position: number) => {
        writes.push(length);
        buffer.copy(output, position, offset, offset + length);
        return length;
      }) as FsSync['writeSync'],
    };
    const units = ranges ? undefined : new SharedArrayBuffer(Math.ceil(source.length / DATA_MAP_BLOCK));
    copyThread(
      {
        fromPath: 'source',
        toFd: 4,
        blocks: splitBlocks(ranges ?? [{ byteOffset: 0, length: source.length }]),
        control: new SharedArrayBuffer(CONTROL_SLOTS * 4),
        slots: SLOTS,
        units,
        unitSize: DATA_MAP_BLOCK,
        writeSize: WRITE_SIZE,
      },
      fs,
    );
    return { output, writes };
  }

  it('splits each block into write calls of at most WRITE_SIZE bytes', () => {
    const source = randomBytes(3 * COPY_BLOCK + 12345);
    const { output, writes } = run(source, [{ byteOffset: 0, length: source.length }]);
    expect(output.equals(source)).toBe(true);
    expect(Math.max(...writes)).toBe(WRITE_SIZE);
    expect(writes.length).toBe(Math.ceil(source.length / WRITE_SIZE));
  });

  it('keeps the limit when zero units are skipped', () => {
    const source = randomBytes(2 * COPY_BLOCK);
    source.fill(0, DATA_MAP_BLOCK, 2 * DATA_MAP_BLOCK);
    const { output, writes } = run(source, undefined);
    expect(output.equals(source)).toBe(true);
    expect(Math.max(...writes)).toBeLessThanOrEqual(WRITE_SIZE);
    expect(writes.reduce((sum, length) => sum + length, 0)).toBe(source.length - DATA_MAP_BLOCK);
  });
});
