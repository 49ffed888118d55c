import type { BlockDevice, BlockReader } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import type { FatGeometry } from './boot.js';
import { BAD, END, FREE, codecs, entriesZero, ZERO_SPAN_ENTRIES, type FatCodec } from './codec.js';
import { FIRST_CLUSTER, viewOf } from './layout.js';

/** FAT bytes are read from the device in chunks of this size, on first use. */
const CHUNK_BYTES = 64 * 1024;
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

export function corrupt(message: string, data: Record<string, unknown> = {}): PiimgError {
  return new PiimgError('E_FAT_CORRUPT', message, data);
}

/**
 * The file allocation table, cached in memory: chunks are loaded on first
 * use, changed sectors are remembered and written to every FAT copy on
 * flush (FAT spec §3.1 BPB_NumFATs: the copies must stay identical).
 */
export class FatTable {
  readonly codec: FatCodec;
  /** Highest valid cluster number. */
  readonly maxCluster: number;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly loaded: Uint8Array;
  private readonly dirtySectors: Uint8Array;
  private dirtyCount = 0;
  private readonly sourceByteOffset: number;

  constructor(
    private readonly device: BlockReader,
    private readonly geometry: FatGeometry,
  ) {
    this.codec = codecs[geometry.fatType];
    this.maxCluster = geometry.clusterCount + 1;
    // Only the part of the FAT that describes existing clusters is used.
    const usedBytes = this.codec.byteOffsetOf(this.maxCluster) + this.codec.span;
    const length = Math.min(geometry.fatSectors * geometry.sectorSize, Math.ceil(usedBytes / geometry.sectorSize) * geometry.sectorSize);
    this.bytes = new Uint8Array(length);
    this.view = viewOf(this.bytes);
    this.loaded = new Uint8Array(Math.ceil(length / CHUNK_BYTES));
    this.dirtySectors = new Uint8Array(Math.ceil(length / geometry.sectorSize));
    const fatIndex = geometry.activeFat ?? 0;
    this.sourceByteOffset = geometry.fatByteOffset + fatIndex * geometry.fatSectors * geometry.sectorSize;
  }

  private load(chunk: number): void {
    const start = chunk * CHUNK_BYTES;
    const length = Math.min(CHUNK_BYTES, this.bytes.length - start);
    this.bytes.set(this.device.read(this.sourceByteOffset + start, length), start);
    this.loaded[chunk] = 1;
  }

  private ensure(cluster: number): void {
    const at = this.codec.byteOffsetOf(cluster);
    const first = (at / CHUNK_BYTES) | 0;
    if (this.loaded[first] === 0) this.load(first);
    const last = ((at + this.codec.span - 1) / CHUNK_BYTES) | 0;
    if (last !== first && this.loaded[last] === 0) this.load(last);
  }

  /** Raw normalised entry (FREE, BAD, END or a cluster number, possibly out of range). */
  get(cluster: number): number {
    if (!this.allLoaded) this.ensure(cluster);
    return this.codec.get(this.bytes, this.view, cluster);
  }

  set(cluster: number, value: number): void {
    if (cluster < FIRST_CLUSTER || cluster > this.maxCluster) {
      throw new RangeError(`cluster ${cluster} outside 2..${this.maxCluster}`);
    }
    this.ensure(cluster);
    this.codec.put(this.bytes, this.view, cluster, value);
    const at = this.codec.byteOffsetOf(cluster);
    this.markDirty(at);
    if (this.codec.span > 1) this.markDirty(at + this.codec.span - 1);
  }

  private markDirty(byteOffset: number, lastByteOffset = byteOffset): void {
    const sectorSize = this.geometry.sectorSize;
    for (let sector = (byteOffset / sectorSize) | 0; sector <= ((lastByteOffset / sectorSize) | 0); sector++) {
      if (this.dirtySectors[sector] === 0) {
        this.dirtySectors[sector] = 1;
        this.dirtyCount++;
      }
    }
  }

