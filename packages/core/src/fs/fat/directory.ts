import type { BlockDevice, BlockReader } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import type { Allocator } from './alloc.js';
import type { FatGeometry } from './boot.js';
import { DOT_NAME, DOTDOT_NAME, type ShortEntry, parseShortEntry } from './dirent.js';
import {
  ATTR_LONG_NAME,
  ATTR_LONG_NAME_MASK,
  ATTR_VOLUME_ID,
  DIRENT_SIZE,
  DIR_NAME_END,
  DIR_NAME_FREE,
  MAX_DIR_BYTES,
  MAX_DIR_ENTRIES,
  maxDirClusters,
} from './layout.js';
import { LongNameAssembler } from './lfn.js';
import { decodeShortLabel, decodeShortName, nameKey, rawKey, shortNameChecksum } from './names.js';
import type { FatTable } from './table.js';

/** What a directory needs from its volume. */
export interface FatContext {
  readonly geometry: FatGeometry;
  readonly reader: BlockReader;
  readonly table: FatTable;
  /** Only called by mutating operations, after the volume checked it is writable. */
  writer(): BlockDevice;
  /** Where file data goes: straight to the device unless it overwrites data the call freed. */
  dataWriter(): BlockDevice;
  allocator(): Allocator;
}

export function clusterToByteOffset(geometry: FatGeometry, cluster: number): number {
  return geometry.dataByteOffset + (cluster - 2) * geometry.clusterSize;
}

/** Reads the data of `clusters`, one read per run of consecutive clusters; `size` ends it early (a file's last cluster). */
export function readClusters(reader: BlockReader, geometry: FatGeometry, clusters: readonly number[], size = clusters.length * geometry.clusterSize): Uint8Array {
  const out = new Uint8Array(size);
  const clusterSize = geometry.clusterSize;
  for (let i = 0; i < clusters.length && i * clusterSize < size; ) {
    let j = i + 1;
    while (j < clusters.length && clusters[j] === clusters[j - 1]! + 1) j++;
    const start = i * clusterSize;
    out.set(reader.read(clusterToByteOffset(geometry, clusters[i]!), Math.min(size, j * clusterSize) - start), start);
    i = j;
  }
  return out;
}

const DOT_KEY = rawKey(DOT_NAME);
const DOTDOT_KEY = rawKey(DOTDOT_NAME);

/** A file or directory entry found in a directory. */
export interface Entry extends ShortEntry {
  /** The name to show: the long name when there is one, else the short name with its case flags. */
  name: string;
  hasLongName: boolean;
  /** Slot index of the short entry, and of the first slot of the set (long-name slots come first). */
  slot: number;
  firstSlot: number;
}


/**
 * One directory held in memory: its raw bytes (the fixed root region of
 * FAT12/16, or its cluster chain) and the parsed entries. Changes are
 * written through to the device slot by slot.
 */
export class Directory {
  private parsed: Entry[] | undefined;
  private bySlot = new Map<number, Entry>();
  private byKey = new Map<string, Entry>();
  private shortKeys = new Set<string>();
  private labelSlot = -1;
  private endSlot = 0;
  dotDotSlot = -1;

  private constructor(
    private readonly context: FatContext,
    /** First cluster, or 0 for the fixed root directory of FAT12/16. */
    readonly firstCluster: number,
    readonly clusters: number[],
    private bytes: Uint8Array,
    readonly isRoot: boolean,
  ) {}

  static open(context: FatContext, firstCluster: number, isRoot: boolean, path: string): Directory {
    const { geometry, table, reader } = context;
    if (firstCluster === 0) {
      if (!isRoot || geometry.fatType === 'fat32') {
        throw new PiimgError('E_FAT_CORRUPT', 'a directory entry points to cluster 0', { path });
      }
      const bytes = reader.read(geometry.rootByteOffset, geometry.rootByteLength);
      return new Directory(context, 0, [], bytes, true);
    }
    const limit = maxDirClusters(geometry.clusterSize);
    const clusters = table.chain(firstCluster, { limit, path, what: `directory ${path}` });
    return new Directory(context, firstCluster, clusters, readClusters(reader, geometry, clusters), isRoot);
  }

  get slotCount(): number {
    return this.bytes.length / DIRENT_SIZE;
  }

  private parse(): Entry[] {
    if (this.parsed) return this.parsed;
    this.bySlot = new Map();
    this.byKey = new Map();
    this.shortKeys = new Set();
    this.labelSlot = -1;
    this.dotDotSlot = -1;
    this.endSlot = this.scan(0, this.slotCount, true);
    this.parsed = [...this.bySlot.values()];
    return this.parsed;
  }

