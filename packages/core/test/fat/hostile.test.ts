import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { PiimgError, isPiimgError } from '../../src/errors.js';
import { FatVolume, formatFat, mountFat, probeFat } from '../../src/fs/fat/index.js';
import { BPB, viewOf } from '../../src/fs/fat/layout.js';

async function build(fatType: 'fat16' | 'fat32'): Promise<{ device: MemoryDevice; volume: FatVolume }> {
  const device = new MemoryDevice(fatType === 'fat16' ? 16 * 2 ** 20 : 40 * 2 ** 20);
  formatFat(device, { fatType, clusterSize: 512 });
  const volume = await mountFat(device);
  await volume.mkdir('/dir');
  await volume.writeFile('/dir/a.bin', new Uint8Array(512 * 4).fill(1));
  await volume.writeFile('/b.bin', new Uint8Array(512 * 3).fill(2));
  await volume.close();
  return { device, volume: await mountFat(device) };
}

/** Cluster chain of a file, read through the volume's table. */
function chainOf(volume: FatVolume, first: number): number[] {
  return volume.table.chain(first, { limit: 100 });
}

async function firstCluster(volume: FatVolume, path: string): Promise<number> {
  const { parent, name } = { parent: path.slice(0, path.lastIndexOf('/')) || '/', name: path.slice(path.lastIndexOf('/') + 1) };
  const dir = (volume as unknown as { resolveDir(p: string): { find(n: string): { firstCluster: number } } }).resolveDir(parent);
  return dir.find(name).firstCluster;
}

