import { randomBytes } from 'node:crypto';
import { closeSync, constants, copyFileSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFully } from '../device/file.js';
import type { Overlay } from '../device/overlay.js';
import { PiimgError } from '../errors.js';
import type { Progress } from './source.js';

const COPY_BLOCK = 1 << 20;
const SPARSE_BLOCK = 64 * 1024;
const ZERO_BLOCK = Buffer.alloc(SPARSE_BLOCK);

/**
 * Copies a file keeping holes: 64 KiB blocks of zeros are not written, and
 * the length is set at the end, so a sparse base gives a sparse copy.
 */
export function sparseCopy(fromPath: string, toFd: number, size: number, onProgress?: (progress: Progress) => void): void {
  const fromFd = openSync(fromPath, 'r');
  const buffer = Buffer.allocUnsafe(COPY_BLOCK);
  try {
    for (let position = 0; position < size; position += COPY_BLOCK) {
      const length = Math.min(COPY_BLOCK, size - position);
      let filled = 0;
      while (filled < length) {
        const count = readSync(fromFd, buffer, filled, length - filled, position + filled);
        if (count === 0) throw new PiimgError('E_TRUNCATED', `${fromPath} changed size while being copied`, { path: fromPath });
        filled += count;
      }
      for (let start = 0; start < length; start += SPARSE_BLOCK) {
        const block = buffer.subarray(start, Math.min(start + SPARSE_BLOCK, length));
        if (block.length !== SPARSE_BLOCK || !block.equals(ZERO_BLOCK)) writeFully(toFd, block, position + start);
      }
      onProgress?.({ phase: 'save', bytesDone: position + length, bytesTotal: size });
    }
    ftruncateSync(toFd, size);
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
export function saveOverlay(basePath: string, overlay: Overlay, outPath: string, options: SaveOptions = {}): SaveResult {
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
    if (!reflinked) sparseCopy(basePath, fd, overlay.size, options.onProgress);
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
