/**
 * Read-only consistency check of a FAT volume, comparable to `fsck.fat -n`:
 * nothing is written and nothing is repaired; every finding is a line in
 * `problems`. Work and memory are bounded by the volume: one copy of the FAT,
 * one 32-bit owner per cluster, one pass over each chain and each directory.
 */
import type { BlockReader } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import { type FatGeometry, parseBootSector, readFsInfo } from './boot.js';
import { BAD, END, FREE, type FatType, codecs, entriesZero, ZERO_SPAN_ENTRIES } from './codec.js';
import { readClusters } from './directory.js';
import { DOT_NAME, DOTDOT_NAME, parseShortEntry } from './dirent.js';
import {
  ATTR_DIRECTORY,
  ATTR_LONG_NAME,
  ATTR_LONG_NAME_MASK,
  ATTR_VOLUME_ID,
  BPB,
  BPB16,
  BPB32,
  DIRENT_SIZE,
  DIR_NAME_END,
  DIR_NAME_FREE,
  DIR_NAME_KANJI_E5,
  FIRST_CLUSTER,
  FSI_UNKNOWN,
  LAST_LONG_ENTRY,
  LDIR,
  MAX_LONG_SLOTS,
  maxDirClusters,
  readBytes,
  STATE_DIRTY,
  viewOf,
} from './layout.js';
import { entryNameProblem, escapeName } from '../path.js';
import { decodeLongNameSlot } from './lfn.js';
import { decodeShortName, rawKey, shortNameChecksum } from './names.js';

/** Options of `checkFat`. */
export interface FatCheckOptions {
  /** Problems listed at most; the rest are counted in a last line. Default 200. */
  maxProblems?: number;
}

/** What `checkFat` found, and the counts fsck.fat -n prints. */
export interface FatCheckResult {
  /** True when no problem was found. */
  clean: boolean;
  /** One line per problem, naming the path (or the on-disk structure) concerned. */
  problems: string[];
  fatType: FatType;
  clusterCount: number;
  freeClusters: number;
  files: number;
  directories: number;
}

/** Characters dosfstools refuses in short names (check.c bad_name), `.` included: the dot between name and extension is implied. */
const BAD_SHORT_NAME_CHARS = new Set([...'*?<>|"\\/:.'].map((c) => c.charCodeAt(0)));
/** Characters the FAT spec forbids in a volume label (dosfstools common.c validate_volume_label). */
const BAD_LABEL_CHARS = new Set([0x22, 0x2a, 0x2b, 0x2c, 0x2e, 0x2f, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x5b, 0x5c, 0x5d, 0x7c]);
/** BS_VolLab / label entry value meaning "no label". */
const NO_NAME = 'NO NAME    ';
/**
 * DIR_NTRes bit set by patched Linux kernels on entries whose short name is a
 * dummy: valid only with a long name (dosfstools fsck.fat.h FAT_NO_83NAME).
 */
const NT_NO_83_NAME = 0x20;
/** ClnShutBitMask in FAT[1] (FAT spec §4.2). */
const FAT16_CLEAN_SHUTDOWN = 0x8000;
const FAT32_CLEAN_SHUTDOWN = 0x08000000;
/** Owner value of clusters found lost (used, reachable from no entry). */
const LOST = 0xffffffff;
/** Device reads of a FAT copy for comparison are done in pieces of this size. */
const COMPARE_BYTES = 1024 * 1024;

class Report {
  readonly problems: string[] = [];
  private omitted = 0;
  constructor(private readonly max: number) {}
  add(message: string): void {
    if (this.problems.length < this.max) this.problems.push(message);
    else this.omitted++;
  }
  get count(): number {
    return this.problems.length + this.omitted;
  }
  finish(): string[] {
    if (this.omitted > 0) this.problems.push(`... and ${this.omitted} more problems`);
    return this.problems;
  }
}

