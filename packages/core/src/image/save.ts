import { randomBytes } from 'node:crypto';
import { closeSync, constants, copyFileSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFully } from '../device/file.js';
import type { Overlay } from '../device/overlay.js';
import { PiimgError } from '../errors.js';
import type { DataMap } from './datamap.js';
import type { Progress } from './source.js';

const COPY_BUFFER = 8 << 20;

/**
 * Copies the given ranges of a file into `toFd` at the same offsets and sets
 * the length to `size`: what lies outside the ranges stays a hole.
 */
export function copyRanges(fromPath: string, toFd: number, size: number, ranges: DataMap, onProgress?: (progress: Progress) => void): void {
  const fromFd = openSync(fromPath, 'r');
  const buffer = Buffer.allocUnsafe(COPY_BUFFER);
  const bytesTotal = ranges.reduce((sum, r) => sum + r.length, 0);
  let bytesDone = 0;
  try {
    ftruncateSync(toFd, size);
    for (const range of ranges) {
      for (let position = range.byteOffset; position < range.byteOffset + range.length; ) {
        const length = Math.min(COPY_BUFFER, range.byteOffset + range.length - position);
        let filled = 0;
        while (filled < length) {
          const count = readSync(fromFd, buffer, filled, length - filled, position + filled);
          if (count === 0) throw new PiimgError('E_TRUNCATED', `${fromPath} changed size while being copied`, { path: fromPath });
          filled += count;
        }
        writeFully(toFd, buffer.subarray(0, length), position);
        position += length;
        bytesDone += length;
        onProgress?.({ phase: 'save', bytesDone, bytesTotal });
      }
    }
  } finally {
    closeSync(fromFd);
  }
}

export interface SaveOptions {
  /**
   * fsync the output before it is renamed into place (default false). The
   * rename alone already guarantees that a crash of the process never leaves a
   * half-written output; sync adds durability across a power loss.
   */
  sync?: boolean;
  onProgress?: (progress: Progress) => void;
}

export interface SaveResult {
  path: string;
  /** Bytes of changed chunks written over the copy of the base. */
  changedBytes: number;
  /** True when the base was cloned by reflink (copy-on-write filesystems: btrfs, XFS, APFS via clonefile). */
  reflinked: boolean;
}

/**
 * Writes base + overlay to `outPath` atomically: a temporary file in the same
 * directory is filled (reflink clone of the base where the filesystem offers
 * one, a sparse copy otherwise), the changed chunks are written over it, and
 * only then is it renamed into place. A failure leaves no output behind.
 */
export function saveOverlay(
  basePath: string,
  overlay: Overlay,
  outPath: string,
  dataMap: () => DataMap,
  options: SaveOptions = {},
): SaveResult {
  const temporary = join(dirname(outPath), `.${basename(outPath)}.${randomBytes(6).toString('hex')}.piimg-partial`);
  let fd: number | undefined;
  try {
    let reflinked = false;
    try {
      copyFileSync(basePath, temporary, constants.COPYFILE_FICLONE_FORCE);
      reflinked = true;
    } catch {
      // No reflink here (ext4, tmpfs, NTFS...): a sparse copy it is.
      try {
        unlinkSync(temporary);
      } catch {
        // Nothing was created.
      }
    }
    fd = openSync(temporary, reflinked ? 'r+' : 'wx', 0o644);
    if (!reflinked) copyRanges(basePath, fd, overlay.size, dataMap(), options.onProgress);
    let changedBytes = 0;
    for (const chunk of overlay.changedChunks()) {
      writeFully(fd, chunk.data, chunk.byteOffset);
      changedBytes += chunk.data.length;
    }
    if (options.sync ?? false) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temporary, outPath);
    return { path: outPath, changedBytes, reflinked };
  } catch (error) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // Already closed.
      }
    }
    try {
      unlinkSync(temporary);
    } catch {
      // Never created.
    }
    if (error instanceof PiimgError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${outPath}: ${(error as Error).message}`, { path: outPath }, { cause: error });
  }
}