/** Rewrites one FAT entry in every FAT copy of the raw image, then remounts. */
async function patchFat(device: MemoryDevice, volume: FatVolume, cluster: number, value: number): Promise<FatVolume> {
  const g = volume.geometry;
  for (let copy = 0; copy < g.numFats; copy++) {
    const base = g.fatByteOffset + copy * g.fatSectors * g.sectorSize;
    const view = viewOf(device.bytes);
    if (g.fatType === 'fat32') view.setUint32(base + cluster * 4, value, true);
    else view.setUint16(base + cluster * 2, value, true);
  }
  return mountFat(device);
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<PiimgError> {
  try {
    await promise;
  } catch (error) {
    if (isPiimgError(error, code)) return error;
    throw error;
  }
  throw new Error(`expected ${code}`);
}

describe.each(['fat16', 'fat32'] as const)('hostile %s volumes', (fatType) => {
  it('a looping chain is an error, not a hang or repeated data', async () => {
    const { device, volume } = await build(fatType);
    const first = await firstCluster(volume, '/dir/a.bin');
    const chain = chainOf(volume, first);
    const broken = await patchFat(device, volume, chain[1]!, first);
    const error = await expectCode(broken.readFile('/dir/a.bin'), 'E_FAT_CORRUPT');
    expect(error.message).toMatch(/loops/);
    await expectCode(broken.writeFile('/new.txt', 'x'), 'E_FAT_CORRUPT');
  });

  it('cross-linked chains make the volume refuse writes', async () => {
    const { device, volume } = await build(fatType);
    const a = chainOf(volume, await firstCluster(volume, '/dir/a.bin'));
    const b = chainOf(volume, await firstCluster(volume, '/b.bin'));
    // b's last cluster now continues into a's chain.
    const broken = await patchFat(device, volume, b[b.length - 1]!, a[1]!);
    expect((await broken.readFile('/b.bin')).length).toBe(512 * 3);
    const error = await expectCode(broken.rm('/b.bin'), 'E_FAT_CORRUPT');
    expect(error.message).toMatch(/cross-linked/);
    expect((await broken.readFile('/dir/a.bin')).every((x) => x === 1)).toBe(true);
  });

  it('a link to a cluster beyond the end is an error', async () => {
    const { device, volume } = await build(fatType);
    const first = await firstCluster(volume, '/b.bin');
    const broken = await patchFat(device, volume, first, volume.geometry.clusterCount + 100);
    expect((await expectCode(broken.readFile('/b.bin'), 'E_FAT_CORRUPT')).message).toMatch(/outside/);
  });

  it('a directory entry pointing into free space is an error', async () => {
    const { device, volume } = await build(fatType);
    const first = await firstCluster(volume, '/b.bin');
    const broken = await patchFat(device, volume, first, 0);
    expect((await expectCode(broken.readFile('/b.bin'), 'E_FAT_CORRUPT')).message).toMatch(/free/);
    const dirFirst = await firstCluster(volume, '/dir');
    const broken2 = await patchFat(device, volume, dirFirst, 0);
    await expectCode(broken2.readdir('/dir'), 'E_FAT_CORRUPT');
  });
});

describe('impossible BPB values', () => {
  const mutations: [string, (view: DataView) => void][] = [
    ['bytes per sector 1000', (v) => v.setUint16(BPB.BPB_BytsPerSec.byteOffset, 1000, true)],
    ['sectors per cluster 3', (v) => v.setUint8(BPB.BPB_SecPerClus.byteOffset, 3)],
    ['no FATs', (v) => v.setUint8(BPB.BPB_NumFATs.byteOffset, 0)],
    ['no reserved sectors', (v) => v.setUint16(BPB.BPB_RsvdSecCnt.byteOffset, 0, true)],
    ['larger than the device', (v) => v.setUint32(BPB.BPB_TotSec32.byteOffset, 0xfffffff0, true)],
    ['FAT too small for the clusters', (v) => v.setUint32(0x24, 1, true)],
    ['no signature', (v) => v.setUint8(0x1fe, 0)],
  ];
  it.each(mutations)('%s: mount fails with E_FAT_BAD_BPB, probe returns undefined', async (_name, mutate) => {
    const device = new MemoryDevice(40 * 2 ** 20);
    formatFat(device, { fatType: 'fat32', clusterSize: 512 });
    mutate(viewOf(device.bytes));
    expect(probeFat(device)).toBeUndefined();
    await expect(mountFat(device)).rejects.toMatchObject({ code: 'E_FAT_BAD_BPB' });
  });

  it('probeFat ignores data that is not FAT', () => {
    expect(probeFat(new MemoryDevice(4096))).toBeUndefined();
    expect(probeFat(new MemoryDevice(100))).toBeUndefined();
  });
});

describe('random damage to the metadata', () => {
  it('only ever produces PiimgError, never a hang or another exception', async () => {
    const pristine = new MemoryDevice(2 * 2 ** 20);
    formatFat(pristine, { fatType: 'fat12', clusterSize: 512 });
    const seedVolume = await mountFat(pristine);
    await seedVolume.mkdir('/d1/d2', { recursive: true });
    for (let i = 0; i < 20; i++) await seedVolume.writeFile(`/d1/file with long name ${i}.txt`, new Uint8Array(700 * i));
    await seedVolume.close();
    const metadataEnd = seedVolume.geometry.dataByteOffset + 8 * 512;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(metadataEnd - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 20 }), async (edits) => {
        const device = new MemoryDevice(pristine.bytes.slice());
        for (const [at, value] of edits) device.bytes[at] = value;
        try {
          const volume = await mountFat(device);
          const walk = async (path: string, depth: number): Promise<void> => {
            if (depth > 8) return;
            for (const entry of await volume.readdir(path)) {
              const child = `${path === '/' ? '' : path}/${entry.name}`;
              if (entry.type === 'directory') await walk(child, depth + 1);
              else await volume.readFile(child);
            }
          };
          await walk('/', 0);
          await volume.writeFile('/d1/new.txt', new Uint8Array(3000));
          await volume.rm('/d1', { recursive: true });
          await volume.close();
        } catch (error) {
          if (!(error instanceof PiimgError)) throw error;
        }
      }),
      { numRuns: 150 },
    );
  });
});
