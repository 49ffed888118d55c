// Block maps: bmaptool (bmap-tools) is the oracle. It must accept the .bmap
// (file checksum, range checksums) and the copy it writes must hold the same
// filesystems as the image, even when every block the map leaves out holds
// garbage, as on a used SD card.
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blockRanges, BMAP_BLOCK_SIZE, openImage, type Volume } from '@piimg/core';
import { rawFixture, testCacheDir, type FixtureName } from './support/fixtures.js';
import { hasTool, run } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-bmap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every file, link and directory of a volume with its content hash, for comparing two images. */
async function tree(volume: Volume, path = '/', out = new Map<string, string>()): Promise<Map<string, string>> {
  for (const entry of await volume.readdir(path)) {
    const full = path === '/' ? `/${entry.name}` : `${path}/${entry.name}`;
    if (entry.type === 'directory') {
      out.set(full, 'dir');
      await tree(volume, full, out);
    } else if (entry.type === 'symlink') out.set(full, `-> ${await volume.readlink(full)}`);
    else if (entry.type === 'file') out.set(full, createHash('sha256').update(await volume.readFile(full)).digest('hex'));
  }
  return out;
}

/** Parses the ranges of a .bmap back into [first, last] block pairs. */
function mappedBlocks(text: string): [number, number][] {
  return [...text.matchAll(/<Range chksum="[0-9a-f]{64}">\s*(\d+)(?:-(\d+))?\s*<\/Range>/g)].map((m) => [Number(m[1]), Number(m[2] ?? m[1])]);
}

/** Overwrites every block the map leaves out with random bytes. */
function garbleUnmapped(path: string, size: number, mapped: [number, number][]): number {
  const fd = openSync(path, 'r+');
  const garbage = Buffer.alloc(1 << 20);
  let garbled = 0;
  try {
    const blocks = Math.ceil(size / BMAP_BLOCK_SIZE);
    let next = 0;
    for (const [first, last] of [...mapped, [blocks, blocks] as [number, number]]) {
      // Blocks next .. first-1 are unmapped: fill them in runs of up to 1 MiB.
      for (let at = next * BMAP_BLOCK_SIZE; at < Math.min(size, first * BMAP_BLOCK_SIZE); at += garbage.length) {
        const length = Math.min(garbage.length, Math.min(size, first * BMAP_BLOCK_SIZE) - at);
        randomFillSync(garbage, 0, length);
        writeSync(fd, garbage, 0, length, at);
      }
      garbled += Math.max(0, first - next);
      next = last + 1;
    }
  } finally {
    closeSync(fd);
  }
  return garbled;
}

describe('block ranges', () => {
  it('rounds byte ranges out to whole blocks and merges neighbours', () => {
    expect(blockRanges([{ byteOffset: 0, length: 1 }, { byteOffset: 4096, length: 4096 }, { byteOffset: 12288 + 5, length: 10 }], 20000)).toEqual([
      [0, 1],
      [3, 3],
    ]);
    // The last block may be partial.
    expect(blockRanges([{ byteOffset: 8000, length: 2000 }], 10000)).toEqual([[1, 2]]);
  });
});

const tools = hasTool('bmaptool') && hasTool('e2fsck') && hasTool('fsck.fat');
const fixtures: FixtureName[] = ['pi-bookworm', 'pi-bookworm-8m', 'pi-trixie', 'pi-bullseye', 'pi-gpt', 'pi-gpt-4k', 'pi-logical'];

describe.runIf(tools)('bmaptool accepts our block maps', () => {
  for (const name of fixtures) {
    it(`${name}: the copy holds the same filesystems, unmapped blocks garbled`, async () => {
      const base = await rawFixture(name, join(dir, name));
      const out = join(dir, name, 'device.img');
      const bmapPath = `${out}.bmap`;
      let bmapText = '';
      let expected = new Map<string, Map<string, string>>();
      {
        await using image = await openImage(base, { cacheDir: testCacheDir });
        // Edits that allocate: new files and directories on both filesystems.
        const root = await image.mount('root');
        await root.mkdir('/opt/bmap-test', { recursive: true });
        await root.writeFile('/opt/bmap-test/data.bin', randomFillSync(new Uint8Array(300_000)));
        await root.writeFile('/etc/hostname', 'mapped\n');
        const boot = await image.mount('boot');
        await boot.writeFile('/bmap-test.txt', 'x'.repeat(70_000));
        await image.save(out);
        const map = await image.writeBmap(bmapPath);
        bmapText = readFileSync(bmapPath, 'utf8');
        expect(map.text).toBe(bmapText);
        // The map is much smaller than the image: free space is left out.
        expect(map.mappedBlocksCount).toBeLessThan(map.blocksCount * 0.5);
        for (const partition of image.partitions) {
          if (partition.filesystem.type === 'swap' || partition.filesystem.type === 'unknown') continue;
          expected.set(String(partition.number), await tree(await image.mount(partition.number)));
        }
      }
      const copy = join(dir, name, 'flashed.img');
      run('bmaptool', ['copy', '--bmap', bmapPath, out, copy]);
      const size = readFileSync(out).length;
      expect(garbleUnmapped(copy, size, mappedBlocks(bmapText))).toBeGreaterThan(0);
      await using flashed = await openImage(copy, { cacheDir: testCacheDir });
      for (const partition of flashed.partitions) {
        const range = `${partition.byteOffset}`;
        if (partition.filesystem.type.startsWith('ext')) {
          const check = run('e2fsck', ['-fn', `${copy}?offset=${range}`], { allowFail: true });
          expect(check.status, `e2fsck on partition ${partition.number}:\n${check.stdout}`).toBe(0);
        } else if (partition.filesystem.type.startsWith('fat')) {
          // fsck.fat reads a whole device: give it the partition as its own file.
          const part = join(dir, name, `p${partition.number}.fat`);
          run('dd', [`if=${copy}`, `of=${part}`, 'bs=512', `skip=${partition.byteOffset / 512}`, `count=${partition.size / 512}`, 'status=none']);
          const check = run('fsck.fat', ['-n', part], { allowFail: true });
          expect(check.status, `fsck.fat on partition ${partition.number}:\n${check.stdout}`).toBe(0);
        }
        const want = expected.get(String(partition.number));
        if (want) expect(await tree(await flashed.mount(partition.number))).toEqual(want);
      }
    });
  }

  it('bmaptool refuses a map whose file checksum does not match', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'tamper'));
    await using image = await openImage(base, { cacheDir: testCacheDir });
    const bmapPath = join(dir, 'tamper', 'base.bmap');
    await image.writeBmap(bmapPath);
    const text = readFileSync(bmapPath, 'utf8').replace(/<MappedBlocksCount> (\d+)/, (_m, n) => `<MappedBlocksCount> ${Number(n) + 1}`);
    const fd = openSync(bmapPath, 'w');
    writeSync(fd, text);
    closeSync(fd);
    const result = run('bmaptool', ['copy', '--bmap', bmapPath, base, join(dir, 'tamper', 'out.img')], { allowFail: true });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/checksum mismatch/);
  });
});
