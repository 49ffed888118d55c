import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { partialName, removeStalePartials } from './partial.js';

/**
 * The compressed Blocks of a base, kept so that a fleet pays for compression
 * once. An .xz Block and a gzip member depend only on their own bytes, so a
 * device's output can take every Block it did not change from the base's
 * output as it is (The .xz File Format 1.2.1 §3; RFC 1952 §2.2).
 *
 * One directory per base and settings, under `<cacheDir>/blocks/`: the key
 * is the base file's identity (path, device, inode, size, mtime: a rewritten
 * base gets a new directory) with the format, level, Block size, Check type
 * and free-space treatment. Threads do not matter: a Block's bytes do not
 * depend on who compressed it. One file per Block, named by its index, so a
 * directory holds at most the base's compressed output: about the size of
 * the compressed base. All-zero Blocks have one file per size and settings,
 * shared by every base.
 *
 * Blocks a device changed are cut into sub-Blocks (see output.ts) kept by
 * content: one file per SHA-256 of the sub-Block's bytes, under
 * `<cacheDir>/blocks/content-<settings>/`, shared by every base and device
 * with these settings. Devices of a fleet write the same files at the same
 * places, so most sub-Blocks of a changed Block are the same bytes in every
 * device and are compressed once. Entries that are never found again (the
 * few sub-Blocks unique to one device: host name, salts, inode times) would
 * pile up, so this directory is bounded: a hit refreshes an entry's
 * modification time, and once it holds more than `contentLimitBytes` the
 * least recently used entries go.
 *
 * Entries are written to a partial file and renamed into place, so readers
 * never see half an entry and two processes filling the same directory at
 * once only replace one complete entry by an identical one. Each entry
 * carries the SHA-256 of its payload and the Block it stands for; an entry
 * that does not match (a damaged disk, a truncated copy) is a miss, recomputed
 * and rewritten, never shipped. A cache that cannot be written costs only the
 * recompression.
 */

const MAGIC = 'piimg-block-cache-1\n';
/** Entries above this are not cached (and no sane Block is this large). */
const MAX_ENTRY_BYTES = 256 << 20;
const PIECE_BYTES = 1 << 20;
/** Default bound of the content-addressed directory: the changed Blocks of many bases, and a few hundred devices' own sub-Blocks. */
export const DEFAULT_CONTENT_LIMIT_BYTES = 1 << 30;

/** What a cache entry must stand for: its place in the image and the slice of the kept ranges over it. */
export interface BlockKey {
  /** Block number in the image; undefined for an all-zero Block (shared by size) and a content-addressed one. */
  index?: number;
  /** SHA-256 (hex) of the Block's uncompressed bytes: the entry is kept by content, wherever the Block lies. */
  content?: string;
  byteOffset: number;
  length: number;
  /** The kept (non-free) ranges inside the Block, relative to its start, as text: the Block's bytes depend on it (`sha256:<content>` for a content key). */
  keep: string;
}

/** A compressed Block: its bytes and, for .xz, the sizes its Index record needs. */
export interface StoredBlock {
  pieces: Uint8Array[];
  unpaddedSize: number;
  uncompressedSize: number;
}

interface EntryHeader {
  byteOffset: number;
  length: number;
  keep: string;
  unpaddedSize: number;
  uncompressedSize: number;
  payloadBytes: number;
  sha256: string;
}

/** Settings that change a Block's compressed bytes. */
export interface BlockCacheSettings {
  format: string;
  level: number;
  blockSize: number;
  /** The .xz Check type, 0 for gzip. */
  check: number;
  freeSpace: 'zero' | 'keep';
}

/** Counts of one output: Blocks taken from the cache, compressed now, and entries found damaged. */
export interface BlockCacheStats {
  hits: number;
  misses: number;
  damaged: number;
}

export interface BlockCacheOptions {
  /** Bound of the content-addressed directory (default DEFAULT_CONTENT_LIMIT_BYTES). */
  contentLimitBytes?: number;
}

export class BlockCache {
  readonly stats: BlockCacheStats = { hits: 0, misses: 0, damaged: 0 };
  private readonly baseDir: string;
  private readonly zeroDir: string;
  private readonly contentDir: string;
  private readonly contentLimitBytes: number;
  private readonly writes = new Set<Promise<void>>();
  private prepared = false;
  private contentWritten = false;

