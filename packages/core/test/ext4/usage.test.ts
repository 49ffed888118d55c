// The ext allocation map used for block maps, against e2fsprogs' own view:
// every block dumpe2fs does not list as free must be in use, and nothing else.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { ext4UsedRanges } from '../../src/fs/ext4/usage.js';
import { isPiimgError } from '../../src/errors.js';
import { fixtures, haveOracles, imageFile, makeImage } from './support.js';
import { run } from '../../../../test/support/tools.js';

/** Free blocks per dumpe2fs ("Free blocks: 10-20, 33"), as a set. */
function dumpe2fsFree(path: string): { free: Set<number>; blockSize: number; blocks: number; firstDataBlock: number } {
  const text = run('dumpe2fs', [path]).stdout;
  const free = new Set<number>();
  for (const match of text.matchAll(/^\s+Free blocks: (.*)$/gm)) {
    for (const part of match[1]!.split(',').map((p) => p.trim()).filter(Boolean)) {
      const [a, b] = part.split('-').map(Number) as [number, number | undefined];
      for (let block = a; block <= (b ?? a); block++) free.add(block);
    }
  }
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)![1]);
  return { free, blockSize: field('Block size'), blocks: field('Block count'), firstDataBlock: field('First block') };
}

describe.runIf(haveOracles && process.platform !== 'win32')('ext4 allocation map', () => {
  for (const fixture of fixtures) {
    it(`matches dumpe2fs on ${fixture.name}`, () => {
      // 64 MiB: several groups, some never initialised (BLOCK_UNINIT).
      const bytes = makeImage(fixture, 64);
      const path = imageFile(bytes);
      run('debugfs', ['-w', '-R', 'write /etc/hostname hostname', path]);
      const truth = dumpe2fsFree(path);
      const ranges = ext4UsedRanges(new MemoryDevice(new Uint8Array(readFileSync(path))))!;
      const used = new Set<number>();
      for (const range of ranges) {
        for (let block = range.byteOffset / truth.blockSize; block < (range.byteOffset + range.length) / truth.blockSize; block++) used.add(block);
      }
      for (let block = truth.firstDataBlock; block < truth.blocks; block++) {
        if (truth.free.has(block) === used.has(block)) {
          throw new Error(`block ${block}: dumpe2fs says ${truth.free.has(block) ? 'free' : 'used'}, the map says ${used.has(block) ? 'used' : 'free'}`);
        }
      }
    });
  }

  it('refuses descriptors that point outside the filesystem', () => {
    const bytes = makeImage(fixtures[1]!, 16, ['-b', '4096']);
    // Group 0's descriptor is the first in block 1 (4 KiB blocks): bg_block_bitmap_lo at offset 0.
    new DataView(bytes.buffer).setUint32(4096, 0x7fffffff, true);
    let caught: unknown;
    try {
      ext4UsedRanges(new MemoryDevice(bytes));
    } catch (error) {
      caught = error;
    }
    expect(isPiimgError(caught, 'E_EXT4_CORRUPT')).toBe(true);
  });
});