interface PendingDirectory {
  path: string;
  /** First cluster, 0 for the fixed root of FAT12/16. */
  firstCluster: number;
  /** Clusters to read (at most a directory's worth: MAX_DIR_ENTRIES slots). */
  clusters: number[];
  isRoot: boolean;
  /** First cluster of the parent, 0 when the parent is the root (FAT spec §6.7). */
  parentCluster: number;
}

/**
 * Checks a FAT12/16/32 volume without changing it. Throws PiimgError
 * (E_FAT_BAD_BPB, E_FAT_UNSUPPORTED) only when the boot sector does not
 * describe a FAT volume at all; any damage behind a usable boot sector is
 * reported in `problems`.
 */
export function checkFat(reader: BlockReader, options: FatCheckOptions = {}): FatCheckResult {
  if (reader.size < 512) throw new PiimgError('E_FAT_BAD_BPB', 'device is too small for a FAT volume', { size: reader.size });
  const boot = reader.read(0, 512).slice();
  const geometry = parseBootSector(boot, reader.size);
  const report = new Report(options.maxProblems ?? 200);
  checkBootSector(reader, geometry, boot, report);

  const codec = codecs[geometry.fatType];
  const maxCluster = geometry.clusterCount + 1;
  const fatBytes = geometry.fatSectors * geometry.sectorSize;
  const usedBytes = Math.min(fatBytes, codec.byteOffsetOf(maxCluster) + codec.span);
  const active = geometry.activeFat ?? 0;
  // Kept without a copy: nothing is written while the check runs (BlockReader.read).
  const fat = reader.read(geometry.fatByteOffset + active * fatBytes, usedBytes);
  compareFatCopies(reader, geometry, fat, active, report);
  checkReservedEntries(fat, boot, geometry.fatType, report);
  // next[cluster]: the entry decoded once (FREE, END, BAD or the next cluster), so the
  // walks below read a typed array instead of decoding bytes through a codec call each step.
  const { next, spans } = decodeTable(fat, geometry.fatType, maxCluster);

  // owner[cluster]: 0 = not reached, else the id of the chain (index into `paths`) that holds it.
  const owner = new Uint32Array(maxCluster + 1);
  const paths: string[] = [''];
  let files = 0;
  let directories = 0;
  const clusterSize = geometry.clusterSize;
  const dirClusterLimit = maxDirClusters(clusterSize);

  /**
   * Claims the chain from `first` for `path`. Returns how many clusters it
   * holds and whether it ended cleanly. Each step claims an unowned cluster,
   * so the walk ends after at most clusterCount steps, loops included.
   */
  const claimChain = (first: number, path: string, collect?: number[]): { count: number; ok: boolean } => {
    if (first < FIRST_CLUSTER || first > maxCluster) {
      report.add(`${path}: first cluster ${first} is outside 2..${maxCluster}`);
      return { count: 0, ok: false };
    }
    const head = next[first]!;
    if (head === FREE) {
      report.add(`${path}: starts at cluster ${first}, which the FAT marks free`);
      return { count: 0, ok: false };
    }
    const id = paths.length;
    paths.push(path);
    let cluster = first;
    let count = 0;
    for (;;) {
      const holder = owner[cluster]!;
      if (holder !== 0) {
        if (holder === id) report.add(`${path}: cluster chain loops back to cluster ${cluster}`);
        else report.add(`${path}: cluster ${cluster} is also used by ${paths[holder]} (cross-linked chains)`);
        return { count, ok: false };
      }
      owner[cluster] = id;
      count++;
      if (collect && collect.length < dirClusterLimit) collect.push(cluster);
      const link = next[cluster]!;
      if (link === END) return { count, ok: true };
      if (link === FREE) {
        report.add(`${path}: cluster ${cluster} links to free cluster (the chain ends in free space)`);
        return { count, ok: false };
      }
      if (link === BAD) {
        report.add(`${path}: cluster ${cluster} links to a cluster marked bad`);
        return { count, ok: false };
      }
      if (link < FIRST_CLUSTER || link > maxCluster) {
        report.add(`${path}: cluster ${cluster} links to cluster ${link}, outside 2..${maxCluster}`);
        return { count, ok: false };
      }
      cluster = link;
    }
  };

  const pending: PendingDirectory[] = [];
  if (geometry.fatType === 'fat32') {
    const clusters: number[] = [];
    claimChain(geometry.rootCluster, '/', clusters);
    pending.push({ path: '/', firstCluster: geometry.rootCluster, clusters, isRoot: true, parentCluster: 0 });
  } else {
    pending.push({ path: '/', firstCluster: 0, clusters: [], isRoot: true, parentCluster: 0 });
  }

  while (pending.length > 0) {
    const dir = pending.pop()!;
    directories++;
    const bytes = readDirectory(reader, geometry, dir);
    const label: RootLabel | undefined = dir.isRoot ? { found: false } : undefined;
    const entries = scanDirectory(bytes, geometry.fatType, dir, report, label);
    if (label) checkLabel(boot, geometry, label, report);
    for (const entry of entries) {
      const path = dir.path === '/' ? `/${entry.name}` : `${dir.path}/${entry.name}`;
      if (entry.attr & ATTR_DIRECTORY) {
        if (entry.size !== 0) report.add(`${path}: directory entry has size ${entry.size}, should be 0`);
        if (entry.firstCluster === 0 || (geometry.fatType === 'fat32' && entry.firstCluster === geometry.rootCluster)) {
          report.add(`${path}: directory points to the root directory (cluster ${entry.firstCluster})`);
          continue;
        }
        const clusters: number[] = [];
        const { count } = claimChain(entry.firstCluster, path, clusters);
        // A directory whose first cluster belongs to another chain is not descended into (it would loop).
        if (count > 0) pending.push({ path, firstCluster: entry.firstCluster, clusters, isRoot: false, parentCluster: dir.isRoot ? 0 : dir.firstCluster });
        continue;
      }
      files++;
      const needed = Math.ceil(entry.size / clusterSize);
      if (entry.firstCluster === 0) {
        if (entry.size !== 0) report.add(`${path}: file of ${entry.size} bytes has no clusters`);
        continue;
      }
      const { count, ok } = claimChain(entry.firstCluster, path);
      if (ok && count !== needed) {
        report.add(`${path}: file size ${entry.size} bytes needs ${needed} clusters, its cluster chain has ${count}`);
      }
    }
  }

  // Lost clusters: used in the FAT, reached from no entry (fsck.fat "unused clusters").
  let freeClusters = 0;
  let lost = 0;
  for (let span = 0; span < spans.length; span++) {
    const first = Math.max(FIRST_CLUSTER, span * ZERO_SPAN_ENTRIES);
    const last = Math.min(maxCluster, (span + 1) * ZERO_SPAN_ENTRIES - 1);
    if (spans[span] === 0) {
      freeClusters += last - first + 1;
      continue;
    }
    for (let cluster = first; cluster <= last; cluster++) {
      const value = next[cluster]!;
      if (value === FREE) freeClusters++;
      else if (value !== BAD && owner[cluster] === 0) {
        owner[cluster] = LOST;
        lost++;
      }
    }
  }
  if (lost > 0) {
    // A lost chain starts at a lost cluster that no other lost cluster links to.
    const linked = new Uint8Array(maxCluster + 1);
    for (let cluster = FIRST_CLUSTER; cluster <= maxCluster; cluster++) {
      if (owner[cluster] !== LOST) continue;
      const link = next[cluster]!;
      if (link >= FIRST_CLUSTER && link <= maxCluster && owner[link] === LOST) linked[link] = 1;
    }
    const starts: number[] = [];
    let chains = 0;
    for (let cluster = FIRST_CLUSTER; cluster <= maxCluster; cluster++) {
      if (owner[cluster] === LOST && linked[cluster] === 0) {
        chains++;
        if (starts.length < 5) starts.push(cluster);
      }
    }
    report.add(
      `${lost} lost clusters (marked used, reachable from no file) in ${chains || 'looping'} chains` +
        (starts.length > 0 ? `, starting at cluster ${starts.join(', ')}${chains > starts.length ? ', ...' : ''}` : ''),
    );
  }
  if (geometry.fatType === 'fat32') checkFsInfo(reader, geometry, freeClusters, report);

  return {
    clean: report.count === 0,
    problems: report.finish(),
    fatType: geometry.fatType,
    clusterCount: geometry.clusterCount,
    freeClusters,
    files,
    directories,
  };
}

