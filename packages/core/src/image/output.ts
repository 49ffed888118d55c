import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { unlink, rename, open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Overlay } from '../device/overlay.js';
import type { ByteRange } from '../device/types.js';
import { allZero } from '../device/zero.js';
import { PiimgError } from '../errors.js';
import { throwIfAborted } from './abort.js';
import { partialName, removeStalePartials } from './partial.js';
import type { DataMap } from './datamap.js';
import { DEFAULT_XZ_LEVEL, encodeXz, xzBlockSize, type BlockContent } from './xz/encode.js';
import { DEFAULT_ZSTD_LEVEL, encodeZstd, zstdFrameSize } from './zstd/encode.js';
import { XZ_CHECK } from '@piimg/wasm';
import { BlockCache, type BlockKey, type StoredBlock } from './blockcache.js';
import { formatFromPath, type OutputFormat } from './format.js';

export { formatFromPath, parseOutputFormat, OUTPUT_FORMATS, type OutputFormat } from './format.js';

/**
 * What becomes of filesystem free space in an output. 'zero': the ranges no
 * filesystem uses (FAT free clusters, ext2/3/4 blocks free in the block
 * bitmaps; see image/usage.ts) and the base's holes are written as zeros,
 * without being read, as `zerofree` would leave them: the filesystems are the
 * same, only stale bytes nobody reads are gone, and a compressed output is as
 * small as the data in use allows. 'keep': every byte as the image holds it.
 */
export type FreeSpace = 'zero' | 'keep';

/** Compression settings of `save` and `createReadStream`. */
export interface CompressOptions {
  /** Compression level: xz 0-9 (default 6, like `xz`), gzip 1-9 (default 6, like `gzip`), zstd 1-19 (default 3, like `zstd`). */
  level?: number;
  /** Compressing threads (default: one per core). */
  threads?: number;
  /**
   * Free space as zeros or as it is. Default 'zero' for the compressed
   * formats (what users flash and ship), 'keep' for a raw image (a reflink
   * or sparse copy of the base with the changes).
   */
  freeSpace?: FreeSpace;
  /**
   * Reuse the compressed Blocks of the base stored in the cache, and store
   * them (default true): the first device of a base pays for compressing
   * it, the next ones only for the Blocks they changed. See blockcache.ts.
   */
  blockCache?: boolean;
  /** Called once the whole output is produced, with how its Blocks were made. */
  onStats?: (stats: OutputStats) => void;
}

/** How a compressed output was made: Blocks (xz) or members (gzip) in all, taken from the cache, compressed now. */
export interface OutputStats {
  /** Blocks (xz) or members (gzip) of the output, sub-Blocks included. */
  blocks: number;
  /** Not compressed by this output: taken from the cache, or a copy of an all-zero Block compressed once. */
  reused: number;
  /** Compressed by this output. */
  encoded: number;
  /** Uncompressed bytes compressed by this output (the rest was reused). */
  encodedBytes: number;
  /** Of `blocks`, the sub-Blocks of changed Blocks, kept in the cache by content. */
  subBlocks: number;
  /** Of `subBlocks`, those compressed by this output (not found by content). */
  subBlocksEncoded: number;
  /** Cache entries that did not verify (checksum, sizes): recompressed, never shipped. */
  damaged: number;
}

/** gzip member size: large enough that a member's restart of the dictionary costs under 0.1 %. */
export const GZIP_MEMBER_SIZE = 1 << 20;

/**
 * Size of the sub-Blocks a changed .xz Block is cut into (with the block
 * cache): an eighth of the Block, 3 MiB at level 6. Each sub-Block restarts
 * the LZMA2 dictionary: on compressible data (tars of /usr/lib) 3 MiB
 * sub-Blocks are 7 % larger than one 24 MiB Block (2 MiB: 9 %, 1 MiB: 14 %,
 * 4 MiB: 5 %); on incompressible data nothing. Only changed Blocks pay it,
 * and a device's differing sub-Blocks cost 3 MiB each to compress.
 */
export function xzSubBlockSize(level: number): number {
  return xzBlockSize(level) / 8;
}
export const DEFAULT_GZIP_LEVEL = 6;