  /** Loads the whole table (for a full scan): one device read per run of chunks not loaded yet. */
  loadAll(): void {
    const chunks = this.loaded.length;
    for (let chunk = 0; chunk < chunks; ) {
      if (this.loaded[chunk] === 1) {
        chunk++;
        continue;
      }
      let end = chunk;
      while (end < chunks && this.loaded[end] === 0) end++;
      const start = chunk * CHUNK_BYTES;
      const stop = Math.min(end * CHUNK_BYTES, this.bytes.length);
      this.bytes.set(this.device.read(this.sourceByteOffset + start, stop - start), start);
      this.loaded.fill(1, chunk, end);
      chunk = end;
    }
    this.allLoaded = true;
  }

  /** Every chunk is in memory: `get` skips the per-entry chunk check. */
  private allLoaded = false;

  /**
   * Counts free clusters: one pass over the table, where a span whose bytes are
   * all zero counts whole (one memcmp; a 1 M-entry FAT is almost all free).
   */
  countFree(): number {
    this.loadAll();
    let free = 0;
    // FAT32 on a little-endian host (all Node runs on): the table is its own
    // 4-byte aligned buffer, read as 32-bit words.
    const words = this.words();
    for (let span = 0; span * ZERO_SPAN_ENTRIES <= this.maxCluster; span++) {
      const first = Math.max(FIRST_CLUSTER, span * ZERO_SPAN_ENTRIES);
      const last = Math.min(this.maxCluster, (span + 1) * ZERO_SPAN_ENTRIES - 1);
      if (entriesZero(this.codec, this.bytes, first, last)) {
        free += last - first + 1;
      } else if (words) {
        for (let cluster = first; cluster <= last; cluster++) if ((words[cluster]! & 0x0fffffff) === 0) free++;
      } else {
        for (let cluster = first; cluster <= last; cluster++) if (this.codec.get(this.bytes, this.view, cluster) === FREE) free++;
      }
    }
    return free;
  }

