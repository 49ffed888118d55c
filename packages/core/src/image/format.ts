import { closeSync, openSync, readSync } from 'node:fs';
import { homedir, platform } from 'node:os';
import { join } from 'node:path';
import { PiimgError } from '../errors.js';

// Formats known by a name or a signature, and where bases are cached: what a
// program needs before it opens an image (see early.ts), without loading the
// encoders and decoders.

/** Containers piimg decompresses, recognised by signature. */
export type Compression = 'xz' | 'gzip' | 'zip' | 'zstd';

/** Recognises a compressed container by its signature, never by the file name. */
export function sniffCompression(head: Uint8Array): Compression | undefined {
  const starts = (...bytes: number[]): boolean => bytes.every((byte, i) => head[i] === byte);
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  if (starts(0x1f, 0x8b)) return 'gzip';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'zip';
  // zstd frame magic 0xFD2FB528, little-endian (RFC 8878 §3.1.1).
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  return undefined;
}

/** The container the file at `path` is, by the signature in its first bytes (sniffCompression). */
export function sniffFile(path: string): Compression | undefined {
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(8);
    const count = readSync(fd, head, 0, head.length, 0);
    return sniffCompression(head.subarray(0, count));
  } finally {
    closeSync(fd);
  }
}

/** Where decompressed bases are cached: PIIMG_CACHE_DIR, else the platform's user cache directory. */
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