export function defaultThreads(): number {
  return Math.max(1, availableParallelism());
}

function defaultLevel(format: Exclude<OutputFormat, 'img'>): number {
  return format === 'xz' ? DEFAULT_XZ_LEVEL : format === 'zstd' ? DEFAULT_ZSTD_LEVEL : DEFAULT_GZIP_LEVEL;
}

function checkLevel(format: OutputFormat, level: number): number {
  const [min, max] = format === 'xz' ? [0, 9] : format === 'zstd' ? [1, 19] : [1, 9];
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new PiimgError('EINVAL', `${format} level must be an integer ${min}..${max}, got ${level}`, { level });
  }
  return level;
}

function checkThreads(threads: number): number {
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new PiimgError('EINVAL', `threads must be an integer 1..64, got ${threads}`, { threads });
  return threads;
}

/** What an image is made of, for planning an output: the base's data ranges and the changed ranges. */
export interface ImageLayout {
  basePath: string;
  overlay: Overlay;
  /** Where the base holds data; everything else reads as zeros. */
  baseMap: DataMap;
  /** The ranges written as they are (in use, sorted); the rest is written as zeros. Undefined: everything. */
  keep?: readonly ByteRange[];
  /** The same ranges for the base alone, to tell which Blocks are still the base's. */
  baseKeep?: readonly ByteRange[];
  /** Where the base's compressed Blocks are kept, and the base's identity (fileIdentityKey); undefined: no reuse. */
  cache?: { dir: string; baseKey: string };
}

/** The ranges of `ranges` (sorted, disjoint) inside [start, end), as absolute [offset, length] pairs; `from` is a cursor kept between calls. */
function clip(ranges: readonly ByteRange[], start: number, end: number, from: { index: number }): number[] {
  const out: number[] = [];
  while (from.index < ranges.length && ranges[from.index]!.byteOffset + ranges[from.index]!.length <= start) from.index++;
  for (let i = from.index; i < ranges.length && ranges[i]!.byteOffset < end; i++) {
    const a = Math.max(start, ranges[i]!.byteOffset);
    const b = Math.min(end, ranges[i]!.byteOffset + ranges[i]!.length);
    if (a < b) out.push(a, b - a);
  }
  return out;
}

/** Sorted, disjoint ranges common to `a` and `b`. */
export function intersectRanges(a: readonly ByteRange[], b: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const start = Math.max(a[i]!.byteOffset, b[j]!.byteOffset);
    const aEnd = a[i]!.byteOffset + a[i]!.length;
    const bEnd = b[j]!.byteOffset + b[j]!.length;
    const end = Math.min(aEnd, bEnd);
    if (start < end) out.push({ byteOffset: start, length: end - start });
    if (aEnd <= bEnd) i++;
    else j++;
  }
  return out;
}

/** [offset, length] pairs relative to `start`, as text: a Block's slice of the kept ranges, compared and stored with cache entries. */
function sliceText(pairs: readonly number[], start: number): string {
  const parts: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) parts.push(`${pairs[i]! - start}+${pairs[i + 1]!}`);
  return parts.join(',');
}

/** A Block of an output: its content, and whether it is still the base's own Block (no change, same free space). */
export interface PlannedBlock extends BlockContent {
  index: number;
  /** The kept ranges inside the Block, absolute [offset, length] pairs. */
  keepRanges: number[];
  /** Its slice of the kept ranges, relative to its start (sliceText). */
  keepText: string;
  /**
   * No change lies in it and its free space is the base's: its bytes are
   * the base's, so its compressed form may come from (and go to) the cache.
   */
  baseBlock: boolean;
  /**
   * For a sub-Block of a changed Block (splitChanged): the SHA-256 of its
   * bytes, which are its only patch; its compressed form is kept by content.
   */
  content?: string;
}

/**
 * The image cut into Blocks of `blockSize`, each with its base ranges and its
 * changed bytes (read from the overlay as each Block is planned), both
 * restricted to the kept ranges: free space is left out, so it reads as zeros.
 */
