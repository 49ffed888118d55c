import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, ftruncateSync, mkdirSync, openSync, readSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { homedir, platform } from 'node:os';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { PiimgError } from '../errors.js';
import { writeFully } from '../device/file.js';
import { fileIdentityKey, readFileFact, writeFileFact } from './identity.js';
import { cacheEntryMapPath, DATA_MAP_BLOCK, DataMapBuilder, writeDataMap, type DataMap } from './datamap.js';

export type Compression = 'xz' | 'gzip' | 'zip';

export interface Progress {
  phase: 'hash' | 'decompress' | 'save';
  bytesDone: number;
  bytesTotal?: number;
}

export interface SourceOptions {
  /** Where decompressed bases are kept (default: PIIMG_CACHE_DIR or the user's cache directory). */
  cacheDir?: string;
  onProgress?: (progress: Progress) => void;
  /** Refuse to decompress more than this many bytes (default 64 GiB): a guard against decompression bombs. */
  maxImageSize?: number;
}

export const DEFAULT_MAX_IMAGE_SIZE = 64 * 1024 ** 3;

/** Recognises a compressed container by its signature, never by the file name. */
export function sniffCompression(head: Uint8Array): Compression | undefined {
  const starts = (...bytes: number[]): boolean => bytes.every((byte, i) => head[i] === byte);
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  if (starts(0x1f, 0x8b)) return 'gzip';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'zip';
  return undefined;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PIIMG_CACHE_DIR) return env.PIIMG_CACHE_DIR;
  switch (platform()) {
    case 'win32':
      return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'piimg', 'Cache');
    case 'darwin':
      return join(homedir(), 'Library', 'Caches', 'piimg');
    default:
      return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'piimg');
  }
}

function readHead(path: string, length: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(length);
    const count = readSync(fd, head, 0, length, 0);
    return head.subarray(0, count);
  } finally {
    closeSync(fd);
  }
}

async function hashFile(path: string, onProgress?: (progress: Progress) => void): Promise<string> {
  const hash = createHash('sha256');
  const bytesTotal = statSync(path).size;
  let bytesDone = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytesDone += (chunk as Buffer).length;
    onProgress?.({ phase: 'hash', bytesDone, bytesTotal });
  }
  return hash.digest('hex');
}

/** CommonJS packages imported from ESM: named exports may only exist on `default`. */
function interop<T>(module: T & { default?: T }): T {
  return (module.default ?? module) as T;
}

/**
 * Opens the decompressed stream. Module loading happens before any data is
 * read, so a failure here is never mistaken for a corrupt file.
 */
async function openDecompressed(path: string, compression: Compression): Promise<AsyncIterable<Uint8Array>> {
  switch (compression) {
    case 'gzip':
      return createReadStream(path).pipe(createGunzip());
    case 'xz': {
      const { xzStreamChunks } = await import('./xz/decode.js');
      return xzStreamChunks(path);
    }
    case 'zip': {
      const unzipper = interop(await import('unzipper'));
      let directory: Awaited<ReturnType<typeof unzipper.Open.file>>;
      try {
        directory = await unzipper.Open.file(path);
      } catch (error) {
        throw new PiimgError('E_BAD_ARCHIVE', `${path} is not a readable zip archive: ${(error as Error).message}`, { path }, { cause: error });
      }
      const images = directory.files.filter((file) => file.type === 'File' && /\.img$/i.test(file.path));
      if (images.length !== 1) {
        throw new PiimgError(
          'E_BAD_ARCHIVE',
          images.length === 0 ? `${path} holds no .img file` : `${path} holds several .img files: ${images.map((f) => f.path).join(', ')}`,
          { path, entries: directory.files.map((file) => file.path).slice(0, 20) },
        );
      }
      return images[0]!.stream();
    }
  }
}

const SPARSE_BLOCK = DATA_MAP_BLOCK;

/**
 * Writes a stream into a file at increasing positions, leaving all-zero
 * 64 KiB blocks as holes, so a mostly empty image stays small on disk, and
 * records where the data is (the data map that makes later saves fast).
 */
export class SparseWriter {
  private readonly staging = Buffer.alloc(16 * SPARSE_BLOCK);
  private readonly map = new DataMapBuilder();
  private staged = 0;
  position = 0;

  constructor(private readonly fd: number) {}