  /** FAT32 entries as 32-bit words, when the host is little-endian. */
  private words(): Uint32Array | undefined {
    if (!LITTLE_ENDIAN || this.codec.type !== 'fat32') return undefined;
    return (this.wordView ??= new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >>> 2));
  }
  private wordView: Uint32Array | undefined;

  /** Number of consecutive free clusters from `first` (itself included), at most `max`. Loads the whole table. */
  freeRunLength(first: number, max: number): number {
    if (!this.allLoaded) this.loadAll();
    const last = Math.min(this.maxCluster, first + max - 1);
    let cluster = first;
    const words = this.words();
    if (words) while (cluster <= last && (words[cluster]! & 0x0fffffff) === 0) cluster++;
    else while (cluster <= last && this.get(cluster) === FREE) cluster++;
    return cluster - first;
  }

  /**
   * Links clusters first .. first + count - 1 into one chain ending with END,
   * as `set` would one by one, with the dirty sectors marked once per range.
   */
  setRun(first: number, count: number): void {
    const last = first + count - 1;
    if (count < 1 || first < FIRST_CLUSTER || last > this.maxCluster) {
      throw new RangeError(`clusters ${first}..${last} outside 2..${this.maxCluster}`);
    }
    const words = this.words();
    if (!words) {
      for (let cluster = first; cluster < last; cluster++) this.set(cluster, cluster + 1);
      this.set(last, END);
      return;
    }
    if (!this.allLoaded) this.loadAll();
    // The top 4 bits of a FAT32 entry are reserved and kept.
    for (let cluster = first; cluster <= last; cluster++) {
      const raw = cluster === last ? this.codec.eoc : cluster + 1;
      words[cluster] = ((words[cluster]! & 0xf0000000) | raw) >>> 0;
    }
    this.markDirty(first * 4, last * 4 + 3);
  }

  get dirty(): boolean {
    return this.dirtyCount > 0;
  }

  /**
   * Drops the whole cache, changes included: the table is read from the
   * device again on next use. After a failed call whose writes were undone
   * (the FAT copies included, even when they had been flushed), memory and
   * device agree again.
   */
  forget(): void {
    this.loaded.fill(0);
    this.dirtySectors.fill(0);
    this.dirtyCount = 0;
    this.allLoaded = false;
  }

  /** Writes changed sectors to every FAT copy. */
  flush(device: BlockDevice): void {
    if (this.dirtyCount === 0) return;
    const { sectorSize, fatSectors, numFats, fatByteOffset } = this.geometry;
    const sectors = this.dirtySectors.length;
    for (let sector = 0; sector < sectors; ) {
      if (this.dirtySectors[sector] === 0) {
        sector++;
        continue;
      }
      let end = sector;
      while (end < sectors && this.dirtySectors[end] === 1) end++;
      const data = this.bytes.subarray(sector * sectorSize, Math.min(end * sectorSize, this.bytes.length));
      for (let copy = 0; copy < numFats; copy++) {
        device.write(fatByteOffset + copy * fatSectors * sectorSize + sector * sectorSize, data);
      }
      sector = end;
    }
    // Only once every write went through: a failed flush leaves the changes to `discard`.
    this.dirtySectors.fill(0);
    this.dirtyCount = 0;
  }

  /** Checks a first-cluster value read from a directory entry, and that the FAT does not mark it free. */
  checkFirst(cluster: number, what: string, path?: string): void {
    if (cluster < FIRST_CLUSTER || cluster > this.maxCluster) {
      throw corrupt(`${what} points to cluster ${cluster}, outside 2..${this.maxCluster}`, { cluster, path });
    }
    if (this.get(cluster) === FREE) throw corrupt(`${what} starts at cluster ${cluster}, which the FAT marks free`, { cluster, path });
  }

  /** The cluster after `cluster` in a chain, or END; a link to a free, bad or out-of-range cluster is E_FAT_CORRUPT. */
  next(cluster: number, what: string, path?: string): number {
    const next = this.get(cluster);
    if (next === END) return END;
    if (next === FREE || next === BAD || next < FIRST_CLUSTER || next > this.maxCluster) {
      const kind = next === FREE ? 'a free cluster' : next === BAD ? 'a bad cluster' : `cluster ${next}, outside 2..${this.maxCluster}`;
      throw corrupt(`${what} links cluster ${cluster} to ${kind}`, { cluster, next, path });
    }
    return next;
  }

  /**
   * Follows a cluster chain from `first`, validating each link: a link to a
   * free, bad or out-of-range cluster is E_FAT_CORRUPT, and so is a chain
   * longer than `limit` (which also bounds loops). With `stopAtLimit`, the
   * walk stops quietly after `limit` clusters (reading a file needs no more).
   */
  chain(first: number, options: { limit: number; stopAtLimit?: boolean; path?: string; what?: string }): number[] {
    const what = options.what ?? 'cluster chain';
    this.checkFirst(first, what, options.path);
    const clusters = [first];
    // A loop shorter than the limit would otherwise repeat data silently. A bitmap
    // (kept between calls and cleared after each walk) finds it without a Set per chain.
    const seen = this.scratch();
    seen[first] = 1;
    try {
      let cluster = first;
      for (;;) {
        if (options.stopAtLimit && clusters.length >= options.limit) return clusters;
        const next = this.next(cluster, what, options.path);
        if (next === END) return clusters;
        if (clusters.length >= options.limit) {
          throw corrupt(`${what} from cluster ${first} is longer than ${options.limit} clusters (a loop?)`, { cluster: first, path: options.path });
        }
        if (seen[next] === 1) {
          throw corrupt(`${what} loops back to cluster ${next}`, { cluster: first, next, path: options.path });
        }
        seen[next] = 1;
        clusters.push(next);
        cluster = next;
      }
    } finally {
      for (const cluster of clusters) seen[cluster] = 0;
    }
  }

  private seen: Uint8Array | undefined;

  /** One byte per cluster, all 0 between uses. */
  private scratch(): Uint8Array {
    this.seen ??= new Uint8Array(this.maxCluster + 1);
    return this.seen;
  }
}