export function* planBlocks(layout: ImageLayout, blockSize: number): Generator<PlannedBlock> {
  const { overlay } = layout;
  const whole = [{ byteOffset: 0, length: overlay.size }];
  const keep = layout.keep ?? whole;
  const baseKeep = layout.baseKeep ?? whole;
  const changed = intersectRanges(overlay.changedRanges(), keep);
  const baseData = intersectRanges(layout.baseMap, keep);
  const cursors = { base: { index: 0 }, changed: { index: 0 }, keep: { index: 0 }, baseKeep: { index: 0 } };
  for (let byteOffset = 0, index = 0; byteOffset < overlay.size; byteOffset += blockSize, index++) {
    const length = Math.min(blockSize, overlay.size - byteOffset);
    const end = byteOffset + length;
    const baseRanges = clip(baseData, byteOffset, end, cursors.base);
    const changes = clip(changed, byteOffset, end, cursors.changed);
    const keepRanges = clip(keep, byteOffset, end, cursors.keep);
    const keepText = sliceText(keepRanges, byteOffset);
    const baseBlock = changes.length === 0 && keepText === sliceText(clip(baseKeep, byteOffset, end, cursors.baseKeep), byteOffset);
    const patches: BlockContent['patches'] = [];
    for (let i = 0; i < changes.length; i += 2) patches.push({ byteOffset: changes[i]!, data: overlay.read(changes[i]!, changes[i + 1]!) });
    yield { byteOffset, length, baseRanges, patches, index, keepRanges, keepText, baseBlock };
  }
}

/** The bytes of a Block as the output holds them: the kept ranges read through the overlay, zeros elsewhere. */
function readKept(overlay: Overlay, block: PlannedBlock): Uint8Array {
  if (block.keepRanges.length === 2 && block.keepRanges[0] === block.byteOffset && block.keepRanges[1] === block.length) {
    return overlay.read(block.byteOffset, block.length);
  }
  const out = new Uint8Array(block.length);
  for (let i = 0; i < block.keepRanges.length; i += 2) {
    out.set(overlay.read(block.keepRanges[i]!, block.keepRanges[i + 1]!), block.keepRanges[i]! - block.byteOffset);
  }
  return out;
}

const isZero = (block: BlockContent): boolean => block.baseRanges.length === 0 && block.patches.length === 0;

/** The slice of absolute [offset, length] pairs inside [start, end). */
function clipPairs(pairs: readonly number[], start: number, end: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < pairs.length; i += 2) {
    const a = Math.max(start, pairs[i]!);
    const b = Math.min(end, pairs[i]! + pairs[i + 1]!);
    if (a < b) out.push(a, b - a);
  }
  return out;
}

/**
 * The Blocks of an output with every changed Block cut into sub-Blocks of
 * `subBlockSize`. The base's Blocks and all-zero Blocks pass whole (kept in
 * the cache by place, or by size). A changed Block's sub-Blocks are read
 * here, one at a time as the encoder asks, and carry their bytes and their
 * SHA-256: devices of a fleet write the same files at the same places, so
 * most sub-Blocks of a changed Block hold the same bytes in every device,
 * and are found in the cache by content; only those with bytes of this
 * device alone are compressed. An all-zero sub-Block passes as zeros.
 */
export function* splitChanged(overlay: Overlay, blocks: Iterable<PlannedBlock>, subBlockSize: number): Generator<PlannedBlock> {
  for (const block of blocks) {
    if (block.baseBlock || isZero(block)) {
      yield block;
      continue;
    }
    const end = block.byteOffset + block.length;
    for (let byteOffset = block.byteOffset; byteOffset < end; byteOffset += subBlockSize) {
      const length = Math.min(subBlockSize, end - byteOffset);
      const keepRanges = clipPairs(block.keepRanges, byteOffset, byteOffset + length);
      const sub: PlannedBlock = { byteOffset, length, baseRanges: [], patches: [], index: block.index, keepRanges, keepText: sliceText(keepRanges, byteOffset), baseBlock: false };
      const data = keepRanges.length === 0 ? undefined : readKept(overlay, sub);
      if (data && !allZero(data)) {
        sub.patches.push({ byteOffset, data });
        sub.content = createHash('sha256').update(data).digest('hex');
      }
      yield sub;
    }
  }
}