  /**
   * Parses slots [from, to) and registers what it finds. With `stopAtEnd`,
   * stops at the end marker and returns its slot. Writes re-scan only the
   * slots they touched, so adding N entries to a directory costs O(N), not O(N²).
   */
  private scan(from: number, to: number, stopAtEnd: boolean): number {
    const fatType = this.context.geometry.fatType;
    const assembler = new LongNameAssembler();
    let slot = from;
    for (; slot < to; slot++) {
      const at = slot * DIRENT_SIZE;
      const lead = this.bytes[at]!;
      if (lead === DIR_NAME_END) {
        if (stopAtEnd) break;
        assembler.reset();
        continue;
      }
      if (lead === DIR_NAME_FREE) {
        assembler.reset();
        continue;
      }
      const attr = this.bytes[at + 11]!;
      if ((attr & ATTR_LONG_NAME_MASK) === ATTR_LONG_NAME) {
        assembler.push(this.bytes.subarray(at, at + DIRENT_SIZE), slot);
        continue;
      }
      const raw = this.bytes.subarray(at, at + 11);
      if (attr & ATTR_VOLUME_ID) {
        assembler.reset();
        if (this.isRoot && (this.labelSlot < 0 || this.labelSlot === slot)) this.labelSlot = slot;
        continue;
      }
      // Only the exact "." and ".." names are the dot entries: any other name
      // starting with "." is damage (fsck.fat: "Bad short file name") but a
      // file all the same, listed so that it is seen and can be removed.
      const key = rawKey(raw);
      if (key === DOT_KEY || key === DOTDOT_KEY) {
        assembler.reset();
        if (key === DOTDOT_KEY) this.dotDotSlot = slot;
        continue;
      }
      const short = parseShortEntry(this.bytes, at, fatType);
      const long = assembler.take(shortNameChecksum(raw));
      const entry: Entry = {
        ...short,
        name: long ? long.name : decodeShortName(raw, short.ntRes),
        hasLongName: long !== undefined,
        slot,
        firstSlot: long ? long.firstSlot : slot,
      };
      this.register(entry);
    }
    return slot;
  }

  private register(entry: Entry): void {
    this.bySlot.set(entry.slot, entry);
    this.shortKeys.add(rawKey(entry.raw));
    const key = nameKey(entry.name);
    if (!this.byKey.has(key)) this.byKey.set(key, entry);
    const shortKey = nameKey(decodeShortName(entry.raw, 0));
    if (!this.byKey.has(shortKey)) this.byKey.set(shortKey, entry);
  }

  private unregister(entry: Entry): void {
    this.bySlot.delete(entry.slot);
    this.shortKeys.delete(rawKey(entry.raw));
    for (const key of [nameKey(entry.name), nameKey(decodeShortName(entry.raw, 0))]) {
      if (this.byKey.get(key) === entry) this.byKey.delete(key);
    }
  }

  /** Brings the parsed state up to date after slots [first, last] changed. */
  private rescan(first: number, last: number): void {
    if (!this.parsed) return;
    for (let slot = first; slot <= last; slot++) {
      const old = this.bySlot.get(slot);
      if (old) this.unregister(old);
      if (slot === this.labelSlot) this.labelSlot = -1;
    }
    // A rewritten short entry keeps the long name in the slots before it.
    const old = first === last ? this.previous.get(first) : undefined;
    let from = first;
    if (old && old.hasLongName && this.bytes[first * DIRENT_SIZE] !== DIR_NAME_FREE) from = old.firstSlot;
    this.scan(from, last + 1, false);
    if (last >= this.endSlot) this.endSlot = last + 1;
    this.parsed = [...this.bySlot.values()].sort((a, b) => a.slot - b.slot);
  }

  private previous = new Map<number, Entry>();

  entries(): Entry[] {
    return this.parse();
  }

  /** Case-insensitive lookup by long or short name; the long name wins on a clash. */
  find(name: string): Entry | undefined {
    this.parse();
    return this.byKey.get(nameKey(name));
  }

  isShortNameTaken(key: string): boolean {
    this.parse();
    return this.shortKeys.has(key);
  }

  label(): string | undefined {
    this.parse();
    if (this.labelSlot < 0) return undefined;
    const at = this.labelSlot * DIRENT_SIZE;
    return decodeShortLabel(this.bytes.subarray(at, at + 11));
  }

  get labelSlotIndex(): number {
    this.parse();
    return this.labelSlot;
  }

  slotBytes(slot: number): Uint8Array {
    return this.bytes.subarray(slot * DIRENT_SIZE, (slot + 1) * DIRENT_SIZE);
  }

  /** Device byte offset of a slot: stable while the entry stays, used as inode number. */
  slotByteOffset(slot: number): number {
    const byteOffset = slot * DIRENT_SIZE;
    if (this.firstCluster === 0) return this.context.geometry.rootByteOffset + byteOffset;
    const clusterSize = this.context.geometry.clusterSize;
    const cluster = this.clusters[Math.floor(byteOffset / clusterSize)]!;
    return clusterToByteOffset(this.context.geometry, cluster) + (byteOffset % clusterSize);
  }

