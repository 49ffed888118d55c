// image.save() on a filesystem with reflinks (XFS) clones the base and writes
// only the changed chunks: proven from the extent map of the output
// (`filefrag -v` flags extents shared with another file), not assumed.
// Needs root for the loop mount; CI runs as root.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '@piimg/core';
import { rawFixture, testCacheDir } from './support/fixtures.js';
import { hasTool, run } from './support/tools.js';

interface Extent {
  logical: number;
  physical: number;
  blocks: number;
  shared: boolean;
}

/** Parses `filefrag -v`: one line per extent, lengths in filesystem blocks. */
export function parseFilefrag(text: string): { blockSize: number; extents: Extent[] } {
  const blockSize = Number(/blocks? of (\d+) bytes|blocksize of (\d+)/.exec(text)?.slice(1).find(Boolean) ?? NaN);
  const extents: Extent[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+):.*?(\S*)\s*$/.exec(line);
    if (!match) continue;
    extents.push({ logical: Number(match[1]), physical: Number(match[2]), blocks: Number(match[3]), shared: /shared/.test(line) });
  }
  return { blockSize, extents };
}

const isRoot = process.getuid?.() === 0;
const tools = ['mkfs.xfs', 'filefrag', 'losetup'].every((tool) => hasTool(tool));
if (!isRoot) {
  if (process.env.CI) throw new Error('the reflink test needs root for a loop mount; CI runs as root');
  console.warn('\n*** SKIPPED: the reflink test needs root (loop mount of an XFS file system) ***\n');
}

describe.runIf(isRoot && tools)('save on XFS with reflinks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'piimg-reflink-'));
  const mount = join(dir, 'mnt');
  let mounted = false;

  beforeAll(() => {
    mkdirSync(mount);
    run('truncate', ['-s', '1G', join(dir, 'xfs.img')]);
    run('mkfs.xfs', ['-q', '-m', 'reflink=1', join(dir, 'xfs.img')]);
    run('mount', ['-o', 'loop', join(dir, 'xfs.img'), mount]);
    mounted = true;
  });
  afterAll(() => {
    if (mounted) run('umount', [mount], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('clones the base and writes only the changed chunks', async () => {
    const base = await rawFixture('pi-bookworm', join(mount, 'base'));
    const baseHash = createHash('sha256').update(readFileSync(base)).digest('hex');
    const out = join(mount, 'device.img');
    let changedBytes = 0;
    {
      await using image = await openImage(base, { cacheDir: testCacheDir });
      const root = await image.mount('root');
      await root.writeFile('/etc/hostname', 'reflinked\n');
      const result = await image.save(out);
      expect(result.reflinked).toBe(true);
      changedBytes = result.changedBytes;
      expect(changedBytes).toBeGreaterThan(0);
    }
    // The base is untouched, and the output reads back with the change.
    expect(createHash('sha256').update(readFileSync(base)).digest('hex')).toBe(baseHash);
    {
      await using image = await openImage(out, { cacheDir: testCacheDir });
      const root = await image.mount('root');
      expect(new TextDecoder().decode(await root.readFile('/etc/hostname'))).toBe('reflinked\n');
    }
    run('sync', []); // delayed allocation: extents get their place on writeback
    const baseMap = parseFilefrag(run('filefrag', ['-v', base]).stdout);
    const outMap = parseFilefrag(run('filefrag', ['-v', out]).stdout);
    const bytes = (map: typeof baseMap, shared?: boolean) =>
      map.extents.filter((e) => shared === undefined || e.shared === shared).reduce((sum, e) => sum + e.blocks * map.blockSize, 0);
    const baseData = bytes(baseMap);
    expect(baseData).toBeGreaterThan(1 << 20);
    // Every byte of the output that is not a changed chunk is shared with the base's extents...
    expect(bytes(outMap, false)).toBeLessThanOrEqual(changedBytes);
    expect(bytes(outMap, true)).toBeGreaterThanOrEqual(baseData - changedBytes);
    // ...and lies at the same physical place as the base's blocks.
    const basePhysical = new Map(baseMap.extents.map((e) => [e.logical, e.physical]));
    const sameStart = outMap.extents.filter((e) => e.shared && basePhysical.has(e.logical));
    expect(sameStart.length).toBeGreaterThan(0);
    for (const extent of sameStart) expect(extent.physical).toBe(basePhysical.get(extent.logical));
  });
});