/** The cache key of a Block that may be reused, or undefined. */
function cacheKey(block: PlannedBlock): BlockKey | undefined {
  if (isZero(block)) return { byteOffset: 0, length: block.length, keep: 'zero' };
  if (block.content !== undefined) return { content: block.content, byteOffset: 0, length: block.length, keep: `sha256:${block.content}` };
  return block.baseBlock ? { index: block.index, byteOffset: block.byteOffset, length: block.length, keep: block.keepText } : undefined;
}

/** Lookup and store for encodeXz and encodeGzip, counting what happens for OutputStats. */
function reuseHooks(cache: BlockCache | undefined, stats: OutputStats) {
  return {
    lookup(block: PlannedBlock): Promise<StoredBlock | undefined> | undefined {
      const key = cache && cacheKey(block);
      if (!key) return undefined;
      return cache!.get(key);
    },
    store(block: PlannedBlock, encoded: StoredBlock): void {
      stats.encoded++;
      stats.encodedBytes += block.length;
      if (block.content !== undefined) stats.subBlocksEncoded++;
      const key = cache && cacheKey(block);
      if (key) cache!.put(key, encoded);
    },
  };
}

/** Counts the Blocks of an output as the encoder takes them. */
function* counted(blocks: Iterable<PlannedBlock>, stats: OutputStats): Generator<PlannedBlock> {
  for (const block of blocks) {
    stats.blocks++;
    if (block.content !== undefined) stats.subBlocks++;
    yield block;
  }
}

const gzipAsync = promisify(gzip);

/**
 * gzip members, `threads` compressing at a time; an all-zero member is
 * compressed once, base members come from the cache by place, members read
 * with their SHA-256 (splitChanged) by content.
 */
async function* encodeGzip(layout: ImageLayout, members: Iterable<PlannedBlock>, level: number, threads: number, hooks: ReturnType<typeof reuseHooks>): AsyncGenerator<Uint8Array> {
  const zeroMembers = new Map<number, Promise<StoredBlock>>();
  const { overlay } = layout;
  const fresh = async (block: PlannedBlock): Promise<StoredBlock> => {
    const member = await gzipAsync(block.content !== undefined ? block.patches[0]!.data : readKept(overlay, block), { level });
    const stored = { pieces: [member], unpaddedSize: member.length, uncompressedSize: block.length };
    hooks.store(block, stored);
    return stored;
  };
  const reusedOrFresh = (block: PlannedBlock): Promise<StoredBlock> => {
    const found = hooks.lookup(block);
    return found ? found.then((stored) => stored ?? fresh(block)) : fresh(block);
  };
  const compress = (block: PlannedBlock): Promise<StoredBlock> => {
    if (!isZero(block)) return reusedOrFresh(block);
    let zero = zeroMembers.get(block.length);
    if (!zero) {
      zero = reusedOrFresh(block);
      zeroMembers.set(block.length, zero);
    }
    return zero;
  };
  const inFlight: Promise<StoredBlock>[] = [];
  const iterator = members[Symbol.iterator]();
  let next = iterator.next();
  while (!next.done || inFlight.length > 0) {
    while (!next.done && inFlight.length < threads * 2) {
      const promise = compress(next.value);
      promise.catch(() => undefined);
      inFlight.push(promise);
      next = iterator.next();
    }
    yield* (await inFlight.shift()!).pieces;
  }
}

/** The raw image with free space as zeros: the kept ranges of each chunk read through the overlay. */
function* rawKeptChunks(layout: ImageLayout, chunkSize: number): Generator<Uint8Array> {
  for (const block of planBlocks(layout, chunkSize)) yield readKept(layout.overlay, block);
}

async function* rawChunks(overlay: Overlay, chunkSize: number): AsyncGenerator<Uint8Array> {
  for (let position = 0; position < overlay.size; position += chunkSize) {
    yield overlay.read(position, Math.min(chunkSize, overlay.size - position));
  }
}