  /** Writes slots [first, first + count) through to the device. */
  private writeSlots(first: number, count: number): void {
    const writer = this.context.writer();
    const start = first * DIRENT_SIZE;
    const end = (first + count) * DIRENT_SIZE;
    if (this.firstCluster === 0) {
      writer.write(this.context.geometry.rootByteOffset + start, this.bytes.subarray(start, end));
      return;
    }
    const clusterSize = this.context.geometry.clusterSize;
    for (let at = start; at < end; ) {
      const index = Math.floor(at / clusterSize);
      const stop = Math.min(end, (index + 1) * clusterSize);
      writer.write(clusterToByteOffset(this.context.geometry, this.clusters[index]!) + (at % clusterSize), this.bytes.subarray(at, stop));
      at = stop;
    }
  }

  private remember(first: number, count: number): void {
    this.previous.clear();
    if (!this.parsed) return;
    for (let slot = first; slot < first + count; slot++) {
      const entry = this.bySlot.get(slot);
      if (entry) this.previous.set(slot, entry);
    }
  }

  /** Replaces the bytes of slots starting at `first` and writes them. */
  putSlots(first: number, data: Uint8Array): void {
    const count = data.length / DIRENT_SIZE;
    this.remember(first, count);
    this.bytes.set(data, first * DIRENT_SIZE);
    this.writeSlots(first, count);
    this.rescan(first, first + count - 1);
  }

  /** Marks a run of slots deleted (FAT spec §6.1: 0xE5 in DIR_Name[0]). */
  freeSlots(first: number, last: number): void {
    this.remember(first, last - first + 1);
    for (let slot = first; slot <= last; slot++) this.bytes[slot * DIRENT_SIZE] = DIR_NAME_FREE;
    this.writeSlots(first, last - first + 1);
    this.rescan(first, last);
  }

  /**
   * Finds `count` consecutive free slots, reusing deleted ones, and grows a
   * cluster-chained directory when there is no such run. The fixed root of
   * FAT12/16 cannot grow: ENOSPC.
   */
  reserveSlots(count: number, path: string): number {
    this.parse();
    const slots = this.slotCount;
    let run = 0;
    for (let slot = 0; slot < slots; slot++) {
      const lead = this.bytes[slot * DIRENT_SIZE]!;
      const free = slot >= this.endSlot || lead === DIR_NAME_FREE;
      run = free ? run + 1 : 0;
      if (run === count) return this.prepareEnd(slot - count + 1, count);
    }
    if (this.firstCluster === 0) {
      throw new PiimgError('ENOSPC', `the root directory is full (${this.context.geometry.rootEntryCount} entries)`, { path });
    }
    const clusterSize = this.context.geometry.clusterSize;
    const needed = Math.ceil(((count - run) * DIRENT_SIZE) / clusterSize);
    if (this.bytes.length + needed * clusterSize > MAX_DIR_BYTES) {
      throw new PiimgError('ENOSPC', `directory is full (${MAX_DIR_ENTRIES} entries)`, { path });
    }
    const allocator = this.context.allocator();
    allocator.reserve(needed, path);
    const writer = this.context.writer();
    const zero = new Uint8Array(clusterSize);
    let last = this.clusters[this.clusters.length - 1]!;
    let added = 0;
    while (added < needed) {
      const runOfClusters = allocator.allocateRun(needed - added, last, path);
      for (let i = 0; i < runOfClusters.count; i++) {
        writer.write(clusterToByteOffset(this.context.geometry, runOfClusters.first + i), zero);
        this.clusters.push(runOfClusters.first + i);
      }
      added += runOfClusters.count;
      last = runOfClusters.first + runOfClusters.count - 1;
    }
    const grown = new Uint8Array(this.bytes.length + needed * clusterSize);
    grown.set(this.bytes);
    // The new slots are all end markers: the parsed state stays valid.
    this.bytes = grown;
    return this.prepareEnd(slots - run, count);
  }

  /**
   * A run that reaches past the end marker moves the end: the slot after it
   * must read as the end again (anything stale beyond the old end must not
   * reappear).
   */
  private prepareEnd(first: number, count: number): number {
    const after = first + count;
    if (after < this.slotCount && after >= this.endSlot && this.bytes[after * DIRENT_SIZE] !== DIR_NAME_END) {
      this.bytes.fill(0, after * DIRENT_SIZE, (after + 1) * DIRENT_SIZE);
      this.writeSlots(after, 1);
    }
    return first;
  }

  /** True when the directory holds nothing but "." and "..". */
  isEmpty(): boolean {
    return this.parse().length === 0;
  }
}
