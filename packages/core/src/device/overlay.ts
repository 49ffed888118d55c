import { randomBytes } from 'node:crypto';
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PiimgError } from '../errors.js';
import { readFully, writeFully } from './file.js';
import { checkRange } from './range.js';
import type { BlockDevice, BlockReader, ByteRange } from './types.js';

/** Options of `new Overlay(base, options)`. */
export interface OverlayOptions {
  /** Granularity of change tracking in bytes, a power of two (default 64 KiB). */
  chunkSize?: number;
  /** Changed chunks kept in memory before further ones spill to a temporary file (default 256 MiB). */
  maxMemory?: number;
  /** Directory of the spill file (default: the OS temporary directory). */
  spillDir?: string;
}

/** Default granularity of change tracking: 64 KiB. */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
/** Default memory for changed chunks before they spill to a temporary file: 256 MiB. */
export const DEFAULT_MAX_MEMORY = 256 * 1024 * 1024;

/** Where the current bytes of a changed chunk live: in memory, or at an offset of the spill file. */
type ChunkStore = Uint8Array | number;

/**
 * Copy-on-write overlay over a read-only base: every write lands in changed
 * chunks of this overlay, reads merge them with the base, and the base is
 * never written. Customizing a device costs O(changed chunks), not O(image).
 */
export class Overlay implements BlockDevice {
  readonly base: BlockReader;
  readonly size: number;
  readonly chunkSize: number;
  readonly maxMemory: number;
  private readonly chunks = new Map<number, ChunkStore>();
  /**
   * In-memory chunks that hold only the bytes written so far, [start, end):
   * the rest is taken from the base when the chunk is first read or listed.
   * Writes that fill a chunk piece by piece (file data laid out by libext2fs)
   * then never read the base bytes they replace.
   */
  private readonly partial = new Map<number, { start: number; end: number }>();
  /**
   * In-memory chunks whose bytes another overlay holds too (see adopt): never
   * written in place, copied on their first write here.
   */
  private readonly shared = new Set<number>();
  private readonly spillDir: string;
  private spillFd: number | undefined;
  private spillPath: string | undefined;
  private spillUnlinked = false;
  private spillNext = 0;
  private memoryBytes = 0;
  private closed = false;