function checkBootSector(reader: BlockReader, geometry: FatGeometry, boot: Uint8Array, report: Report): void {
  const media = boot[BPB.BPB_Media.byteOffset]!;
  // Ref: FAT spec §3.1 BPB_Media: 0xF0 or 0xF8..0xFF.
  if (media !== 0xf0 && media < 0xf8) report.add(`boot sector: BPB_Media 0x${media.toString(16)} is not a valid media byte`);
  if (geometry.hasExtendedBpb && boot[geometry.extendedOffset + 1]! & STATE_DIRTY) {
    report.add('boot sector: dirty bit is set (the volume was not cleanly unmounted)');
  }
  if (geometry.fatType === 'fat32' && geometry.backupBootSector !== 0) {
    const backup = reader.read(geometry.backupBootSector * geometry.sectorSize, 512);
    let differences = 0;
    let first = -1;
    for (let i = 0; i < 512; i++) {
      if (backup[i] !== boot[i]) {
        differences++;
        if (first < 0) first = i;
      }
    }
    if (differences > 0) {
      report.add(`boot sector: differs from its backup in sector ${geometry.backupBootSector} (${differences} bytes, first at offset 0x${first.toString(16)})`);
    }
  }
}

/** Every FAT copy must equal the active one (FAT spec §3.1 BPB_NumFATs). */
function compareFatCopies(reader: BlockReader, geometry: FatGeometry, fat: Uint8Array, active: number, report: Report): void {
  const fatBytes = geometry.fatSectors * geometry.sectorSize;
  // Bytes that hold entries 0 .. clusterCount + 1, as dosfstools compares them.
  const bits = geometry.fatType === 'fat12' ? 12 : geometry.fatType === 'fat16' ? 16 : 32;
  const compared = Math.min(fat.length, Math.floor(((geometry.clusterCount + 2) * bits) / 8));
  for (let copy = 0; copy < geometry.numFats; copy++) {
    if (copy === active) continue;
    const base = geometry.fatByteOffset + copy * fatBytes;
    let firstByte = -1;
    let differing = 0;
    for (let start = 0; start < compared; start += COMPARE_BYTES) {
      const length = Math.min(COMPARE_BYTES, compared - start);
      const other = reader.read(base + start, length);
      // Equal pieces (the usual case) are compared by memcmp; only a differing piece is walked byte by byte.
      if (Buffer.compare(other, fat.subarray(start, start + length)) === 0) continue;
      for (let i = 0; i < length; i++) {
        if (other[i] !== fat[start + i]) {
          differing++;
          if (firstByte < 0) firstByte = start + i;
        }
      }
    }
    if (differing > 0) {
      const cluster = Math.floor((firstByte * 8) / bits);
      report.add(`FAT copy ${copy + 1} differs from FAT copy ${active + 1} in ${differing} bytes, first at the entry of cluster ${cluster}`);
    }
  }
}

