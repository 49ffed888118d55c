import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { type FatGeometry, parseBootSector } from '../../src/fs/fat/boot.js';
import { codecs, END, FREE } from '../../src/fs/fat/codec.js';
import { checkFat, formatFat, mountFat } from '../../src/fs/fat/index.js';
import { hasTool } from '../../../../test/support/tools.js';
import { FIXTURES, fsck, makeFat, mcopy, mmd, pattern, tempDir } from './support.js';

const haveTools = hasTool('mkfs.fat') && hasTool('fsck.fat') && hasTool('mcopy');

/** Direct byte access to a volume in memory, for making damage. */
class Image {
  readonly geometry: FatGeometry;
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.geometry = parseBootSector(bytes.subarray(0, 512), bytes.length);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private fatCopy(copy: number): { fat: Uint8Array; view: DataView } {
    const { fatByteOffset, fatSectors, sectorSize } = this.geometry;
    const fat = this.bytes.subarray(fatByteOffset + copy * fatSectors * sectorSize, fatByteOffset + (copy + 1) * fatSectors * sectorSize);
    return { fat, view: new DataView(fat.buffer, fat.byteOffset, fat.byteLength) };
  }
  get(cluster: number): number {
    const { fat, view } = this.fatCopy(0);
    return codecs[this.geometry.fatType].get(fat, view, cluster);
  }
  /** Sets a FAT entry in every copy (so the copies stay equal), or in one. */
  set(cluster: number, value: number, onlyCopy?: number): void {
    for (let copy = 0; copy < this.geometry.numFats; copy++) {
      if (onlyCopy !== undefined && copy !== onlyCopy) continue;
      const { fat, view } = this.fatCopy(copy);
      codecs[this.geometry.fatType].put(fat, view, cluster, value);
    }
  }
  chain(first: number): number[] {
    const out = [first];
    for (let next = this.get(first); next !== END; next = this.get(next)) out.push(next);
    return out;
  }
  firstFree(): number {
    for (let cluster = 2; cluster <= this.geometry.clusterCount + 1; cluster++) if (this.get(cluster) === FREE) return cluster;
    throw new Error('no free cluster');
  }
  /** Byte offset of the directory entry of `path` (the volume's inode number is its slot position). */
  async entryOffset(path: string): Promise<number> {
    const volume = await mountFat(new MemoryDevice(this.bytes), { readOnly: true });
    return (await volume.stat(path)).ino * 32;
  }
  async firstCluster(path: string): Promise<number> {
    const at = await this.entryOffset(path);
    return (this.view.getUint16(at + 0x14, true) << 16) | this.view.getUint16(at + 0x1a, true);
  }
  async setFirstCluster(path: string, cluster: number): Promise<void> {
    const at = await this.entryOffset(path);
    this.view.setUint16(at + 0x14, cluster >>> 16, true);
    this.view.setUint16(at + 0x1a, cluster & 0xffff, true);
  }
  async size(path: string): Promise<number> {
    return this.view.getUint32((await this.entryOffset(path)) + 0x1c, true);
  }
  async setSize(path: string, size: number): Promise<void> {
    this.view.setUint32((await this.entryOffset(path)) + 0x1c, size, true);
  }
  clusterByteOffset(cluster: number): number {
    return this.geometry.dataByteOffset + (cluster - 2) * this.geometry.clusterSize;
  }
  /** Byte offset of slot `slot` of the root directory (mkfs.fat puts the label entry in slot 0). */
  rootSlot(slot: number): number {
    const { fatType, rootByteOffset, rootCluster } = this.geometry;
    return (fatType === 'fat32' ? this.clusterByteOffset(rootCluster) : rootByteOffset) + slot * 32;
  }
  /** Byte offset of BS_VolLab in the boot sector. */
  get bootLabelOffset(): number {
    return this.geometry.fatType === 'fat32' ? 0x47 : 0x2b;
  }
  /** Adjusts the FSInfo free count; FAT12/16 have no FSInfo sector. */
  fsInfoFree(delta: number): void {
    if (this.geometry.fsInfoSector === 0) return;
    const at = this.geometry.fsInfoSector * this.geometry.sectorSize + 0x1e8;
    this.view.setUint32(at, this.view.getUint32(at, true) + delta, true);
  }
}