  constructor(base: BlockReader, options: OverlayOptions = {}) {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(chunkSize) || chunkSize < 512 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new PiimgError('EINVAL', `overlay chunk size must be a power of two >= 512, got ${chunkSize}`, { chunkSize });
    }
    this.base = base;
    this.size = base.size;
    this.chunkSize = chunkSize;
    this.maxMemory = options.maxMemory ?? DEFAULT_MAX_MEMORY;
    this.spillDir = options.spillDir ?? tmpdir();
  }

  /** Bytes of changed chunks held in memory and in the spill file. */
  get stats(): { changedChunks: number; memoryBytes: number; spilledBytes: number } {
    return { changedChunks: this.chunks.size, memoryBytes: this.memoryBytes, spilledBytes: this.spillNext };
  }

  private chunkLength(index: number): number {
    const start = index * this.chunkSize;
    return Math.min(this.chunkSize, this.size - start);
  }

  private assertOpen(): void {
    if (this.closed) throw new PiimgError('E_CLOSED', 'the overlay is closed');
  }

  private loadChunk(store: ChunkStore, length: number): Uint8Array {
    if (typeof store !== 'number') return store;
    const out = new Uint8Array(length);
    readFully(this.spillFd!, out, store, 'overlay spill file');
    return out;
  }

  /** Completes a partly written in-memory chunk from the base. */
  private fill(index: number): void {
    const written = this.partial.get(index);
    if (written === undefined) return;
    this.partial.delete(index);
    const chunk = this.chunks.get(index) as Uint8Array;
    const chunkStart = index * this.chunkSize;
    if (written.start > 0) chunk.set(this.base.read(chunkStart, written.start), 0);
    if (written.end < chunk.length) chunk.set(this.base.read(chunkStart + written.end, chunk.length - written.end), written.end);
  }

  read(byteOffset: number, length: number): Uint8Array {
    this.assertOpen();
    checkRange(this.size, byteOffset, length, 'image');
    if (this.chunks.size === 0 || length === 0) return this.base.read(byteOffset, length);
    if (this.partial.size > 0) {
      const last = Math.floor((byteOffset + length - 1) / this.chunkSize);
      for (let index = Math.floor(byteOffset / this.chunkSize); index <= last; index++) this.fill(index);
    }
    // Made at the first changed chunk: a range with none (a FAT copy, an inode table) is
    // the base's bytes as read, without a second buffer and a copy of them.
    let out: Uint8Array | undefined;
    const end = byteOffset + length;
    let position = byteOffset;
    // Runs of unchanged chunks are read from the base in one call.
    let baseRunStart = -1;
    const flushBaseRun = (into: Uint8Array, upTo: number): void => {
      if (baseRunStart >= 0) {
        into.set(this.base.read(baseRunStart, upTo - baseRunStart), baseRunStart - byteOffset);
        baseRunStart = -1;
      }
    };
    while (position < end) {
      const index = Math.floor(position / this.chunkSize);
      const chunkStart = index * this.chunkSize;
      const chunkEnd = Math.min(chunkStart + this.chunkSize, end);
      const store = this.chunks.get(index);
      if (store === undefined) {
        if (baseRunStart < 0) baseRunStart = position;
      } else {
        out ??= new Uint8Array(length);
        flushBaseRun(out, position);
        const inChunk = position - chunkStart;
        const count = chunkEnd - position;
        if (typeof store === 'number') {
          readFully(this.spillFd!, out.subarray(position - byteOffset, position - byteOffset + count), store + inChunk, 'overlay spill file');
        } else {
          out.set(store.subarray(inChunk, inChunk + count), position - byteOffset);
        }
      }
      position = chunkEnd;
    }
    if (out === undefined) return this.base.read(byteOffset, length);
    flushBaseRun(out, end);
    return out;
  }

  write(byteOffset: number, data: Uint8Array): void {
    this.assertOpen();
    checkRange(this.size, byteOffset, data.length, 'image');
    const end = byteOffset + data.length;
    let position = byteOffset;
    while (position < end) {
      const index = Math.floor(position / this.chunkSize);
      const chunkStart = index * this.chunkSize;
      const chunkLength = this.chunkLength(index);
      const inChunk = position - chunkStart;
      const count = Math.min(chunkLength - inChunk, end - position);
      const piece = data.subarray(position - byteOffset, position - byteOffset + count);
      const store = this.chunks.get(index);
      if (typeof store === 'number') {
        writeFully(this.spillFd!, piece, store + inChunk);
      } else if (store !== undefined) {
        const own = this.shared.delete(index) ? store.slice() : store;
        if (own !== store) this.chunks.set(index, own);
        const written = this.partial.get(index);
        if (written !== undefined) {
          if (inChunk <= written.end && inChunk + count >= written.start) {
            // Touches or overlaps what is there: the written range grows.
            written.start = Math.min(written.start, inChunk);
            written.end = Math.max(written.end, inChunk + count);
            if (written.start === 0 && written.end === chunkLength) this.partial.delete(index);
          } else {
            this.fill(index);
          }
        }
        own.set(piece, inChunk);
      } else if (count === chunkLength) {
        const chunk = new Uint8Array(chunkLength);
        chunk.set(piece, 0);
        this.storeNewChunk(index, chunk);
      } else if (this.memoryBytes + chunkLength <= this.maxMemory) {
        // First write to this chunk, not all of it: the base bytes around it are read when needed.
        const chunk = new Uint8Array(chunkLength);
        chunk.set(piece, inChunk);
        this.storeNewChunk(index, chunk);
        this.partial.set(index, { start: inChunk, end: inChunk + count });
      } else {
        // Bound for the spill file: it holds whole chunks.
        const chunk = this.base.read(chunkStart, chunkLength);
        chunk.set(piece, inChunk);
        this.storeNewChunk(index, chunk);
      }
      position += count;
    }
  }

  /**
   * Starts this overlay (which must have no changes yet) with the changes of
   * `from`, as image.derive() does: in-memory chunks are shared by both,
   * copy-on-write on either side, so deriving N devices from a staged image
   * copies nothing until a device writes; spilled chunks are copied.
   */
  adopt(from: Overlay): void {
    this.assertOpen();
    from.assertOpen();
    if (this.chunks.size > 0 || from.size !== this.size || from.chunkSize !== this.chunkSize) {
      for (const chunk of from.changedChunks()) this.write(chunk.byteOffset, chunk.data);
      return;
    }
    for (const [index, store] of [...from.chunks].sort((a, b) => a[0] - b[0])) {
      from.fill(index);
      if (typeof store === 'number') {
        this.write(index * this.chunkSize, from.loadChunk(store, from.chunkLength(index)));
      } else if (this.memoryBytes + store.length <= this.maxMemory) {
        this.chunks.set(index, store);
        this.memoryBytes += store.length;
        this.shared.add(index);
        from.shared.add(index);
      } else {
        this.storeNewChunk(index, store.slice());
      }
    }
  }

  private storeNewChunk(index: number, chunk: Uint8Array): void {
    if (this.memoryBytes + chunk.length <= this.maxMemory) {
      this.chunks.set(index, chunk);
      this.memoryBytes += chunk.length;
      return;
    }
    const fd = this.openSpill();
    const offset = this.spillNext;
    writeFully(fd, chunk, offset);
    this.spillNext += this.chunkSize;
    this.chunks.set(index, offset);
  }

  private openSpill(): number {
    if (this.spillFd === undefined) {
      this.spillPath = join(this.spillDir, `piimg-overlay-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
      try {
        this.spillFd = openSync(this.spillPath, 'wx+', 0o600);
      } catch (error) {
        throw new PiimgError('E_IO', `cannot create the overlay spill file in ${this.spillDir}`, { path: this.spillPath }, { cause: error });
      }
      // On POSIX the open descriptor keeps the file alive: nothing is left behind even on a crash.
      try {
        unlinkSync(this.spillPath);
        this.spillUnlinked = true;
      } catch {
        this.spillUnlinked = false;
      }
    }
    return this.spillFd;
  }

  flush(): void {}

  /** The changed byte ranges, sorted, adjacent chunks merged. */
  changedRanges(): ByteRange[] {
    const indexes = [...this.chunks.keys()].sort((a, b) => a - b);
    const ranges: ByteRange[] = [];
    for (const index of indexes) {
      const byteOffset = index * this.chunkSize;
      const length = this.chunkLength(index);
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last.byteOffset + last.length === byteOffset) last.length += length;
      else ranges.push({ byteOffset, length });
    }
    return ranges;
  }

  /** Yields each changed chunk in order with its current bytes. */
  *changedChunks(): Generator<{ byteOffset: number; data: Uint8Array }> {
    const indexes = [...this.chunks.keys()].sort((a, b) => a - b);
    for (const index of indexes) {
      this.fill(index);
      const store = this.chunks.get(index)!;
      yield { byteOffset: index * this.chunkSize, data: this.loadChunk(store, this.chunkLength(index)) };
    }
  }

  /** Drops every change. */
  discard(): void {
    this.chunks.clear();
    this.partial.clear();
    this.shared.clear();
    this.memoryBytes = 0;
    this.spillNext = 0;
  }

  /** Releases the spill file; the overlay cannot be used afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.chunks.clear();
    this.partial.clear();
    this.memoryBytes = 0;
    if (this.spillFd !== undefined) {
      closeSync(this.spillFd);
      this.spillFd = undefined;
      if (!this.spillUnlinked && this.spillPath) {
        try {
          unlinkSync(this.spillPath);
        } catch {
          // Already gone.
        }
      }
    }
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