/**
 * Every entry of 0 .. maxCluster decoded into the normalised values of
 * codec.ts (FREE, END, BAD or a cluster number), one tight loop per FAT type.
 * Spans of ZERO_SPAN_ENTRIES whose bytes are all zero are left FREE without a
 * loop (a 2026 boot partition's FAT has 1 M entries, almost all free), and
 * `spans` says which ones were decoded. parseBootSector has checked that the
 * FAT holds all of them.
 */
function decodeTable(fat: Uint8Array, fatType: FatType, maxCluster: number): { next: Uint32Array; spans: Uint8Array } {
  const next = new Uint32Array(maxCluster + 1);
  const spans = new Uint8Array(Math.ceil((maxCluster + 1) / ZERO_SPAN_ENTRIES));
  const view = viewOf(fat);
  const codec = codecs[fatType];
  for (let span = 0; span < spans.length; span++) {
    const first = span * ZERO_SPAN_ENTRIES;
    const last = Math.min(maxCluster, first + ZERO_SPAN_ENTRIES - 1);
    if (entriesZero(codec, fat, first, last)) continue;
    spans[span] = 1;
    if (fatType === 'fat32') {
      for (let cluster = first; cluster <= last; cluster++) {
        const raw = view.getUint32(cluster * 4, true) & 0x0fffffff;
        next[cluster] = raw >= 0x0ffffff8 ? END : raw === 0x0ffffff7 ? BAD : raw;
      }
    } else {
      for (let cluster = first; cluster <= last; cluster++) next[cluster] = codec.get(fat, view, cluster);
    }
  }
  return { next, spans };
}