describe('checkFat without native tools', () => {
  it('passes fresh volumes made by formatFat and files written by FatVolume', async () => {
    for (const fatType of ['fat12', 'fat16', 'fat32'] as const) {
      const device = new MemoryDevice(fatType === 'fat12' ? 1440 * 1024 : fatType === 'fat16' ? 32 * 2 ** 20 : 40 * 2 ** 20);
      formatFat(device, { fatType, label: 'PIIMG', ...(fatType === 'fat32' ? { clusterSize: 512 } : {}) });
      expect(checkFat(device)).toMatchObject({ clean: true, problems: [], fatType, files: 0, directories: 1 });
      const volume = await mountFat(device);
      await volume.mkdir('/overlays/deeper', { recursive: true });
      await volume.writeFile('/overlays/Some Overlay.dtbo', pattern(10_000, 1));
      await volume.writeFile('/overlays/deeper/x.txt', 'x');
      await volume.writeFile('/empty', new Uint8Array(0));
      await volume.close();
      const result = checkFat(device);
      expect(result.problems).toEqual([]);
      expect(result).toMatchObject({ clean: true, files: 3, directories: 3 });
    }
  });

  it('throws PiimgError only for a boot sector that is not FAT', () => {
    expect(() => checkFat(new MemoryDevice(4096))).toThrow(expect.objectContaining({ code: 'E_FAT_BAD_BPB' }));
    expect(() => checkFat(new MemoryDevice(100))).toThrow(expect.objectContaining({ code: 'E_FAT_BAD_BPB' }));
  });

  it('never throws for random damage behind a valid boot sector, and stays bounded', () => {
    const device = new MemoryDevice(2 * 2 ** 20);
    formatFat(device, { fatType: 'fat12' });
    const reserved = 512;
    let x = 7;
    for (let round = 0; round < 200; round++) {
      const bytes = device.bytes.slice();
      for (let i = 0; i < 200; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        bytes[reserved + (x % (bytes.length - reserved))] = x >>> 24;
      }
      try {
        const result = checkFat(new MemoryDevice(bytes), { maxProblems: 20 });
        expect(result.problems.length).toBeLessThanOrEqual(21);
      } catch (error) {
        if (!isPiimgError(error)) throw error;
        throw new Error(`threw ${error.code}: ${error.message}`);
      }
    }
  });

  it('checks a 512 MiB FAT32 volume with 512-byte clusters (~1M clusters) in well under a second', async () => {
    const device = new MemoryDevice(512 * 2 ** 20);
    formatFat(device, { fatType: 'fat32', clusterSize: 512 });
    const volume = await mountFat(device);
    await volume.writeFile('/kernel8.img', new Uint8Array(8 * 2 ** 20));
    await volume.mkdir('/overlays');
    for (let i = 0; i < 300; i++) await volume.writeFile(`/overlays/overlay-${i}.dtbo`, pattern(2000 + i, i));
    await volume.close();
    checkFat(device);
    const started = performance.now();
    const result = checkFat(device);
    const ms = performance.now() - started;
    expect(result.problems).toEqual([]);
    expect(result.clusterCount).toBeGreaterThan(1_000_000);
    expect(result.files).toBe(301);
    expect(ms).toBeLessThan(1000);
  });
});

interface Damage {
  name: string;
  /** Damages the image; returns text that a problem must contain (the path, or the structure). */
  apply(image: Image): Promise<string> | string;
  /** A pattern the problem must also match. */
  expect: RegExp;
}