  constructor(cacheDir: string, baseKey: string, settings: BlockCacheSettings, options: BlockCacheOptions = {}) {
    const settingsText = JSON.stringify(settings);
    const digest = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 32);
    this.baseDir = join(cacheDir, 'blocks', digest(`${baseKey}\0${settingsText}`));
    this.zeroDir = join(cacheDir, 'blocks', `zero-${digest(settingsText)}`);
    // A Block's compressed bytes depend on its bytes, the format, level and Check only: not on the base, its place or the Block size.
    const { format, level, check } = settings;
    this.contentDir = join(cacheDir, 'blocks', `content-${digest(JSON.stringify({ format, level, check }))}`);
    this.contentLimitBytes = options.contentLimitBytes ?? DEFAULT_CONTENT_LIMIT_BYTES;
  }

  private entryDir(key: BlockKey): string {
    return key.content !== undefined ? this.contentDir : key.index === undefined ? this.zeroDir : this.baseDir;
  }

  private entryName(key: BlockKey): string {
    return key.content !== undefined ? `${key.content}.blk` : `${key.index ?? key.length}.blk`;
  }

  private entryPath(key: BlockKey): string {
    return join(this.entryDir(key), this.entryName(key));
  }

  /** The entry for `key`, or undefined when it is missing or does not verify. */
  async get(key: BlockKey): Promise<StoredBlock | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.entryPath(key));
    } catch {
      this.stats.misses++;
      return undefined;
    }
    const entry = parseEntry(bytes, key);
    if (entry) {
      this.stats.hits++;
      // Recently used content entries are the last to go when the directory is over its bound.
      if (key.content !== undefined) {
        const now = new Date();
        await utimes(this.entryPath(key), now, now).catch(() => undefined);
      }
    } else {
      this.stats.damaged++;
      this.stats.misses++;
    }
    return entry;
  }

  /** Stores a Block in the background; `flush()` waits for every store. Failures are ignored. */
  put(key: BlockKey, block: StoredBlock): void {
    const write = this.write(key, block).catch(() => undefined);
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }

  private async write(key: BlockKey, block: StoredBlock): Promise<void> {
    const payloadBytes = block.pieces.reduce((sum, piece) => sum + piece.length, 0);
    if (payloadBytes > MAX_ENTRY_BYTES) return;
    const dir = this.entryDir(key);
    if (!this.prepared) {
      for (const made of [this.baseDir, this.zeroDir, this.contentDir]) {
        mkdirSync(made, { recursive: true });
        // Partial entries of killed processes go, as for outputs.
        removeStalePartials(made);
      }
      this.prepared = true;
    }
    if (key.content !== undefined) this.contentWritten = true;
    const hash = createHash('sha256');
    for (const piece of block.pieces) hash.update(piece);
    const header: EntryHeader = {
      byteOffset: key.byteOffset,
      length: key.length,
      keep: key.keep,
      unpaddedSize: block.unpaddedSize,
      uncompressedSize: block.uncompressedSize,
      payloadBytes,
      sha256: hash.digest('hex'),
    };
    const head = Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`);
    const path = this.entryPath(key);
    const temporary = join(dir, partialName(this.entryName(key)));
    try {
      await writeFile(temporary, [head, ...block.pieces], { flag: 'wx' });
      await rename(temporary, path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
  }

  /** Waits until every entry stored so far is in place (or given up), then keeps the content-addressed directory within its bound. */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
    if (this.contentWritten) {
      this.contentWritten = false;
      await pruneLeastRecent(this.contentDir, this.contentLimitBytes).catch(() => undefined);
    }
  }
}

/**
 * Removes the least recently used entries (by modification time) of `dir`
 * until it holds at most three quarters of `limitBytes`, once it holds more
 * than `limitBytes`: pruning is rare, not once per output. Another process
 * pruning or reading at the same time only finds an entry gone: a miss.
 */
export async function pruneLeastRecent(dir: string, limitBytes: number): Promise<void> {
  const entries: { path: string; bytes: number; mtimeMs: number }[] = [];
  let total = 0;
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.blk')) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) continue;
    entries.push({ path, bytes: info.size, mtimeMs: info.mtimeMs });
    total += info.size;
  }
  if (total <= limitBytes) return;
  entries.sort((a, b) => a.mtimeMs - b.mtimeMs);
  for (const entry of entries) {
    if (total <= limitBytes * 0.75) break;
    await unlink(entry.path).catch(() => undefined);
    total -= entry.bytes;
  }
}

/** Checks an entry against what it must stand for and its own SHA-256. */
function parseEntry(bytes: Buffer, key: BlockKey): StoredBlock | undefined {
  if (bytes.length > MAX_ENTRY_BYTES + 4096) return undefined;
  if (bytes.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) return undefined;
  const end = bytes.indexOf(0x0a, MAGIC.length);
  if (end < 0 || end - MAGIC.length > 4096) return undefined;
  let header: EntryHeader;
  try {
    header = JSON.parse(bytes.subarray(MAGIC.length, end).toString('utf8')) as EntryHeader;
  } catch {
    return undefined;
  }
  const payload = bytes.subarray(end + 1);
  if (
    header?.byteOffset !== key.byteOffset ||
    header.length !== key.length ||
    header.keep !== key.keep ||
    header.uncompressedSize !== key.length ||
    header.payloadBytes !== payload.length ||
    !Number.isSafeInteger(header.unpaddedSize) ||
    !Number.isSafeInteger(header.uncompressedSize) ||
    createHash('sha256').update(payload).digest('hex') !== header.sha256
  ) {
    return undefined;
  }
  // Handed on in 1 MiB views, like freshly encoded Blocks (no copy).
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < payload.length; at += PIECE_BYTES) pieces.push(payload.subarray(at, Math.min(payload.length, at + PIECE_BYTES)));
  return { pieces, unpaddedSize: header.unpaddedSize, uncompressedSize: header.uncompressedSize };
}