/**
 * FAT[0] holds the media byte in its low 8 bits; on FAT16/32, FAT[1] holds
 * ClnShutBitMask, clear while the volume is in use (FAT spec §4.2; dosfstools
 * check.c check_dirty_bits reports it like the boot sector's dirty bit).
 */
function checkReservedEntries(fat: Uint8Array, boot: Uint8Array, fatType: FatType, report: Report): void {
  const media = boot[BPB.BPB_Media.byteOffset]!;
  if (fat[0] !== media) report.add(`FAT: entry 0 holds media byte 0x${fat[0]!.toString(16)}, the boot sector says 0x${media.toString(16)}`);
  if (fatType === 'fat12' || fat.length < 8) return;
  const view = viewOf(fat);
  const clean = fatType === 'fat16' ? (view.getUint16(2, true) & FAT16_CLEAN_SHUTDOWN) !== 0 : (view.getUint32(4, true) & FAT32_CLEAN_SHUTDOWN) !== 0;
  if (!clean) report.add('FAT: entry 1 has the clean-shutdown bit clear (the volume was not cleanly unmounted)');
}

function readDirectory(reader: BlockReader, geometry: FatGeometry, dir: PendingDirectory): Uint8Array {
  if (dir.firstCluster === 0) return reader.read(geometry.rootByteOffset, geometry.rootByteLength);
  return readClusters(reader, geometry, dir.clusters);
}

interface FoundEntry {
  name: string;
  attr: number;
  firstCluster: number;
  size: number;
}

/**
 * dosfstools check.c bad_name: control characters, DOS-reserved characters
 * (`.` included), a leading space; a dummy short name (NT_NO_83_NAME) is
 * only valid with a long name, and then not looked at.
 */
function badShortName(raw: Uint8Array, ntRes: number, hasLongName: boolean): boolean {
  if (ntRes & NT_NO_83_NAME) return !hasLongName;
  if (raw[0] === 0x20) return true;
  for (let i = 0; i < 11; i++) {
    const c = raw[i]!;
    if ((c < 0x20 && !(i === 0 && c === DIR_NAME_KANJI_E5)) || c === 0x7f || BAD_SHORT_NAME_CHARS.has(c)) return true;
  }
  return false;
}

/** Reserved fields of a long-name slot must be zero (FAT spec §7; dosfstools lfn.c lfn_add_slot reports both). */
function checkLongNameSlot(slot: Uint8Array, where: string, report: Report): void {
  const attr = slot[LDIR.LDIR_Attr.byteOffset]!;
  if (attr !== ATTR_LONG_NAME) report.add(`${where}: attribute 0x${attr.toString(16)} has reserved bits set besides ATTR_LONG_NAME`);
  const type = slot[LDIR.LDIR_Type.byteOffset]!;
  if (type !== 0) report.add(`${where}: LDIR_Type is 0x${type.toString(16)}, should be 0`);
  const cluster = slot[LDIR.LDIR_FstClusLO.byteOffset]! | (slot[LDIR.LDIR_FstClusLO.byteOffset + 1]! << 8);
  if (cluster !== 0) report.add(`${where}: LDIR_FstClusLO is ${cluster}, should be 0`);
}

