import type { BlockDevice, BlockReader } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import { filterEntryNames, parentAndName, splitPath, type ReaddirOptions } from '../path.js';
import {
  type DirEntry,
  type FileData,
  type MkdirOptions,
  type MountOptions,
  type OwnerOptions,
  type RmOptions,
  type Stats,
  type Volume,
  type WriteFileOptions,
  defaultClock,
} from '../volume.js';
import { Allocator } from './alloc.js';
import { type FatGeometry, parseBootSector, readFsInfo } from './boot.js';
import { END } from './codec.js';
import { DOTDOT_NAME, DOT_NAME, type ShortEntry, encodeLabelEntry, encodeShortEntry } from './dirent.js';
import { Directory, type Entry, type FatContext, clusterToByteOffset } from './directory.js';
import { ChainWriter, readChain, wholeChain } from './file.js';
import {
  ATTR_ARCHIVE,
  ATTR_DIRECTORY,
  ATTR_READ_ONLY,
  DIRENT_SIZE,
  FSINFO,
  FSI_UNKNOWN,
  STATE_DIRTY,
  viewOf,
} from './layout.js';
import { encodeLongName, longNameSlotCount } from './lfn.js';
import { exactShortName, generateShortName, rawKey, shortNameChecksum, validateLongName } from './names.js';
import { FatTable } from './table.js';
import { decodeFatTime, encodeFatTime } from './time.js';

export interface FatMountOptions extends MountOptions {}

/** Stat modes reported for FAT, which has no permissions: rwxr-xr-x, as Linux vfat shows with its default umask 022. */
export const FAT_FILE_MODE = 0o100755;
export const FAT_DIRECTORY_MODE = 0o040755;
/** A file with ATTR_READ_ONLY loses its write bits. */
const WRITE_BITS = 0o222;

type Node = { kind: 'root'; dir: Directory } | { kind: 'entry'; parent: Directory; entry: Entry };

const encoder = new TextEncoder();

function isDirectory(entry: ShortEntry): boolean {
  return (entry.attr & ATTR_DIRECTORY) !== 0;
}

/**
 * Mounts a FAT12/16/32 volume. A BlockReader without `write`, or
 * `readOnly: true`, gives a volume whose changing calls fail with EROFS.
 */
export async function mountFat(device: BlockDevice | BlockReader, options: FatMountOptions = {}): Promise<FatVolume> {
  return FatVolume.mount(device, options);
}

/**
 * A FAT volume behind the Volume interface. Differences from POSIX, by
 * design: names are case-insensitive and keep the case given; there are no
 * owners or permissions (chmod and chown check the path and change nothing;
 * stat reports uid/gid 0 and modes 0o100755 / 0o040755); no symlinks or hard
 * links (ENOTSUP); `ino` is derived from the entry's position on disk.
 * Timestamps are stored as UTC wall time (see time.ts).
 */
export class FatVolume implements Volume, FatContext {
  readonly kind = 'fat' as const;
  readonly readOnly: boolean;
  /** @internal */
  readonly geometry: FatGeometry;
  readonly reader: BlockReader;
  /** @internal */
  readonly table: FatTable;
  /** The dirty flag was set when mounted (the volume was not cleanly unmounted). */
  readonly wasDirty: boolean;
  private readonly device: BlockDevice | undefined;
  private readonly now: () => Date;
  private readonly alloc: Allocator;
  private readonly dirs = new Map<number, Directory>();
  private closed = false;
  private fsInfoValid = false;
  private verified = false;
  /** Set while a changing call runs: its metadata writes, with what they overwrote. */
  private journal: Journal | undefined;
  /** A failed call whose writes could not be undone: the device needs fsck.fat. */
  private undoFailed: unknown;

  private constructor(reader: BlockReader, geometry: FatGeometry, options: FatMountOptions) {
    this.reader = reader;
    this.geometry = geometry;
    const writable = typeof (reader as Partial<BlockDevice>).write === 'function' && !options.readOnly;
    this.device = writable ? (reader as BlockDevice) : undefined;
    this.readOnly = !writable;
    this.now = options.now ?? defaultClock();
    this.table = new FatTable(reader, geometry);
    let nextFree = 2;
    const fsInfo = geometry.fatType === 'fat32' ? readFsInfo(reader, geometry) : undefined;
    this.fsInfoValid = fsInfo?.valid ?? false;
    if (fsInfo?.valid && fsInfo.nextFree !== FSI_UNKNOWN) nextFree = fsInfo.nextFree;
    this.alloc = new Allocator(this.table, nextFree);
    const state = geometry.hasExtendedBpb ? reader.read(0, 512)[geometry.extendedOffset + 1]! : 0;
    this.wasDirty = (state & STATE_DIRTY) !== 0;
  }

