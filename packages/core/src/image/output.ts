import { randomBytes } from 'node:crypto';
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
import { PiimgError } from '../errors.js';
import { throwIfAborted } from './abort.js';
import { partialName, removeStalePartials } from './partial.js';
import type { DataMap } from './datamap.js';
import { DEFAULT_XZ_LEVEL, encodeXz, xzBlockSize, type BlockContent } from './xz/encode.js';
import { DEFAULT_ZSTD_LEVEL, encodeZstd, zstdFrameSize } from './zstd/encode.js';

/**
 * Output formats of a whole image: raw, or compressed while it is streamed.
 * `.img.xz` is one .xz Stream of independent Blocks encoded on worker
 * threads (see xz/encode.ts); `.img.gz` is a series of gzip members, each
 * compressed independently on Node's zlib thread pool, as `pigz` does: a
 * concatenation of members is a valid gzip file (RFC 1952 §2.2), which
 * `gzip -dc` and every flasher read. `.img.zst` is a series of independent
 * zstd frames compressed on worker threads (see zstd/encode.ts); concatenated
 * frames are one valid zstd stream (RFC 8878 §3.1).
 */
export type OutputFormat = 'img' | 'xz' | 'gzip' | 'zstd';

/** Every output format: raw, multi-Block xz, gzip members, zstd frames. */
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['img', 'xz', 'gzip', 'zstd'];

/** The format a file name asks for: .xz, .gz, .zst, anything else raw. */
export function formatFromPath(path: string): OutputFormat {
  const name = path.toLowerCase();
  if (name.endsWith('.xz')) return 'xz';
  if (name.endsWith('.gz')) return 'gzip';
  if (name.endsWith('.zst') || name.endsWith('.zstd')) return 'zstd';
  return 'img';
}

/** Parses a format name as users write it: img/raw, xz, gz/gzip, zst/zstd. */
export function parseOutputFormat(name: string): OutputFormat {
  switch (name.toLowerCase()) {
    case 'img':
    case 'raw':
      return 'img';
    case 'xz':
      return 'xz';
    case 'gz':
    case 'gzip':
      return 'gzip';
    case 'zst':
    case 'zstd':
      return 'zstd';
    default:
      throw new PiimgError('E_UNSUPPORTED_FORMAT', `unknown output format '${name}' (formats: img, xz, gz, zst)`, { format: name });
  }
}

/** Compression settings of `save` and `createReadStream`. */
export interface CompressOptions {
  /** Compression level: xz 0-9 (default 6, like `xz`), gzip 1-9 (default 6, like `gzip`), zstd 1-19 (default 3, like `zstd`). */
  level?: number;
  /** Compressing threads (default: one per core). */
  threads?: number;
}

/** gzip member size: large enough that a member's restart of the dictionary costs under 0.1 %. */
export const GZIP_MEMBER_SIZE = 1 << 20;
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

/** The image cut into Blocks of `blockSize`, each with its base ranges and its changed bytes (read from the overlay as each Block is planned). */
export function* planBlocks(layout: ImageLayout, blockSize: number): Generator<BlockContent> {
  const { overlay } = layout;
  const changed = overlay.changedRanges();
  const baseCursor = { index: 0 };
  const changedCursor = { index: 0 };
  for (let byteOffset = 0; byteOffset < overlay.size; byteOffset += blockSize) {
    const length = Math.min(blockSize, overlay.size - byteOffset);
    const baseRanges = clip(layout.baseMap, byteOffset, byteOffset + length, baseCursor);
    const changes = clip(changed, byteOffset, byteOffset + length, changedCursor);
    const patches: BlockContent['patches'] = [];
    for (let i = 0; i < changes.length; i += 2) patches.push({ byteOffset: changes[i]!, data: overlay.read(changes[i]!, changes[i + 1]!) });
    yield { byteOffset, length, baseRanges, patches };
  }
}

const gzipAsync = promisify(gzip);

/** gzip members of GZIP_MEMBER_SIZE bytes, `threads` compressing at a time; an all-zero member is compressed once. */
async function* encodeGzip(layout: ImageLayout, level: number, threads: number): AsyncGenerator<Uint8Array> {
  const zeroMembers = new Map<number, Promise<Buffer>>();
  const { overlay } = layout;
  const compress = (content: BlockContent): Promise<Buffer> => {
    if (content.baseRanges.length === 0 && content.patches.length === 0) {
      let zero = zeroMembers.get(content.length);
      if (!zero) {
        zero = gzipAsync(Buffer.alloc(content.length), { level });
        zeroMembers.set(content.length, zero);
      }
      return zero;
    }
    const data = overlay.read(content.byteOffset, content.length);
    return gzipAsync(data, { level });
  };
  const inFlight: Promise<Buffer>[] = [];
  const iterator = planBlocks(layout, GZIP_MEMBER_SIZE);
  let next = iterator.next();
  while (!next.done || inFlight.length > 0) {
    while (!next.done && inFlight.length < threads * 2) {
      const promise = compress(next.value);
      promise.catch(() => undefined);
      inFlight.push(promise);
      next = iterator.next();
    }
    yield await inFlight.shift()!;
  }
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
 * volumes are flushed).
 */
export function createOutputStream(layout: () => Promise<ImageLayout>, format: OutputFormat, options: CompressOptions & { chunkSize?: number } = {}): Readable {
  const threads = checkThreads(options.threads ?? defaultThreads());
  const level = format === 'img' ? 0 : checkLevel(format, options.level ?? defaultLevel(format));
  async function* bytes(): AsyncGenerator<Uint8Array> {
    const resolved = await layout();
    const source =
      format === 'xz'
        ? encodeXz(resolved.basePath, planBlocks(resolved, xzBlockSize(level)), { level, threads })
        : format === 'gzip'
          ? encodeGzip(resolved, level, threads)
          : format === 'zstd'
            ? encodeZstd(resolved.basePath, planBlocks(resolved, zstdFrameSize(level)), { level, threads })
            : rawChunks(resolved.overlay, options.chunkSize ?? 1 << 20);
    yield* source;
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