/**
 * dosfstools common.c validate_volume_label, the checks that fsck.fat
 * reports by default: a byte below 0x20, a forbidden character, all spaces,
 * a leading space. Bytes from 0x80 are refused too: fsck.fat compares them
 * as signed `char`, so on x86 hosts they count as "below 0x20"; piimg never
 * writes them.
 */
function invalidLabel(raw: Uint8Array): string | undefined {
  if (raw[0] === 0x20) return raw.every((c) => c === 0x20) ? 'it is all spaces' : 'it starts with a space';
  for (const c of raw) {
    if (c < 0x20 || c >= 0x80) return `byte 0x${c.toString(16)} is not allowed`;
    if (BAD_LABEL_CHARS.has(c)) return `character ${JSON.stringify(String.fromCharCode(c))} is not allowed`;
  }
  return undefined;
}

function showLabel(raw: Uint8Array): string {
  return JSON.stringify(rawKey(raw).replace(/ +$/, ''));
}

/**
 * The label entry of the root directory against BS_VolLab, as dosfstools
 * check.c check_label compares them: both say the same, or both say none.
 * Without an extended BPB (BS_BootSig 0x29) there is no BS_VolLab, which
 * fsck.fat reads as an empty, invalid label.
 */
function checkLabel(boot: Uint8Array, geometry: FatGeometry, label: RootLabel, report: Report): void {
  const volLab = geometry.fatType === 'fat32' ? BPB32.BS_VolLab : BPB16.BS_VolLab;
  const bootLabel = geometry.hasExtendedBpb ? readBytes(boot, volLab) : new Uint8Array(11);
  const bootSays = geometry.hasExtendedBpb ? rawKey(bootLabel) : '';
  if (!label.raw) {
    if (bootSays === NO_NAME) return;
    const why = invalidLabel(bootLabel);
    if (!geometry.hasExtendedBpb) report.add('boot sector: no extended BPB (BS_BootSig is not 0x29), so no BS_VolLab, and the root directory has no label entry');
    else if (why) report.add(`boot sector: label ${showLabel(bootLabel)} is not valid (${why})`);
    else report.add(`boot sector: label ${showLabel(bootLabel)}, but the root directory has no volume label entry`);
    return;
  }
  const raw = label.raw.slice();
  if (raw[0] === DIR_NAME_KANJI_E5) raw[0] = 0xe5;
  const why = invalidLabel(raw);
  if (why) {
    report.add(`volume label entry: label ${showLabel(raw)} is not valid (${why})`);
    return;
  }
  const rootSays = rawKey(raw);
  if (bootSays === NO_NAME && rootSays !== NO_NAME) {
    report.add(`boot sector: no label (NO NAME), but the root directory's volume label entry says ${showLabel(raw)}`);
  } else if (bootSays !== NO_NAME && rootSays !== bootSays) {
    report.add(`boot sector: label ${geometry.hasExtendedBpb ? showLabel(bootLabel) : '(none: no extended BPB)'} differs from the root directory's volume label entry ${showLabel(raw)}`);
  }
}

interface RootLabel {
  found: boolean;
  raw?: Uint8Array;
}

const DOT_KEY = rawKey(DOT_NAME);
const DOTDOT_KEY = rawKey(DOTDOT_NAME);

/**
 * Parses one directory: checks "." and "..", short names, duplicates and
 * long-name sequences, and returns the files and subdirectories in it.
 */