  /** Mounts the FAT volume on a device (read-only over a BlockReader or with `readOnly`). */
  static async mount(device: BlockDevice | BlockReader, options: FatMountOptions = {}): Promise<FatVolume> {
    if (device.size < 512) throw new PiimgError('E_FAT_BAD_BPB', 'device is too small for a FAT volume', { size: device.size });
    const geometry = parseBootSector(device.read(0, 512), device.size);
    return new FatVolume(device, geometry, options);
  }

  // --- FatContext ---------------------------------------------------------

  /** @internal */
  writer(): BlockDevice {
    if (!this.device) throw new PiimgError('EROFS', 'the FAT volume is mounted read-only');
    return this.journal ?? this.device;
  }

  /**
   * File data goes straight to the device: it lands in clusters that were
   * free before the call (or after the end of a file), which no committed
   * entry reads. Clusters freed earlier in the same call still hold a
   * committed file's data until the call succeeds, so writes there are
   * journaled too.
   */
  dataWriter(): BlockDevice {
    const device = this.writer();
    const journal = this.journal;
    const released = this.alloc.releasedInCall;
    if (!journal || !released || released.size === 0 || !this.device) return device;
    const direct = this.device;
    const { dataByteOffset, clusterSize } = this.geometry;
    return {
      size: direct.size,
      read: (byteOffset, length) => direct.read(byteOffset, length),
      flush: () => direct.flush(),
      write: (byteOffset, data) => {
        const first = 2 + Math.floor((byteOffset - dataByteOffset) / clusterSize);
        const last = 2 + Math.floor((byteOffset + data.length - 1 - dataByteOffset) / clusterSize);
        let reused = false;
        for (let cluster = first; cluster <= last && !reused; cluster++) reused = released.has(cluster);
        (reused ? journal : direct).write(byteOffset, data);
      },
    };
  }

  /** @internal */
  allocator(): Allocator {
    return this.alloc;
  }

