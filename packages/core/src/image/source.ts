import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, ftruncateSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { PiimgError } from '../errors.js';
import { kindOf, writeFully } from '../device/file.js';
import { throwIfAborted } from './abort.js';
import { partialName, removeStalePartials } from './partial.js';
import { fileIdentityKey, readFileFact, writeFileFact } from './identity.js';
import { defaultCacheDir, sniffFile, type Compression } from './format.js';
import { cacheEntryMapPath, DATA_MAP_BLOCK, DataMapBuilder, writeDataMap, type DataMap } from './datamap.js';

export { defaultCacheDir, sniffCompression, type Compression } from './format.js';

/** A progress report: the phase and bytes done (no total while decompressing). */
export interface Progress {
  phase: 'hash' | 'decompress' | 'save';
  bytesDone: number;
  bytesTotal?: number;
}

/** How a base image is opened and cached. */
export interface SourceOptions {
  /** Where decompressed bases are kept (default: PIIMG_CACHE_DIR or the user's cache directory). */
  cacheDir?: string;
  /** Called as the image is hashed and decompressed. */
  onProgress?: (progress: Progress) => void;
  /** Refuse to decompress more than this many bytes (default 64 GiB): a guard against decompression bombs. */
  maxImageSize?: number;
  /** Stops decompression; the partial cache file is removed and the call rejects with E_ABORTED. */
  signal?: AbortSignal;
}

/** Default limit of a decompressed image: 64 GiB. */
export const DEFAULT_MAX_IMAGE_SIZE = 64 * 1024 ** 3;

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
    case 'zip':
      return openZipImage(path);
    case 'zstd': {
      const { zstdStreamChunks } = await import('./zstd/decode.js');
      return zstdStreamChunks(path);
    }
  }
}

/**
 * The one `.img` entry of a zip archive, as a stream. yauzl reads the central
 * directory (zip64 included) and checks each entry's sizes; entries are read
 * one at a time (`lazyEntries`), so a huge directory is never held whole
 * (the error keeps the first 20 names).
 * Ref: PKWARE APPNOTE 4.3.
 */