function scanDirectory(bytes: Uint8Array, fatType: FatType, dir: PendingDirectory, report: Report, label?: RootLabel): FoundEntry[] {
  const entries: FoundEntry[] = [];
  const seen = new Set<string>();
  const where = dir.path;
  const slots = bytes.length / DIRENT_SIZE;
  // Long-name sequence being collected (FAT spec §7: last part first, ordinals counting down to 1).
  let parts: string[] = [];
  let expected = 0;
  let checksum = -1;
  let startSlot = -1;
  const abandon = (why: string): void => {
    if (startSlot >= 0) report.add(`${where}: ${why} (long-name slots from ${startSlot})`);
    parts = [];
    expected = 0;
    startSlot = -1;
  };
  let sawDot = false;
  let sawDotDot = false;
  for (let slot = 0; slot < slots; slot++) {
    const at = slot * DIRENT_SIZE;
    const lead = bytes[at]!;
    if (lead === DIR_NAME_END) {
      if (expected > 0 || startSlot >= 0) abandon('long name not followed by its short entry');
      // Slots after the end marker must be free too (FAT spec §6.1): Windows and mtools
      // never look there, but Linux and fsck.fat read such entries as files.
      for (let after = slot + 1; after < slots; after++) {
        const byte = bytes[after * DIRENT_SIZE]!;
        if (byte !== DIR_NAME_END && byte !== DIR_NAME_FREE) {
          report.add(`${where}: slot ${after} is in use after the end-of-directory marker in slot ${slot}`);
          break;
        }
      }
      break;
    }
    if (lead === DIR_NAME_FREE) {
      if (startSlot >= 0) abandon('long name followed by a deleted entry');
      continue;
    }
    const attr = bytes[at + 11]!;
    if ((attr & ATTR_LONG_NAME_MASK) === ATTR_LONG_NAME) {
      const slotBytes = bytes.subarray(at, at + DIRENT_SIZE);
      checkLongNameSlot(slotBytes, `${where}: long-name slot ${slot}`, report);
      const ord = slotBytes[LDIR.LDIR_Ord.byteOffset]!;
      const number = ord & 0x3f;
      const sum = slotBytes[LDIR.LDIR_Chksum.byteOffset]!;
      if (ord & LAST_LONG_ENTRY) {
        if (startSlot >= 0) abandon('unfinished long name');
        if (number === 0 || number > MAX_LONG_SLOTS) {
          report.add(`${where}: long-name slot ${slot} has invalid ordinal ${number}`);
          continue;
        }
        parts = new Array<string>(number).fill('');
        parts[number - 1] = decodeLongNameSlot(slotBytes).text;
        expected = number - 1;
        checksum = sum;
        startSlot = slot;
        continue;
      }
      if (startSlot < 0) {
        report.add(`${where}: orphaned long-name slot ${slot} (no sequence start before it)`);
        continue;
      }
      if (number !== expected || number === 0) {
        abandon(`long-name slot ${slot} has ordinal ${number}, expected ${expected}`);
        continue;
      }
      if (sum !== checksum) {
        abandon(`long-name slot ${slot} has checksum 0x${sum.toString(16)}, the sequence has 0x${checksum.toString(16)}`);
        continue;
      }
      parts[number - 1] = decodeLongNameSlot(slotBytes).text;
      expected = number - 1;
      continue;
    }
    const raw = bytes.subarray(at, at + 11);
    if (attr & ATTR_VOLUME_ID) {
      if (startSlot >= 0) abandon('long name followed by a volume label');
      // fsck.fat takes such an entry for a directory too (and one at cluster 0 for the root).
      if (attr & ATTR_DIRECTORY) report.add(`${where}: slot ${slot} has both the volume-label and the directory attribute (0x${attr.toString(16)})`);
      if (!dir.isRoot) report.add(`${where}: volume label entry in a subdirectory (slot ${slot})`);
      // The first one is the volume's label (dosfstools boot.c find_volume_de); others are not looked at.
      else if (label && !label.found) {
        const entry = parseShortEntry(bytes, at, fatType);
        label.found = true;
        label.raw = entry.raw;
        if (entry.firstCluster !== 0) report.add(`volume label entry (slot ${slot}): start cluster is ${entry.firstCluster}, should be 0`);
        if (entry.size !== 0) report.add(`volume label entry (slot ${slot}): size is ${entry.size}, should be 0`);
      }
      continue;
    }
    const short = parseShortEntry(bytes, at, fatType);
    const key = rawKey(raw);
    const isDot = key === DOT_KEY;
    const isDotDot = key === DOTDOT_KEY;
    if (isDot || isDotDot) {
      if (startSlot >= 0) abandon('long name followed by a dot entry');
      if (dir.isRoot) {
        report.add(`${where}: the root directory contains a "${isDot ? '.' : '..'}" entry`);
        continue;
      }
      const wantSlot = isDot ? 0 : 1;
      const wantCluster = isDot ? dir.firstCluster : dir.parentCluster;
      if (slot !== wantSlot) report.add(`${where}: "${isDot ? '.' : '..'}" entry in slot ${slot}, should be slot ${wantSlot}`);
      if (!(short.attr & ATTR_DIRECTORY)) report.add(`${where}: "${isDot ? '.' : '..'}" entry is not a directory`);
      if (short.ntRes & NT_NO_83_NAME) report.add(`${where}: "${isDot ? '.' : '..'}" entry has the NT no-8.3-name flag (0x20) set`);
      if (short.firstCluster !== wantCluster) {
        report.add(`${where}: "${isDot ? '.' : '..'}" points to cluster ${short.firstCluster}, should be ${wantCluster}`);
      }
      if (isDot) sawDot = true;
      else sawDotDot = true;
      continue;
    }
    let name = decodeShortName(raw, short.ntRes);
    let hasLongName = false;
    if (startSlot >= 0) {
      if (expected !== 0) abandon(`long name with ${expected} missing slots before ${JSON.stringify(name)}`);
      else if (checksum !== shortNameChecksum(raw)) abandon(`long name checksum does not match short entry ${JSON.stringify(name)}`);
      else {
        const long = parts.join('');
        if (long.length > 0) name = long;
        hasLongName = true;
        startSlot = -1;
        parts = [];
      }
    }
    // A long name holding "/" (or "", ".", "..") would name another path: piimg skips it, the checker reports it.
    const nameProblem = entryNameProblem(name);
    if (nameProblem) report.add(`${where}: entry ${JSON.stringify(escapeName(name))} is not a single file name (${nameProblem})`);
    const path = where === '/' ? `/${name}` : `${where}/${name}`;
    if (badShortName(raw, short.ntRes, hasLongName)) report.add(`${path}: invalid short name ${JSON.stringify(key)}`);
    if (seen.has(key)) report.add(`${path}: duplicate short name ${JSON.stringify(decodeShortName(raw, 0))} in ${where}`);
    seen.add(key);
    entries.push({ name, attr: short.attr, firstCluster: short.firstCluster, size: short.size });
  }
  if (startSlot >= 0) abandon('long name at the end of the directory without its short entry');
  if (!dir.isRoot) {
    if (!sawDot) report.add(`${where}: "." entry is missing`);
    if (!sawDotDot) report.add(`${where}: ".." entry is missing`);
  }
  return entries;
}

function checkFsInfo(reader: BlockReader, geometry: FatGeometry, freeClusters: number, report: Report): void {
  const fsInfo = readFsInfo(reader, geometry);
  if (!fsInfo) return;
  if (!fsInfo.valid) {
    report.add(`FSInfo sector ${geometry.fsInfoSector}: bad signature`);
    return;
  }
  const count = fsInfo.freeCount;
  if (count !== FSI_UNKNOWN && count !== freeClusters) {
    report.add(`FSInfo: free cluster count is ${count}, the FAT has ${freeClusters} free clusters`);
  }
  const next = fsInfo.nextFree;
  if (next !== FSI_UNKNOWN && (next < FIRST_CLUSTER || next > geometry.clusterCount + 1)) {
    report.add(`FSInfo: next free cluster ${next} is outside 2..${geometry.clusterCount + 1}`);
  }
}
