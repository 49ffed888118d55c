// Runs fuzz cases for run.mjs, one at a time, in a worker thread (so that a
// hang can be ended by terminating the worker). Each case is rebuilt from
// (seed, index) alone: `node test/fuzz/run.mjs --seed S --case K` replays it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import {
  FileReader,
  MemoryDevice,
  Overlay,
  PiimgError,
  checkFat,
  crc32,
  detectFilesystem,
  mountExt4,
  mountFat,
  readPartitionTable,
  resolveSource,
  slice,
  verifyExt4,
} from '../../packages/core/lib/index.js';
import { EXT4_TARGETS, FAT_TARGETS, caseSeed, mutateBytes, mutateContainer, mutateExt4, mutateFat, put, rng, u32 } from './mutate.mjs';

const { bases } = workerData;
const scratch = mkdtempSync(join(tmpdir(), 'piimg-fuzz-case-'));
const cache = new Map();
const baseBytes = (path) => {
  if (!cache.has(path)) cache.set(path, new Uint8Array(readFileSync(path)));
  return cache.get(path);
};
const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin`, LC_ALL: 'C' };

function native(tool, args) {
  const result = spawnSync(tool, args, { env, encoding: 'utf8', timeout: 60_000 });
  return { clean: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n').slice(0, 6).join(' | ') };
}

/** Writes `bytes` to a scratch file and runs the native checker on it. */
function nativeCheck(kind, bytes) {
  const path = join(scratch, kind === 'fat' ? 'check.fat' : 'check.ext4');
  writeFileSync(path, bytes);
  try {
    return kind === 'fat' ? native('fsck.fat', ['-n', path]) : native('e2fsck', ['-fn', path]);
  } finally {
    rmSync(path, { force: true });
  }
}

/** Reads what is reachable, with bounds, through the Volume interface. */
async function walk(volume, path, budget, depth = 0) {
  if (depth > 6) return;
  for (const entry of await volume.readdir(path)) {
    if (--budget.entries < 0) return;
    const child = `${path === '/' ? '' : path}/${entry.name}`;
    try {
      const stat = await volume.lstat(child);
      if (stat.type === 'directory') await walk(volume, child, budget, depth + 1);
      else if (stat.type === 'file' && stat.size < 8 * 2 ** 20) await volume.readFile(child);
      else if (stat.type === 'symlink') await volume.readlink(child);
    } catch (error) {
      if (!(error instanceof PiimgError)) throw error;
    }
  }
}

/** Edits a mounted volume the way inject does: new files with long names, a directory, a replacement, a removal. */
async function edit(volume, r) {
  await volume.mkdir('/fuzz/deeper', { recursive: true });
  await volume.writeFile('/fuzz/deeper/A file with a long name.txt', new Uint8Array(500 + r.int(9000)).fill(0x61));
  await volume.writeFile('/fuzz/small', 'x');
  const names = (await volume.readdir('/')).filter((entry) => entry.type === 'file').map((entry) => entry.name);
  if (names.length > 0) {
    const victim = `/${r.pick(names)}`;
    if (r.chance(0.5)) await volume.rm(victim);
    else await volume.writeFile(victim, new Uint8Array(r.int(5000)).fill(0x62));
  }
  await volume.close();
}

/**
 * A mutated filesystem: read everything, check it, edit it. When the input was
 * clean for the native checker and the edit went through, the output must be
 * clean for it too.
 */
async function filesystemCase(kind, target, r) {
  const family = kind === 'fat' ? bases.fat : bases.ext4;
  // FSInfo exists on FAT32 only.
  const which = target === 'fat-fsinfo' ? 'fat32' : r.pick(Object.keys(family));
  const input = baseBytes(family[which]).slice();
  const edits = [];
  for (let n = 1 + r.int(2); n > 0; n--) {
    const description = kind === 'fat' ? mutateFat(input, target, r) : mutateExt4(input, target, r);
    if (description) edits.push(description);
  }
  if (edits.length === 0) return { outcome: 'skipped (no such structure)', detail: which };
  const detail = `${which}: ${edits.join('; ')}`;
  current.detail = detail;
  if (kind === 'fat') {
    try {
      checkFat(new MemoryDevice(input.slice()));
    } catch (error) {
      if (!(error instanceof PiimgError)) throw Object.assign(error, { phase: 'checkFat' });
    }
  } else if (r.chance(0.25)) {
    await verifyExt4(new MemoryDevice(input.slice()));
  }
  const device = new MemoryDevice(input.slice());
  const volume = kind === 'fat' ? await mountFat(device) : await mountExt4(device);
  await walk(volume, '/', { entries: 400 });
  await edit(volume, r);
  // The edit went through: compare with the native checker.
  const before = nativeCheck(kind, input);
  if (!before.clean) return { outcome: 'edited (input already damaged)', detail };
  const after = nativeCheck(kind, device.bytes);
  if (!after.clean) return { failure: `output of a successful edit is damaged: ${after.output}`, detail };
  return { outcome: 'edited, output clean', detail };
}

/** A mutated partition table: MBR (sector 0), EBR chain, GPT header and entries (CRCs recomputed half the time). */
async function partitionCase(target, r) {
  const fixture = target === 'mbr' ? r.pick(['pi-bookworm', 'pi-bullseye']) : target === 'ebr' ? 'pi-logical' : r.pick(['pi-gpt', 'pi-gpt-4k']);
  const base = FileReader.open(bases.fixtures[fixture]);
  try {
    const overlay = new Overlay(base);
    const sectorSize = fixture === 'pi-gpt-4k' ? 4096 : 512;
    let detail;
    if (target === 'mbr') {
      const sector = overlay.read(0, 512);
      detail = r.chance(0.8) ? mutateBytes(sector, 0x1be, 0x200, r, 'MBR entries') : mutateBytes(sector, 0x1b8, 0x1be, r, 'MBR disk id');
      current.detail = detail;
      overlay.write(0, sector);
    } else if (target === 'ebr') {
      // The EBR chain: each EBR's second entry points to the next, relative to the extended partition.
      const extendedLba = readPartitionTable(base).extended?.firstLba ?? 0;
      const candidates = [];
      for (let lba = extendedLba; lba > 0 && candidates.length < 8; ) {
        candidates.push(lba * 512);
        const next = u32(base.read(lba * 512, 512), 0x1ce + 8);
        lba = next === 0 ? 0 : extendedLba + next;
      }
      if (candidates.length === 0) return { outcome: 'skipped (no EBR)' };
      const at = r.pick(candidates);
      const sector = overlay.read(at, 512);
      detail = `${mutateBytes(sector, 0x1be, 0x1fe, r, 'EBR entries')} (EBR at byte ${at})`;
      overlay.write(at, sector);
    } else {
      const primary = r.chance(0.75);
      const headerAt = primary ? sectorSize : base.size - sectorSize;
      const header = overlay.read(headerAt, sectorSize);
      const entriesLba = Number(new DataView(header.buffer, header.byteOffset).getBigUint64(72, true));
      const entriesAt = entriesLba * sectorSize;
      const inEntries = r.chance(0.5) && entriesAt + 512 <= base.size;
      if (inEntries) {
        const entries = overlay.read(entriesAt, 512);
        detail = mutateBytes(entries, 0, 512, r, `GPT ${primary ? 'primary' : 'backup'} entries`);
        overlay.write(entriesAt, entries);
      } else {
        detail = mutateBytes(header, 8, 92, r, `GPT ${primary ? 'primary' : 'backup'} header`);
      }
      if (r.chance(0.5)) {
        // Recompute the CRCs, so that the mutation gets past them (UEFI spec §5.3.2).
        const count = u32(header, 80);
        const entrySize = u32(header, 84);
        if (count * entrySize <= 128 * 1024 && entriesAt + count * entrySize <= base.size) {
          put(header, 88, 4, crc32(overlay.read(entriesAt, count * entrySize)));
        }
        const headerSize = Math.min(u32(header, 12), sectorSize);
        put(header, 16, 4, 0);
        put(header, 16, 4, crc32(header.subarray(0, headerSize)));
        detail += ', CRCs recomputed';
      }
      overlay.write(headerAt, header);
    }
    current.detail = detail;
    const table = readPartitionTable(overlay);
    for (const partition of table.partitions) {
      if (partition.byteOffset + partition.size > overlay.size) continue;
      detectFilesystem(slice(overlay, { byteOffset: partition.byteOffset, length: partition.size }));
    }
    return { outcome: `read ${table.partitions.length} partitions`, detail };
  } finally {
    base.close?.();
  }
}

/** A mutated .xz, .gz, .zip or .zst: decompressed through resolveSource into a scratch cache. */
async function containerCase(target, r) {
  const source = baseBytes(bases.containers[target]);
  const { bytes, description } = mutateContainer(source, r);
  current.detail = description;
  const path = join(scratch, `image.img.${target}`);
  writeFileSync(path, bytes);
  const cacheDir = join(scratch, 'cache');
  try {
    const resolved = await resolveSource(path, { cacheDir, maxImageSize: 64 * 2 ** 20 });
    return { outcome: resolved.compression ? 'decompressed' : 'read as raw', detail: description };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
    rmSync(path, { force: true });
  }
}

/** What the case in progress did to its input, for the report when it fails. */
const current = { detail: '' };

async function runCase({ target, seed, index }) {
  current.detail = '';
  const r = rng(caseSeed(seed, index));
  if (FAT_TARGETS.includes(target)) return filesystemCase('fat', target, r);
  if (EXT4_TARGETS.includes(target)) return filesystemCase('ext4', target, r);
  if (['mbr', 'ebr', 'gpt'].includes(target)) return partitionCase(target, r);
  return containerCase(target, r);
}

parentPort.on('message', async (job) => {
  let result;
  try {
    result = await runCase(job);
  } catch (error) {
    if (error instanceof PiimgError) result = { outcome: error.code, detail: current.detail };
    else {
      const name = error?.constructor?.name ?? typeof error;
      result = { failure: `${name}: ${error?.message ?? String(error)}`, detail: current.detail, stack: String(error?.stack ?? '').split('\n').slice(0, 8).join('\n') };
    }
  }
  parentPort.postMessage({ ...job, ...result });
});

process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