async function openZipImage(path: string): Promise<AsyncIterable<Uint8Array>> {
  const yauzl = interop(await import('yauzl'));
  const bad = (message: string, cause?: unknown, entries?: string[]): PiimgError =>
    new PiimgError('E_BAD_ARCHIVE', `${path} ${message}`, entries ? { path, entries } : { path }, cause === undefined ? undefined : { cause });
  let zip: import('yauzl').ZipFile;
  try {
    zip = await new Promise((resolve, reject) =>
      yauzl.open(path, { lazyEntries: true, autoClose: false }, (error, file) => (error ? reject(error) : resolve(file))),
    );
  } catch (error) {
    throw bad(`is not a readable zip archive: ${(error as Error).message}`, error);
  }
  try {
    const names: string[] = [];
    const images: import('yauzl').Entry[] = [];
    await new Promise<void>((resolve, reject) => {
      zip.on('entry', (entry: import('yauzl').Entry) => {
        if (names.length < 20) names.push(entry.fileName);
        if (!entry.fileName.endsWith('/') && /\.img$/i.test(entry.fileName)) images.push(entry);
        zip.readEntry();
      });
      zip.once('end', () => resolve());
      // Kept after the listing: a later 'error' without a listener would crash the process.
      zip.on('error', reject);
      zip.readEntry();
    }).catch((error: unknown) => {
      throw bad(`is not a readable zip archive: ${(error as Error).message}`, error);
    });
    if (images.length !== 1) {
      throw bad(images.length === 0 ? 'holds no .img file' : `holds several .img files: ${images.map((e) => e.fileName).join(', ')}`, undefined, names);
    }
    const stream = await new Promise<import('node:stream').Readable>((resolve, reject) =>
      zip.openReadStream(images[0]!, (error, entryStream) => (error ? reject(error) : resolve(entryStream))),
    ).catch((error: unknown) => {
      throw bad(`cannot read ${images[0]!.fileName}: ${(error as Error).message}`, error);
    });
    stream.once('close', () => zip.close());
    return stream;
  } catch (error) {
    zip.close();
    throw error;
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
async function decompressStream(
  path: string,
  fd: number,
  compression: Compression,
  maxImageSize: number,
  cacheDir: string,
  options: { onProgress?: (progress: Progress) => void; signal?: AbortSignal },
): Promise<{ size: number; dataMap: DataMap }> {
  const writer = new SparseWriter(fd);
  let bytesDone = 0;
  const stream = await openDecompressed(path, compression);
  try {
    for await (const chunk of stream) {
      bytesDone += chunk.length;
      if (bytesDone > maxImageSize) {
        throw new PiimgError('E_LIMIT', `${path} decompresses to more than ${maxImageSize} bytes`, { path, maxImageSize });
      }
      throwIfAborted(options.signal, `decompressing ${path}`);
      // A failed write is the cache's problem, not the compressed file's.
      try {
        writer.push(chunk);
      } catch (error) {
        throw cacheWriteError(error, cacheDir, path);
      }
      options.onProgress?.({ phase: 'decompress', bytesDone });
    }
  } catch (error) {
    if (error instanceof PiimgError) throw error;
    throw new PiimgError('E_BAD_COMPRESSED', `${path} is not a valid ${compression} file: ${(error as Error).message}`, { path, compression }, { cause: error });
  }
  try {
    return writer.finish();
  } catch (error) {
    throw cacheWriteError(error, cacheDir, path);
  }
}

/** The raw image behind a possibly compressed base. */
export interface ResolvedSource {
  /** The raw image to open: the file itself, or the decompressed copy in the cache. */
  rawPath: string;
  compression?: Compression;
  /** True when a cached decompressed copy was reused. */
  cached: boolean;
}

/** ENOSPC (or E_IO) naming the cache directory and how to move it. */
function cacheWriteError(error: unknown, cacheDir: string, path: string): PiimgError {
  if (error instanceof PiimgError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const where = `the cache directory ${cacheDir} (set PIIMG_CACHE_DIR to use another)`;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new PiimgError('ENOSPC', `no space left in ${where} while decompressing ${path}`, { path, cacheDir }, { cause: error });
  }
  return new PiimgError('E_IO', `cannot write ${where} while decompressing ${path}: ${(error as Error).message}`, { path, cacheDir }, { cause: error });
}

/**
 * Returns a raw image path for `path`. A compressed base is decompressed once
 * into the cache, keyed by the SHA-256 of the compressed file, so many devices
 * reuse one raw base. The cache entry appears atomically (temporary file, then rename).
 */
export async function resolveSource(path: string, options: SourceOptions = {}): Promise<ResolvedSource> {
  let stats: Stats | undefined;
  try {
    stats = statSync(path, { throwIfNoEntry: false });
  } catch (error) {
    // A file where a directory of the path should be (ENOTDIR) or a symlink loop: no image there.
    throw new PiimgError('E_NOT_FOUND', `no such image: ${path} (${(error as NodeJS.ErrnoException).code})`, { path }, { cause: error });
  }
  if (!stats) throw new PiimgError('E_NOT_FOUND', `no such image: ${path}`, { path });
  // An image is read at any offset: a FIFO or socket would block the first read for good
  // (a signal cannot stop a thread in open(2)), a directory or device fails in other ways.
  if (!stats.isFile()) throw new PiimgError('E_BAD_IMAGE', `${path} is not an image file: it is ${kindOf(stats)}`, { path, kind: kindOf(stats) });
  const compression = sniffFile(path);
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

  throwIfAborted(options.signal, `decompressing ${path}`);
  try {
    mkdirSync(cacheDir, { recursive: true });
  } catch (error) {
    throw cacheWriteError(error, cacheDir, path);
  }
  // Partial entries of runs that were killed go first: they can be gigabytes.
  removeStalePartials(cacheDir);
  const partial = join(cacheDir, partialName(`${key}.img`));
  let fd: number;
  try {
    fd = openSync(partial, 'wx', 0o644);
  } catch (error) {
    throw cacheWriteError(error, cacheDir, path);
  }
  const maxImageSize = options.maxImageSize ?? DEFAULT_MAX_IMAGE_SIZE;
  try {
    // Multi-Block .xz: Blocks decoded in parallel, straight into the file.
    let parallel: { size: number; dataMap: DataMap } | undefined;
    if (compression === 'xz') {
      throwIfAborted(options.signal, `decompressing ${path}`);
      try {
        parallel = await (await import('./xz/decode.js')).decodeXzBlocks(path, fd, {
          maxImageSize,
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
        });
      } catch (error) {
        throw cacheWriteError(error, cacheDir, path);
      }
    }
    const { size, dataMap } = parallel ?? (await decompressStream(path, fd, compression, maxImageSize, cacheDir, options));
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