  push(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      const count = Math.min(this.staging.length - this.staged, chunk.length - offset);
      this.staging.set(chunk.subarray(offset, offset + count), this.staged);
      this.staged += count;
      offset += count;
      if (this.staged === this.staging.length) this.drain();
    }
  }

  private drain(): void {
    for (let start = 0; start < this.staged; start += SPARSE_BLOCK) {
      const length = Math.min(SPARSE_BLOCK, this.staged - start);
      const block = this.staging.subarray(start, start + length);
      if (this.map.add(this.position + start, block)) writeFully(this.fd, block, this.position + start);
    }
    this.position += this.staged;
    this.staged = 0;
  }

  /** Flushes what is staged and sets the file length (trailing holes included). */
  finish(): { size: number; dataMap: DataMap } {
    this.drain();
    ftruncateSync(this.fd, this.position);
    return { size: this.position, dataMap: this.map.ranges };
  }
}

/** Decompresses `path` as one stream into `fd`, leaving zeros as holes. */
async function decompressStream(path: string, fd: number, compression: Compression, maxImageSize: number, onProgress?: (progress: Progress) => void): Promise<{ size: number; dataMap: DataMap }> {
  const writer = new SparseWriter(fd);
  let bytesDone = 0;
  const stream = await openDecompressed(path, compression);
  try {
    for await (const chunk of stream) {
      bytesDone += chunk.length;
      if (bytesDone > maxImageSize) {
        throw new PiimgError('E_LIMIT', `${path} decompresses to more than ${maxImageSize} bytes`, { path, maxImageSize });
      }
      writer.push(chunk);
      onProgress?.({ phase: 'decompress', bytesDone });
    }
  } catch (error) {
    if (error instanceof PiimgError) throw error;
    throw new PiimgError('E_BAD_COMPRESSED', `${path} is not a valid ${compression} file: ${(error as Error).message}`, { path, compression }, { cause: error });
  }
  return writer.finish();
}

export interface ResolvedSource {
  /** The raw image to open: the file itself, or the decompressed copy in the cache. */
  rawPath: string;
  compression?: Compression;
  /** True when a cached decompressed copy was reused. */
  cached: boolean;
}

/**
 * Returns a raw image path for `path`. A compressed base is decompressed once
 * into the cache, keyed by the SHA-256 of the compressed file, so many devices
 * reuse one raw base. The cache entry appears atomically (temporary file, then rename).
 */
export async function resolveSource(path: string, options: SourceOptions = {}): Promise<ResolvedSource> {
  if (!existsSync(path)) throw new PiimgError('E_NOT_FOUND', `no such image: ${path}`, { path });
  const compression = sniffCompression(readHead(path, 8));
  if (!compression) return { rawPath: path, cached: false };

  const cacheDir = options.cacheDir ?? defaultCacheDir();
  // Hashing a large .xz costs seconds: the hash is remembered for the file as it is now.
  const identity = fileIdentityKey(path);
  const known = readFileFact(cacheDir, 'sources', identity);
  const remembered = typeof known === 'string' && /^[0-9a-f]{64}$/.test(known);
  const key = remembered ? known : await hashFile(path, options.onProgress);
  const rawPath = join(cacheDir, `${key}.img`);
  if (existsSync(rawPath)) {
    if (!remembered) writeFileFact(cacheDir, 'sources', identity, key);
    return { rawPath, compression, cached: true };
  }

  mkdirSync(cacheDir, { recursive: true });
  const partial = join(cacheDir, `${key}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  const fd = openSync(partial, 'wx', 0o644);
  const maxImageSize = options.maxImageSize ?? DEFAULT_MAX_IMAGE_SIZE;
  try {
    // Multi-Block .xz: Blocks decoded in parallel, straight into the file.
    const parallel =
      compression === 'xz'
        ? await (await import('./xz/decode.js')).decodeXzBlocks(path, fd, { maxImageSize, ...(options.onProgress ? { onProgress: options.onProgress } : {}) })
        : undefined;
    const { size, dataMap } = parallel ?? (await decompressStream(path, fd, compression, maxImageSize, options.onProgress));
    if (size === 0) {
      throw new PiimgError('E_BAD_COMPRESSED', `${path} decompresses to nothing`, { path, compression });
    }
    closeSync(fd);
    renameSync(partial, rawPath);
    try {
      writeDataMap(cacheEntryMapPath(rawPath), dataMap);
    } catch {
      // Without its map the entry still works; the first save scans it.
    }
    writeFileFact(cacheDir, 'sources', identity, key);
  } catch (error) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
    try {
      unlinkSync(partial);
    } catch {
      // Nothing to remove.
    }
    throw error;
  }
  return { rawPath, compression, cached: false };
}