/**
 * The image in `format` as a byte stream with backpressure: nothing is
 * read or compressed ahead of what the consumer takes, beyond one or two
 * Blocks per thread. `layout` is called when the first byte is wanted (after mounted
 * volumes are flushed). With `layout.cache`, the Blocks of a compressed
 * output that are still the base's are taken from the cache and stored there
 * (PlannedBlock.baseBlock); the others are compressed.
 */
export function createOutputStream(layout: () => Promise<ImageLayout>, format: OutputFormat, options: CompressOptions & { chunkSize?: number } = {}): Readable {
  const threads = checkThreads(options.threads ?? defaultThreads());
  const level = format === 'img' ? 0 : checkLevel(format, options.level ?? defaultLevel(format));
  async function* bytes(): AsyncGenerator<Uint8Array> {
    const resolved = await layout();
    if (format === 'img') {
      if (resolved.keep) yield* rawKeptChunks(resolved, options.chunkSize ?? 1 << 20);
      else yield* rawChunks(resolved.overlay, options.chunkSize ?? 1 << 20);
      return;
    }
    if (format === 'zstd') {
      // zstd frames are not kept in the block cache (yet): each output compresses its frames.
      yield* encodeZstd(resolved.basePath, planBlocks(resolved, zstdFrameSize(level)), { level, threads });
      return;
    }
    const blockSize = format === 'xz' ? xzBlockSize(level) : GZIP_MEMBER_SIZE;
    const cache =
      resolved.cache && options.blockCache !== false
        ? new BlockCache(resolved.cache.dir, resolved.cache.baseKey, {
            format,
            level,
            blockSize,
            check: format === 'xz' ? XZ_CHECK.crc64 : 0,
            freeSpace: resolved.keep ? 'zero' : 'keep',
          })
        : undefined;
    const stats: OutputStats = { blocks: 0, reused: 0, encoded: 0, encodedBytes: 0, subBlocks: 0, subBlocksEncoded: 0, damaged: 0 };
    const hooks = reuseHooks(cache, stats);
    // Without the cache, nothing is gained by cutting: changed Blocks stay whole, as `xz -T` makes them.
    const planned = planBlocks(resolved, blockSize);
    const blocks = counted(cache ? splitChanged(resolved.overlay, planned, format === 'xz' ? xzSubBlockSize(level) : blockSize) : planned, stats);
    try {
      if (format === 'xz') yield* encodeXz(resolved.basePath, blocks, { level, threads, reuse: hooks });
      else yield* encodeGzip(resolved, blocks, level, threads, hooks);
      // Entries go in place before the output counts as done: the next device finds them.
      await cache?.flush();
    } finally {
      stats.damaged = cache?.stats.damaged ?? 0;
    }
    stats.reused = stats.blocks - stats.encoded;
    options.onStats?.(stats);
  }
  return Readable.from(bytes(), { objectMode: false });
}

/**
 * Writes a stream to `outPath` atomically: into a temporary file beside it,
 * renamed into place only when complete. A failure leaves no output.
 */
export async function writeAtomically(stream: Readable, outPath: string, options: { sync?: boolean; signal?: AbortSignal } = {}): Promise<void> {
  throwIfAborted(options.signal, `saving ${outPath}`);
  // Partial files of crashed runs in this directory go first; ours is named after this process.
  removeStalePartials(dirname(outPath));
  const temporary = join(dirname(outPath), partialName(basename(outPath)));
  try {
    await pipeline(stream, createWriteStream(temporary, { flags: 'wx', mode: 0o644 }), ...(options.signal ? [{ signal: options.signal }] : []));
    if (options.sync) {
      const handle = await open(temporary, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    throwIfAborted(options.signal, `saving ${outPath}`);
    await rename(temporary, outPath);
  } catch (error) {
    stream.destroy();
    await unlink(temporary).catch(() => undefined);
    throwIfAborted(options.signal, `saving ${outPath}`);
    if (error instanceof PiimgError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${outPath}: ${(error as Error).message}`, { path: outPath }, { cause: error });
  }
}