const DAMAGES: Damage[] = [
  {
    name: 'second FAT copy differs',
    apply: async (image) => {
      const cluster = await image.firstCluster('/big.bin');
      image.set(cluster, cluster + 100, 1);
      return 'FAT copy 2';
    },
    expect: /differs/,
  },
  {
    name: 'loop in a chain',
    apply: async (image) => {
      const chain = image.chain(await image.firstCluster('/big.bin'));
      image.set(chain[chain.length - 1]!, chain[1]!);
      return '/big.bin';
    },
    expect: /loops/,
  },
  {
    name: 'cross-linked files',
    apply: async (image) => {
      // /b.txt now starts in /a.txt's chain; its own cluster becomes lost.
      await image.setFirstCluster('/b.txt', await image.firstCluster('/a.txt'));
      return '/a.txt';
    },
    expect: /also used by|cross-linked/,
  },
  {
    name: 'lost cluster',
    apply: (image) => {
      image.set(image.firstFree(), END);
      image.fsInfoFree(-1);
      return 'lost clusters';
    },
    expect: /reachable from no file/,
  },
  {
    name: 'size longer than the chain',
    apply: async (image) => {
      await image.setSize('/big.bin', (await image.size('/big.bin')) + 3 * image.geometry.clusterSize);
      return '/big.bin';
    },
    expect: /needs \d+ clusters/,
  },
  {
    name: 'chain longer than the size',
    apply: async (image) => {
      await image.setSize('/Long File Name With Spaces.txt', 1);
      return '/Long File Name With Spaces.txt';
    },
    expect: /needs 1 clusters/,
  },
  {
    name: 'entry pointing into free space',
    apply: async (image) => {
      await image.setFirstCluster('/a.txt', image.firstFree() + 5);
      return '/a.txt';
    },
    expect: /marks free/,
  },
  {
    name: 'chain running into free space',
    apply: async (image) => {
      const chain = image.chain(await image.firstCluster('/big.bin'));
      image.set(chain[2]!, image.firstFree() + 7);
      return '/big.bin';
    },
    expect: /free cluster/,
  },
  {
    name: 'bad ".."',
    apply: async (image) => {
      // "..": the second slot of /dir/sub's first cluster, made to point to /dir/sub itself.
      const sub = await image.firstCluster('/dir/sub');
      const at = image.clusterByteOffset(sub) + 32;
      image.view.setUint16(at + 0x14, sub >>> 16, true);
      image.view.setUint16(at + 0x1a, sub & 0xffff, true);
      return '/dir/sub';
    },
    expect: /".." points to cluster/,
  },
  {
    name: 'wrong FSInfo free count',
    apply: (image) => {
      image.fsInfoFree(-10);
      return 'FSInfo';
    },
    expect: /free cluster count/,
  },
  {
    name: 'dirty bit',
    apply: (image) => {
      const at = image.geometry.extendedOffset + 1;
      image.bytes[at] = image.bytes[at]! | 1;
      return 'boot sector';
    },
    expect: /dirty bit/,
  },
  {
    name: 'long-name checksum mismatch',
    apply: async (image) => {
      // The slot before the short entry is the first part of the long name.
      const at = (await image.entryOffset('/Long File Name With Spaces.txt')) - 32;
      image.bytes[at + 0x0d] = image.bytes[at + 0x0d]! ^ 0x5a;
      // Reported against the root directory itself.
      return '/: ';
    },
    expect: /checksum/,
  },
  {
    name: 'invalid short name',
    apply: async (image) => {
      image.bytes[(await image.entryOffset('/a.txt')) + 1] = 0x3f;
      return '?';
    },
    expect: /invalid short name/,
  },
  {
    name: 'short name with a "." inside the 8.3 fields',
    apply: async (image) => {
      image.bytes[(await image.entryOffset('/a.txt')) + 2] = 0x2e;
      return 'invalid short name';
    },
    expect: /"A \.     TXT"/,
  },
  {
    name: 'short name starting with "."',
    apply: async (image) => {
      image.bytes[await image.entryOffset('/a.txt')] = 0x2e;
      return 'invalid short name';
    },
    expect: /"\.       TXT"/,
  },
  {
    name: 'NT "no 8.3 name" flag on an entry without a long name',
    apply: async (image) => {
      const at = (await image.entryOffset('/a.txt')) + 0x0c;
      image.bytes[at] = image.bytes[at]! | 0x20;
      return '/a.txt';
    },
    expect: /invalid short name/,
  },
  {
    name: 'long-name slot with a cluster number (LDIR_FstClusLO)',
    apply: async (image) => {
      image.view.setUint16((await image.entryOffset('/Long File Name With Spaces.txt')) - 32 + 0x1a, 7, true);
      return 'long-name slot';
    },
    expect: /LDIR_FstClusLO is 7/,
  },
  {
    name: 'long-name slot with LDIR_Type set',
    apply: async (image) => {
      image.bytes[(await image.entryOffset('/Long File Name With Spaces.txt')) - 32 + 0x0c] = 1;
      return 'long-name slot';
    },
    expect: /LDIR_Type is 0x1/,
  },
  {
    name: 'long-name slot with reserved attribute bits',
    apply: async (image) => {
      image.bytes[(await image.entryOffset('/Long File Name With Spaces.txt')) - 32 + 0x0b] = 0x4f;
      return 'long-name slot';
    },
    expect: /reserved bits/,
  },
  {
    name: 'entry with both the volume-label and the directory attribute',
    apply: async (image) => {
      image.bytes[(await image.entryOffset('/empty')) + 0x0b] = 0x18;
      return 'volume-label and the directory attribute';
    },
    expect: /0x18/,
  },
  {
    name: 'entry in use after the end-of-directory marker',
    apply: (image) => {
      // mtools leaves the root as: label, 5 files (one with 2 long-name slots), dir; then zeros.
      let slot = 0;
      while (image.bytes[image.rootSlot(slot)] !== 0) slot++;
      const at = image.rootSlot(slot + 1);
      image.bytes.set(new TextEncoder().encode('HIDDEN  TXT'), at);
      // fsck.fat reads the entry as a file: one pointing into free space is damage to it too.
      image.view.setUint16(at + 0x1a, image.firstFree() + 5, true);
      image.view.setUint32(at + 0x1c, 10, true);
      return 'after the end-of-directory marker';
    },
    expect: /slot \d+ is in use/,
  },
  {
    name: 'NT no-8.3-name flag on a dot entry',
    apply: async (image) => {
      image.bytes[image.clusterByteOffset(await image.firstCluster('/dir/sub')) + 0x0c] = 0x20;
      return '/dir/sub';
    },
    expect: /"\." entry has the NT no-8.3-name flag/,
  },
  {
    name: 'clean-shutdown bit of FAT[1] cleared',
    apply: (image) => {
      const { fatType, fatByteOffset, fatSectors, sectorSize, numFats } = image.geometry;
      for (let copy = 0; copy < numFats; copy++) {
        const at = fatByteOffset + copy * fatSectors * sectorSize;
        if (fatType === 'fat32') image.view.setUint32(at + 4, image.view.getUint32(at + 4, true) & ~0x08000000, true);
        else image.view.setUint16(at + 2, image.view.getUint16(at + 2, true) & ~0x8000, true);
      }
      return 'FAT: entry 1';
    },
    expect: /clean-shutdown bit/,
  },
  {
    name: 'volume label entry with a start cluster',
    apply: (image) => {
      image.view.setUint16(image.rootSlot(0) + 0x1a, image.firstFree() + 3, true);
      return 'volume label entry';
    },
    expect: /start cluster is \d+, should be 0/,
  },
  {
    name: 'volume label entry with a size',
    apply: (image) => {
      image.view.setUint32(image.rootSlot(0) + 0x1c, 100, true);
      return 'volume label entry';
    },
    expect: /size is 100/,
  },
  {
    name: 'volume label with a forbidden character',
    apply: (image) => {
      image.bytes[image.rootSlot(0) + 2] = 0x2e;
      return 'volume label entry';
    },
    expect: /"TE\.TVOL" is not valid/,
  },
  {
    name: 'volume label starting with a space',
    apply: (image) => {
      image.bytes[image.rootSlot(0)] = 0x20;
      return 'volume label entry';
    },
    expect: /starts with a space/,
  },
  {
    name: 'volume label differs from BS_VolLab',
    apply: (image) => {
      image.bytes[image.rootSlot(0) + 2] = 0x41;
      return 'boot sector';
    },
    expect: /"TESTVOL" differs from the root directory's volume label entry "TEATVOL"/,
  },
  {
    name: 'volume label entry deleted, BS_VolLab kept',
    apply: (image) => {
      image.bytes[image.rootSlot(0)] = 0xe5;
      return 'boot sector';
    },
    expect: /no volume label entry/,
  },
  {
    name: 'BS_VolLab says NO NAME, the root has a label',
    apply: (image) => {
      image.bytes.set(new TextEncoder().encode('NO NAME    '), image.bootLabelOffset);
      // FAT32 keeps a backup boot sector: change it too, so that only the label differs.
      if (image.geometry.backupBootSector) image.bytes.set(new TextEncoder().encode('NO NAME    '), image.geometry.backupBootSector * image.geometry.sectorSize + image.bootLabelOffset);
      return 'boot sector';
    },
    expect: /no label \(NO NAME\)/,
  },
  {
    name: 'invalid BS_VolLab without a label entry',
    apply: (image) => {
      image.bytes[image.rootSlot(0)] = 0xe5;
      image.bytes[image.bootLabelOffset + 2] = 0x2e;
      if (image.geometry.backupBootSector) image.bytes[image.geometry.backupBootSector * image.geometry.sectorSize + image.bootLabelOffset + 2] = 0x2e;
      return 'boot sector';
    },
    expect: /"TE\.TVOL" is not valid/,
  },
];