  // --- helpers ------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new PiimgError('E_CLOSED', 'the FAT volume is closed');
  }

  /**
   * Runs one changing call all-or-nothing on the device. Metadata writes
   * (directory slots, boot sector, and at the end the FAT copies and FSInfo)
   * go through a journal that keeps the bytes they overwrite. On success the
   * FAT is written and the dirty flag, set for the duration of the call, is
   * cleared: between calls the device is a clean volume. On failure (ENOSPC
   * midway, a device error, anything) the journal is written back and the
   * cached FAT, free count and directories are dropped, so both the device
   * and the volume are as before the call; the error is rethrown. Nested
   * calls (appendFile creating a file through writeFile) join the outer one.
   */
  private async change<T>(path: string, fn: () => Promise<T>): Promise<T> {
    if (this.journal) return fn();
    const saved = this.begin(path);
    try {
      if (!this.wasDirty) this.setDirtyFlag(true);
      const result = await fn();
      this.commit();
      return result;
    } catch (error) {
      this.abort(saved);
      throw error;
    }
  }

  /** `change` for the synchronous calls (setLabel). */
  private changeSync<T>(path: string, fn: () => T): T {
    if (this.journal) return fn();
    const saved = this.begin(path);
    try {
      if (!this.wasDirty) this.setDirtyFlag(true);
      const result = fn();
      this.commit();
      return result;
    } catch (error) {
      this.abort(saved);
      throw error;
    }
  }

  private begin(path: string): { alloc: ReturnType<Allocator['snapshot']>; bootLabel: string | undefined } {
    this.checkOpen();
    if (!this.device) throw new PiimgError('EROFS', 'the FAT volume is mounted read-only', { path });
    if (this.undoFailed !== undefined) {
      throw new PiimgError('EIO', 'an earlier failed change could not be undone on the device; check the volume with fsck.fat', { path, cause: this.undoFailed });
    }
    // Count free clusters before the first change, so FSInfo ends up exact. This
    // loads the whole FAT in one read, which the check below then walks from memory.
    void this.alloc.freeCount;
    if (!this.verified) {
      this.verifyForWrite();
      this.verified = true;
    }
    const saved = { alloc: this.alloc.snapshot(), bootLabel: this.geometry.bootLabel };
    this.journal = new Journal(this.device);
    this.alloc.releasedInCall = new Set();
    return saved;
  }

  private commit(): void {
    const journal = this.journal!;
    this.table.flush(journal);
    if (this.geometry.fatType === 'fat32' && this.fsInfoValid && this.alloc.freeKnown) {
      const at = this.geometry.fsInfoSector * this.geometry.sectorSize;
      const fields = new Uint8Array(8);
      const view = viewOf(fields);
      view.setUint32(0, this.alloc.freeCount, true);
      view.setUint32(4, this.alloc.nextFree, true);
      journal.write(at + FSINFO.FSI_Free_Count.byteOffset, fields);
    }
    if (!this.wasDirty) this.setDirtyFlag(false);
    this.journal = undefined;
    this.alloc.releasedInCall = undefined;
  }

  private abort(saved: { alloc: ReturnType<Allocator['snapshot']>; bootLabel: string | undefined }): void {
    const journal = this.journal!;
    this.journal = undefined;
    this.alloc.releasedInCall = undefined;
    try {
      journal.rollback();
    } catch (error) {
      // The device refuses writes: what is on it now is unknown, so no further change is tried.
      this.undoFailed = error;
    }
    this.table.forget();
    this.alloc.restore(saved.alloc);
    this.dirs.clear();
    (this.geometry as { bootLabel: string | undefined }).bootLabel = saved.bootLabel;
  }

  /**
   * Before the first change, walks the whole tree once and checks that every
   * chain is well formed, long enough for its file and owned by one entry
   * only. Freeing a cross-linked or looping chain would damage other files,
   * so such a volume is refused for writing (E_FAT_CORRUPT; run fsck.fat).
   * The cost is one pass over the directories and used chains.
   */
  private verifyForWrite(): void {
    const owner = new Uint8Array(this.geometry.clusterCount + 2);
    const claimOne = (cluster: number, path: string): void => {
      if (owner[cluster]) {
        throw new PiimgError('E_FAT_CORRUPT', `cluster ${cluster} of ${path} is also used elsewhere (cross-linked chains or a loop); refusing to write`, { path, cluster });
      }
      owner[cluster] = 1;
    };
    const claim = (clusters: readonly number[], path: string): void => {
      for (const cluster of clusters) claimOne(cluster, path);
    };
    // A file's chain is walked straight into the owner bitmap (no array or set per chain):
    // a cluster met twice is a cross-link or a loop, and each step claims a new cluster, so
    // the walk is bounded by the cluster count.
    const table = this.table;
    const claimChain = (first: number, path: string): number => {
      const what = `chain of ${path}`;
      table.checkFirst(first, what, path);
      let length = 0;
      for (let cluster = first; cluster !== END; cluster = table.next(cluster, what, path)) {
        claimOne(cluster, path);
        length++;
      }
      return length;
    };
    const pending: { dir: Directory; path: string }[] = [{ dir: this.root(), path: '' }];
    while (pending.length > 0) {
      const { dir, path } = pending.pop()!;
      claim(dir.clusters, path || '/');
      for (const entry of dir.entries()) {
        const child = `${path}/${entry.name}`;
        if (isDirectory(entry)) {
          pending.push({ dir: this.subdir(entry, child), path: child });
          continue;
        }
        if (entry.firstCluster === 0) {
          if (entry.size !== 0) throw new PiimgError('E_FAT_CORRUPT', `file ${child} of ${entry.size} bytes has no clusters`, { path: child });
          continue;
        }
        const length = claimChain(entry.firstCluster, child);
        if (length < Math.ceil(entry.size / this.geometry.clusterSize)) {
          throw new PiimgError('E_FAT_CORRUPT', `file ${child} is ${entry.size} bytes but its chain holds ${length} clusters`, { path: child });
        }
      }
    }
  }

  /** Linux and dosfstools keep "mounted, not cleanly unmounted" in bit 0 of BS_Reserved1. */
  private setDirtyFlag(dirty: boolean): void {
    if (!this.geometry.hasExtendedBpb || !this.device) return;
    const at = this.geometry.extendedOffset + 1;
    const byte = this.reader.read(at, 1)[0]!;
    const next = dirty ? byte | STATE_DIRTY : byte & ~STATE_DIRTY;
    if (next !== byte) this.writer().write(at, Uint8Array.of(next));
  }

  private rootCluster(): number {
    return this.geometry.fatType === 'fat32' ? this.geometry.rootCluster : 0;
  }

  private openDir(firstCluster: number, isRoot: boolean, path: string): Directory {
    let dir = this.dirs.get(firstCluster);
    if (!dir) {
      dir = Directory.open(this, firstCluster, isRoot, path);
      this.dirs.set(firstCluster, dir);
    }
    return dir;
  }

  private root(): Directory {
    return this.openDir(this.rootCluster(), true, '/');
  }

  private subdir(entry: Entry, path: string): Directory {
    if (entry.firstCluster === this.rootCluster() || entry.firstCluster === 0) {
      throw new PiimgError('E_FAT_CORRUPT', `directory ${path} points to the root directory`, { path });
    }
    return this.openDir(entry.firstCluster, false, path);
  }

  /** Resolves a path; `clusters` lists the directories passed through (for move-into-itself checks). */
  private resolve(path: string, clusters?: number[]): Node | undefined {
    this.checkOpen();
    const parts = splitPath(path);
    let dir = this.root();
    clusters?.push(dir.firstCluster);
    for (let i = 0; i < parts.length; i++) {
      const entry = dir.find(parts[i]!);
      if (!entry) return undefined;
      if (i === parts.length - 1) return { kind: 'entry', parent: dir, entry };
      const here = '/' + parts.slice(0, i + 1).join('/');
      if (!isDirectory(entry)) throw new PiimgError('ENOTDIR', `${here} is not a directory`, { path });
      dir = this.subdir(entry, here);
      clusters?.push(dir.firstCluster);
    }
    return { kind: 'root', dir };
  }

  private mustResolve(path: string): Node {
    const node = this.resolve(path);
    if (!node) throw new PiimgError('ENOENT', `no such file or directory: ${path}`, { path });
    return node;
  }

  private resolveDir(path: string, clusters?: number[]): Directory {
    const node = this.resolve(path, clusters);
    if (!node) throw new PiimgError('ENOENT', `no such directory: ${path}`, { path });
    if (node.kind === 'root') return node.dir;
    if (!isDirectory(node.entry)) throw new PiimgError('ENOTDIR', `${path} is not a directory`, { path });
    const dir = this.subdir(node.entry, path);
    clusters?.push(dir.firstCluster);
    return dir;
  }

  private stamp(when: Date): { date: number; time: number; hundredths: number } {
    return encodeFatTime(when);
  }

  /** Adds a directory entry (long-name slots when needed) and returns its slot range. */
  private addEntry(dir: Directory, name: string, fields: Omit<ShortEntry, 'raw' | 'ntRes'>, path: string): void {
    validateLongName(name, path);
    const exact = exactShortName(name);
    let raw: Uint8Array;
    let ntRes = 0;
    let lfn: Uint8Array | undefined;
    if (exact && !dir.isShortNameTaken(rawKey(exact.raw))) {
      raw = exact.raw;
      ntRes = exact.ntRes;
    } else {
      raw = generateShortName(name, (key) => dir.isShortNameTaken(key));
      lfn = encodeLongName(name, shortNameChecksum(raw));
    }
    const short = encodeShortEntry({ ...fields, raw, ntRes });
    const count = (lfn ? longNameSlotCount(name) : 0) + 1;
    const first = dir.reserveSlots(count, path);
    const data = new Uint8Array(count * DIRENT_SIZE);
    if (lfn) data.set(lfn);
    data.set(short, (count - 1) * DIRENT_SIZE);
    dir.putSlots(first, data);
  }

  private updateEntry(dir: Directory, entry: Entry, changes: Partial<ShortEntry>): void {
    dir.putSlots(entry.slot, encodeShortEntry({ ...entry, ...changes }));
  }

  private removeEntry(dir: Directory, entry: Entry): void {
    dir.freeSlots(entry.firstSlot, entry.slot);
  }

  private statOf(node: Node): Stats {
    if (node.kind === 'root') {
      const epoch = decodeFatTime(0);
      return {
        type: 'directory',
        mode: FAT_DIRECTORY_MODE,
        uid: 0,
        gid: 0,
        size: 0,
        ino: 1,
        nlink: 1,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
        birthtime: epoch,
      };
    }
    const { entry, parent } = node;
    const directory = isDirectory(entry);
    let mode = directory ? FAT_DIRECTORY_MODE : FAT_FILE_MODE;
    if (entry.attr & ATTR_READ_ONLY) mode &= ~WRITE_BITS;
    const mtime = decodeFatTime(entry.wrtDate, entry.wrtTime);
    return {
      type: directory ? 'directory' : 'file',
      mode,
      uid: 0,
      gid: 0,
      size: directory ? 0 : entry.size,
      ino: Math.floor(parent.slotByteOffset(entry.slot) / DIRENT_SIZE),
      nlink: 1,
      atime: decodeFatTime(entry.accDate),
      mtime,
      ctime: mtime,
      birthtime: decodeFatTime(entry.crtDate, entry.crtTime, entry.crtTenth),
    };
  }

  // --- reading ------------------------------------------------------------

  async readFile(path: string): Promise<Uint8Array> {
    const node = this.mustResolve(path);
    if (node.kind === 'root' || isDirectory(node.entry)) throw new PiimgError('EISDIR', `${path} is a directory`, { path });
    return readChain(this, node.entry.firstCluster, node.entry.size, path);
  }

  async readdir(path: string, options: ReaddirOptions = {}): Promise<DirEntry[]> {
    const dir = this.resolveDir(path);
    return filterEntryNames(path, dir.entries(), options).map((entry) => ({ name: entry.name, type: isDirectory(entry) ? 'directory' : 'file' }));
  }

  async stat(path: string): Promise<Stats> {
    return this.statOf(this.mustResolve(path));
  }

  async lstat(path: string): Promise<Stats> {
    return this.stat(path);
  }

  async exists(path: string): Promise<boolean> {
    try {
      return this.resolve(path) !== undefined;
    } catch (error) {
      if (error instanceof PiimgError && error.code === 'ENOTDIR') return false;
      throw error;
    }
  }

  async readlink(path: string): Promise<string> {
    this.mustResolve(path);
    throw new PiimgError('EINVAL', `${path} is not a symbolic link (FAT has none)`, { path });
  }

  // --- writing ------------------------------------------------------------

  async writeFile(path: string, data: FileData, options: WriteFileOptions = {}): Promise<void> {
    return this.change(path, () => this.writeFileNow(path, data, options));
  }

  private async writeFileNow(path: string, data: FileData, options: WriteFileOptions): Promise<void> {
    const { parent, name } = parentAndName(path);
    const dir = this.resolveDir(parent);
    const existing = dir.find(name);
    if (existing && isDirectory(existing)) throw new PiimgError('EISDIR', `${path} is a directory`, { path });
    if (!existing) validateLongName(name, path);
    const clusterSize = this.geometry.clusterSize;
    const bytes = typeof data === 'string' ? encoder.encode(data) : data instanceof Uint8Array ? data : undefined;
    const oldChain = existing ? wholeChain(this, existing.firstCluster, path) : [];
    const writer = new ChainWriter(this, path);
    if (bytes) {
      // Known length: check space first, then free the old chain before writing, so a
      // file can be replaced by one that only fits in its own space; nothing can fail midway.
      if (!existing) this.ensureSlotsFor(dir, name, path);
      const needed = Math.ceil(bytes.length / clusterSize);
      if (needed > this.alloc.freeCount + oldChain.length) {
        throw new PiimgError('ENOSPC', `no space left: ${needed} clusters needed, ${this.alloc.freeCount + oldChain.length} available`, { path });
      }
      if (oldChain.length) this.alloc.release(oldChain);
      writer.write(bytes);
    } else {
      // Streamed data: write the new chain first; on failure free it and keep the old file.
      if (!existing) this.ensureSlotsFor(dir, name, path);
      try {
        for await (const chunk of data as AsyncIterable<Uint8Array>) writer.write(chunk);
      } catch (error) {
        writer.rollback();
        throw error;
      }
      if (oldChain.length) this.alloc.release(oldChain);
    }
    const now = this.now();
    const mtime = this.stamp(options.mtime ?? now);
    const atime = this.stamp(options.atime ?? options.mtime ?? now);
    const fields = {
      firstCluster: writer.firstCluster,
      size: writer.size,
      wrtDate: mtime.date,
      wrtTime: mtime.time,
      accDate: atime.date,
    };
    if (existing) {
      this.updateEntry(dir, existing, fields);
    } else {
      const created = this.stamp(now);
      this.addEntry(dir, name, { ...fields, attr: ATTR_ARCHIVE, crtTenth: created.hundredths, crtTime: created.time, crtDate: created.date }, path);
    }
  }

  /**
   * Makes sure the directory can take a new entry for `name` before any data
   * is written (grows it now if needed), so a full directory fails early.
   */
  private ensureSlotsFor(dir: Directory, name: string, path: string): void {
    const exact = exactShortName(name);
    const count = exact && !dir.isShortNameTaken(rawKey(exact.raw)) ? 1 : longNameSlotCount(name) + 1;
    dir.reserveSlots(count, path);
  }

  /** Appends to a file, creating it when missing. */
  async appendFile(path: string, data: FileData, options: WriteFileOptions = {}): Promise<void> {
    return this.change(path, () => this.appendFileNow(path, data, options));
  }

  private async appendFileNow(path: string, data: FileData, options: WriteFileOptions): Promise<void> {
    const { parent, name } = parentAndName(path);
    const dir = this.resolveDir(parent);
    const existing = dir.find(name);
    if (!existing) return this.writeFile(path, data, options);
    if (isDirectory(existing)) throw new PiimgError('EISDIR', `${path} is a directory`, { path });
    const chain = existing.size === 0 ? [] : wholeChain(this, existing.firstCluster, path);
    const needed = Math.ceil(existing.size / this.geometry.clusterSize);
    if (chain.length < needed) throw new PiimgError('E_FAT_CORRUPT', `file ${path} has fewer clusters than its size needs`, { path });
    // Clusters past the end of the data are unused; cut them so the chain matches the size.
    if (chain.length > needed) this.cutChain(chain, needed);
    const writer = new ChainWriter(this, path, {
      firstCluster: needed === 0 ? 0 : existing.firstCluster,
      lastCluster: needed === 0 ? 0 : chain[needed - 1]!,
      size: existing.size,
    });
    try {
      if (typeof data === 'string') writer.write(encoder.encode(data));
      else if (data instanceof Uint8Array) writer.write(data);
      else for await (const chunk of data as AsyncIterable<Uint8Array>) writer.write(chunk);
    } catch (error) {
      writer.rollback();
      throw error;
    }
    const mtime = this.stamp(options.mtime ?? this.now());
    this.updateEntry(dir, existing, { firstCluster: writer.firstCluster, size: writer.size, wrtDate: mtime.date, wrtTime: mtime.time, accDate: mtime.date });
  }

  /** Keeps the first `keep` clusters of a chain and frees the rest. */
  private cutChain(chain: number[], keep: number): void {
    if (keep > 0) this.table.set(chain[keep - 1]!, END);
    this.alloc.release(chain.slice(keep));
  }

  /** Sets a file's length: shrinking frees clusters (and zeroes the slack), growing appends zero bytes. */
  async truncate(path: string, length = 0): Promise<void> {
    return this.change(path, () => this.truncateNow(path, length));
  }

  private async truncateNow(path: string, length: number): Promise<void> {
    const node = this.mustResolve(path);
    if (node.kind === 'root' || isDirectory(node.entry)) throw new PiimgError('EISDIR', `${path} is a directory`, { path });
    const { entry, parent } = node;
    if (!Number.isSafeInteger(length) || length < 0) throw new PiimgError('EINVAL', `invalid length ${length}`, { path });
    if (length >= entry.size) {
      if (length > entry.size) await this.appendFile(path, [new Uint8Array(length - entry.size)]);
      return;
    }
    const clusterSize = this.geometry.clusterSize;
    const chain = wholeChain(this, entry.firstCluster, path);
    const keep = Math.ceil(length / clusterSize);
    this.cutChain(chain, keep);
    if (length % clusterSize !== 0) {
      const slack = clusterSize - (length % clusterSize);
      this.writer().write(clusterToByteOffset(this.geometry, chain[keep - 1]!) + (length % clusterSize), new Uint8Array(slack));
    }
    const mtime = this.stamp(this.now());
    this.updateEntry(parent, entry, { firstCluster: keep === 0 ? 0 : entry.firstCluster, size: length, wrtDate: mtime.date, wrtTime: mtime.time });
  }

  async mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    return this.change(path, async () => this.mkdirNow(path, options));
  }

  private mkdirNow(path: string, options: MkdirOptions): void {
    const parts = splitPath(path);
    if (parts.length === 0) {
      if (options.recursive) return;
      throw new PiimgError('EEXIST', 'the root directory exists', { path });
    }
    let dir = this.root();
    for (let i = 0; i < parts.length; i++) {
      const here = '/' + parts.slice(0, i + 1).join('/');
      const last = i === parts.length - 1;
      const entry = dir.find(parts[i]!);
      if (entry) {
        if (!isDirectory(entry)) throw new PiimgError(last && !options.recursive ? 'EEXIST' : 'ENOTDIR', `${here} exists and is not a directory`, { path });
        if (last && !options.recursive) throw new PiimgError('EEXIST', `${here} exists`, { path });
        dir = this.subdir(entry, here);
        continue;
      }
      if (!last && !options.recursive) throw new PiimgError('ENOENT', `no such directory: ${here}`, { path });
      dir = this.createDirectory(dir, parts[i]!, here);
    }
  }

  private createDirectory(parent: Directory, name: string, path: string): Directory {
    validateLongName(name, path);
    this.ensureSlotsFor(parent, name, path);
    this.alloc.reserve(1, path);
    const { first: cluster } = this.alloc.allocateRun(1, 0, path);
    const stamp = this.stamp(this.now());
    const times = { crtTenth: stamp.hundredths, crtTime: stamp.time, crtDate: stamp.date, wrtTime: stamp.time, wrtDate: stamp.date, accDate: stamp.date };
    const block = new Uint8Array(this.geometry.clusterSize);
    block.set(encodeShortEntry({ raw: DOT_NAME, attr: ATTR_DIRECTORY, ntRes: 0, firstCluster: cluster, size: 0, ...times }), 0);
    // ".." of a directory in the root points to cluster 0, also on FAT32 (FAT spec §6.7).
    const parentCluster = parent.isRoot ? 0 : parent.firstCluster;
    block.set(encodeShortEntry({ raw: DOTDOT_NAME, attr: ATTR_DIRECTORY, ntRes: 0, firstCluster: parentCluster, size: 0, ...times }), DIRENT_SIZE);
    this.dataWriter().write(clusterToByteOffset(this.geometry, cluster), block);
    this.addEntry(parent, name, { attr: ATTR_DIRECTORY, firstCluster: cluster, size: 0, ...times }, path);
    this.dirs.delete(cluster);
    return this.openDir(cluster, false, path);
  }

  async symlink(_target: string, path: string, _options?: OwnerOptions): Promise<void> {
    this.checkOpen();
    throw new PiimgError('ENOTSUP', 'FAT has no symbolic links', { path });
  }

  async link(_existingPath: string, newPath: string): Promise<void> {
    this.checkOpen();
    throw new PiimgError('ENOTSUP', 'FAT has no hard links', { path: newPath });
  }

  /** FAT has no permission bits: the path is checked and nothing changes. */
  async chmod(path: string, _mode: number): Promise<void> {
    this.beginWriteCheckOnly(path);
    this.mustResolve(path);
  }

  /** FAT has no owners: the path is checked and nothing changes. */
  async chown(path: string, _uid: number, _gid: number): Promise<void> {
    this.beginWriteCheckOnly(path);
    this.mustResolve(path);
  }

  private beginWriteCheckOnly(path: string): void {
    this.checkOpen();
    if (!this.device) throw new PiimgError('EROFS', 'the FAT volume is mounted read-only', { path });
  }

  /** Sets the modification time and the access date (FAT keeps no access time of day). */
  async utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.change(path, async () => this.utimesNow(path, atime, mtime));
  }

  private utimesNow(path: string, atime: Date, mtime: Date): void {
    const node = this.mustResolve(path);
    if (node.kind === 'root') return;
    const m = this.stamp(mtime);
    this.updateEntry(node.parent, node.entry, { wrtDate: m.date, wrtTime: m.time, accDate: this.stamp(atime).date });
  }

  async rm(path: string, options: RmOptions = {}): Promise<void> {
    return this.change(path, async () => this.rmNow(path, options));
  }

  private rmNow(path: string, options: RmOptions): void {
    let node: Node | undefined;
    try {
      node = this.resolve(path);
    } catch (error) {
      if (options.force && error instanceof PiimgError && error.code === 'ENOTDIR') return;
      throw error;
    }
    if (!node) {
      if (options.force) return;
      throw new PiimgError('ENOENT', `no such file or directory: ${path}`, { path });
    }
    if (node.kind === 'root') throw new PiimgError('EINVAL', 'cannot remove the root directory', { path });
    this.removeNode(node.parent, node.entry, path, options.recursive === true, new Set());
  }

  private removeNode(parent: Directory, entry: Entry, path: string, recursive: boolean, visiting: Set<number>): void {
    if (isDirectory(entry)) {
      if (visiting.has(entry.firstCluster)) throw new PiimgError('E_FAT_CORRUPT', `directory loop at ${path}`, { path });
      const dir = this.subdir(entry, path);
      const children = dir.entries();
      if (children.length > 0) {
        if (!recursive) throw new PiimgError('ENOTEMPTY', `directory not empty: ${path}`, { path });
        visiting.add(entry.firstCluster);
        for (const child of [...children]) this.removeNode(dir, child, `${path}/${child.name}`, true, visiting);
        visiting.delete(entry.firstCluster);
      }
      this.dirs.delete(entry.firstCluster);
    }
    const chain = wholeChain(this, entry.firstCluster, path);
    this.removeEntry(parent, entry);
    this.alloc.release(chain);
  }

  async rename(from: string, to: string): Promise<void> {
    return this.change(from, async () => this.renameNow(from, to));
  }

  private renameNow(from: string, to: string): void {
    const source = this.mustResolve(from);
    if (source.kind === 'root') throw new PiimgError('EINVAL', 'cannot move the root directory', { path: from });
    const { parent: toParent, name: toName } = parentAndName(to);
    validateLongName(toName, to);
    const passed: number[] = [];
    const target = this.resolveDir(toParent, passed);
    const entry = source.entry;
    const moving = isDirectory(entry);
    if (moving && passed.includes(entry.firstCluster)) {
      throw new PiimgError('EINVAL', `cannot move ${from} into itself`, { path: to });
    }
    const existing = target.find(toName);
    const same = existing !== undefined && target === source.parent && existing.slot === entry.slot;
    if (same && existing.name === toName) return;
    let replaced: { entry: Entry; saved: Uint8Array } | undefined;
    if (existing && !same) {
      if (isDirectory(existing)) {
        if (!moving) throw new PiimgError('EISDIR', `${to} is a directory`, { path: to });
        if (!this.subdir(existing, to).isEmpty()) throw new PiimgError('ENOTEMPTY', `directory not empty: ${to}`, { path: to });
      } else if (moving) {
        throw new PiimgError('ENOTDIR', `${to} is not a directory`, { path: to });
      }
      const saved = new Uint8Array((existing.slot - existing.firstSlot + 1) * DIRENT_SIZE);
      for (let slot = existing.firstSlot; slot <= existing.slot; slot++) saved.set(target.slotBytes(slot), (slot - existing.firstSlot) * DIRENT_SIZE);
      this.removeEntry(target, existing);
      replaced = { entry: existing, saved };
    }
    // Free the old slots of a same-directory case change first, so the new name may reuse them.
    const fields = { ...entry };
    if (same) this.removeEntry(source.parent, entry);
    try {
      this.addEntry(target, toName, fields, to);
    } catch (error) {
      if (replaced) target.putSlots(replaced.entry.firstSlot, replaced.saved);
      if (same) {
        // Put the original entry set back where it was.
        const count = entry.slot - entry.firstSlot + 1;
        const data = encodeLongName(entry.name, shortNameChecksum(entry.raw));
        const restored = new Uint8Array(count * DIRENT_SIZE);
        if (count > 1) restored.set(data.subarray(0, (count - 1) * DIRENT_SIZE));
        restored.set(encodeShortEntry(entry), (count - 1) * DIRENT_SIZE);
        source.parent.putSlots(entry.firstSlot, restored);
      }
      throw error;
    }
    if (!same) this.removeEntry(source.parent, entry);
    if (replaced) {
      this.dirs.delete(replaced.entry.firstCluster);
      this.alloc.release(wholeChain(this, replaced.entry.firstCluster, to));
    }
    if (moving && target !== source.parent) {
      const moved = this.subdir(entry, to);
      if (moved.dotDotSlot >= 0 || (moved.entries(), moved.dotDotSlot >= 0)) {
        const slot = moved.dotDotSlot;
        const bytes = new Uint8Array(moved.slotBytes(slot));
        const cluster = target.isRoot ? 0 : target.firstCluster;
        const view = viewOf(bytes);
        view.setUint16(0x14, cluster >>> 16, true);
        view.setUint16(0x1a, cluster & 0xffff, true);
        moved.putSlots(slot, bytes);
      }
    }
  }

  // --- label --------------------------------------------------------------

  /** The volume label: the root directory's volume-ID entry, else the boot sector's, undefined when none. */
  getLabel(): string | undefined {
    this.checkOpen();
    const fromRoot = this.root().label();
    if (fromRoot !== undefined) return fromRoot === '' ? undefined : fromRoot;
    const boot = this.geometry.bootLabel;
    return boot === undefined || boot === '' || boot === 'NO NAME' ? undefined : boot;
  }

  /**
   * Sets the label in both places (root directory entry and BS_VolLab, also
   * in the FAT32 backup boot sector). Up to 11 characters of printable ASCII
   * without "*+,./:;<=>?[\]|; case is kept as given (mkfs.fat does the same).
   * An empty label removes it.
   */
  setLabel(label: string): void {
    this.changeSync('/', () => this.setLabelNow(label));
  }

  private setLabelNow(label: string): void {
    if (label.length > 11 || /[^\x20-\x7e]|["*+,./:;<=>?[\\\]|]/.test(label) || label.startsWith(' ')) {
      throw new PiimgError('EINVAL', `invalid FAT volume label ${JSON.stringify(label)}`, { label });
    }
    const trimmed = label.replace(/ +$/, '');
    const field = encoder.encode((trimmed === '' ? 'NO NAME' : trimmed).padEnd(11, ' '));
    const root = this.root();
    const slot = root.labelSlotIndex;
    const stamp = this.stamp(this.now());
    if (trimmed === '') {
      if (slot >= 0) root.freeSlots(slot, slot);
    } else {
      const entry = encodeLabelEntry(field, stamp.time, stamp.date);
      root.putSlots(slot >= 0 ? slot : root.reserveSlots(1, '/'), entry);
    }
    if (this.geometry.hasExtendedBpb) {
      const at = this.geometry.extendedOffset + 7;
      this.writer().write(at, field);
      if (this.geometry.backupBootSector !== 0) this.writer().write(this.geometry.backupBootSector * this.geometry.sectorSize + at, field);
      (this.geometry as { bootLabel: string | undefined }).bootLabel = trimmed === '' ? 'NO NAME' : trimmed;
    }
  }

  /** Free space in bytes. */
  freeBytes(): number {
    this.checkOpen();
    return this.alloc.freeCount * this.geometry.clusterSize;
  }

  // --- lifecycle ----------------------------------------------------------

  /** Each changing call already wrote its FAT changes (see `change`): what is left is the device's own flush. */
  async flush(): Promise<void> {
    this.checkOpen();
    this.device?.flush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}


/**
 * The metadata writes of one changing call, each with the bytes it
 * overwrote, so that a failed call can be undone (see FatVolume.change).
 */
class Journal implements BlockDevice {
  private readonly undo: { byteOffset: number; before: Uint8Array }[] = [];
  constructor(private readonly device: BlockDevice) {}

  get size(): number {
    return this.device.size;
  }

  read(byteOffset: number, length: number): Uint8Array {
    return this.device.read(byteOffset, length);
  }

  write(byteOffset: number, data: Uint8Array): void {
    // Kept before writing: a write that fails halfway is undone too.
    this.undo.push({ byteOffset, before: this.device.read(byteOffset, data.length).slice() });
    this.device.write(byteOffset, data);
  }

  flush(): void {
    this.device.flush();
  }

  /** Writes back what was overwritten, last write first. */
  rollback(): void {
    for (let i = this.undo.length - 1; i >= 0; i--) this.device.write(this.undo[i]!.byteOffset, this.undo[i]!.before);
    this.undo.length = 0;
  }
}