describe.skipIf(!haveTools)('checkFat against fsck.fat -n', () => {
  let dir: string;
  let cleanup: () => void;
  beforeAll(() => {
    ({ dir, cleanup } = tempDir());
  });
  afterAll(() => cleanup());

  function host(name: string, data: Uint8Array): string {
    const path = join(dir, name);
    writeFileSync(path, data);
    return path;
  }

  /** mkfs.fat, then content written by mtools. */
  function mtoolsVolume(fixture: (typeof FIXTURES)[number], name: string): string {
    const image = makeFat(dir, fixture, `${name}.img`);
    mcopy(image, host('a.txt', pattern(300, 1)), '/a.txt');
    mcopy(image, host('b.txt', pattern(200, 2)), '/b.txt');
    mcopy(image, host('big.bin', pattern(20_000, 3)), '/big.bin');
    mcopy(image, host('long.txt', pattern(5000, 4)), '/Long File Name With Spaces.txt');
    mcopy(image, host('empty', new Uint8Array(0)), '/empty');
    mmd(image, '/dir');
    mmd(image, '/dir/sub');
    mcopy(image, host('inner.txt', pattern(1500, 5)), '/dir/sub/inner.txt');
    return image;
  }

  it.each(FIXTURES)('finds nothing on a clean volume written by mtools and by FatVolume: $name', async (fixture) => {
    const image = mtoolsVolume(fixture, `clean-${fixture.name.replace(/\W+/g, '-')}`);
    expect(fsck(image).clean).toBe(true);
    const device = new MemoryDevice(new Uint8Array(readFileSync(image)));
    expect(checkFat(device).problems).toEqual([]);
    const volume = await mountFat(device);
    await volume.mkdir('/ours/deep', { recursive: true });
    await volume.writeFile('/ours/deep/Some Long Name.conf', pattern(7000, 6));
    await volume.appendFile('/big.bin', pattern(3000, 7));
    await volume.rm('/b.txt');
    await volume.rename('/dir/sub', '/ours/sub');
    await volume.close();
    const result = checkFat(device);
    expect(result.problems).toEqual([]);
    expect(result.clean).toBe(true);
    writeFileSync(image, device.bytes);
    expect(fsck(image).clean).toBe(true);
  });

  const fat32 = FIXTURES.find((fixture) => fixture.name === 'FAT32 -s 1')!;
  const fat16 = FIXTURES.find((fixture) => fixture.name === 'FAT16 64 MiB')!;
  const cases = DAMAGES.flatMap((damage) =>
    [fat32, fat16]
      .filter((fixture) => fixture === fat32 || !/FSInfo/.test(damage.name))
      .map((fixture) => ({ ...damage, fixture, label: `${damage.name} (${fixture.name})` })),
  );

  it('lists a file whose short name starts with ".", which fsck.fat reports as a bad name', async () => {
    const base = mtoolsVolume(fat16, 'leading-dot');
    const image = new Image(new Uint8Array(readFileSync(base)));
    const at = await image.entryOffset('/a.txt');
    image.bytes.set(new TextEncoder().encode('.HIDDEN TXT'), at);
    image.bytes[at + 0x0c] = 0;
    const volume = await mountFat(new MemoryDevice(image.bytes), { readOnly: true });
    const names = (await volume.readdir('/')).map((entry) => entry.name);
    expect(names).toContain('.HIDDEN.TXT');
    expect(await volume.readFile('/.HIDDEN.TXT')).toEqual(pattern(300, 1));
    expect(checkFat(new MemoryDevice(image.bytes)).problems).toContainEqual(expect.stringMatching(/^\/\.HIDDEN\.TXT: invalid short name/));
    writeFileSync(base, image.bytes);
    const verdict = fsck(base);
    expect(verdict.clean, verdict.output).toBe(false);
    expect(verdict.output).toMatch(/Bad short file name \(\.HIDDEN\.TXT\)/);
  });

  it.each(cases)('$label: problem reported, and fsck.fat agrees', async ({ name, apply, expect: pattern, fixture }) => {
    const base = mtoolsVolume(fixture, `damage-${name.replace(/\W+/g, '-')}-${fixture.name.replace(/\W+/g, '-')}`);
    const image = new Image(new Uint8Array(readFileSync(base)));
    expect(checkFat(new MemoryDevice(image.bytes)).clean).toBe(true);
    const where = await apply(image);
    const result = checkFat(new MemoryDevice(image.bytes));
    expect(result.clean).toBe(false);
    const matching = result.problems.filter((problem) => problem.includes(where) && pattern.test(problem));
    expect(matching, result.problems.join('\n')).not.toEqual([]);
    writeFileSync(base, image.bytes);
    const verdict = fsck(base);
    expect(verdict.clean, verdict.output).toBe(false);
  });
});
