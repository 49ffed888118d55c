import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Overlay } from '../device/overlay.js';
import { PiimgError } from '../errors.js';
import { copyRanges } from './copy.js';
import { cachedDataMap, rememberDataMap } from './datamap.js';
import type { Progress } from './source.js';

/** Async, unlike device/file.ts writeFully: a large overlay must not block the event loop. */
async function writeFullyAt(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done);
    done += bytesWritten;
  }
}

export interface SaveOptions {
  /**
   * fsync the output before it is renamed into place. Default false for a new
   * file: the rename alone already guarantees that a crash of the process never
   * leaves a half-written output; sync adds durability across a power loss.
   * Default true for an in-place save, which changes the base itself.
   */
  sync?: boolean;
  onProgress?: (progress: Progress) => void;
  /**
   * Copy the base with worker threads only from this many bytes on (default
   * PARALLEL_COPY_MIN). A caller already on a worker thread of its own passes
   * Infinity: copying on that thread saves starting two more per save.
   */
  parallelCopyMin?: number;
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
export async function saveOverlay(
  basePath: string,
  overlay: Overlay,
  outPath: string,
  /** Where the base's data map is cached: read when there is no reflink; one found while copying is stored there. */
  cacheDir: string,
  options: SaveOptions = {},
): Promise<SaveResult> {
  const temporary = join(dirname(outPath), `.${basename(outPath)}.${randomBytes(6).toString('hex')}.piimg-partial`);
  let handle: FileHandle | undefined;
  try {
    let reflinked = false;
    try {
      await copyFile(basePath, temporary, constants.COPYFILE_FICLONE_FORCE);
      reflinked = true;
    } catch {
      // No reflink here (ext4, tmpfs, NTFS...): copy the data ranges.
      await unlink(temporary).catch(() => undefined);
    }
    handle = await open(temporary, reflinked ? 'r+' : 'wx', 0o644);
    if (!reflinked) {
      // Without a map of the base yet, the copy finds one on the way.
      const slot = cachedDataMap(basePath, cacheDir);
      const found = await copyRanges(basePath, handle, overlay.size, slot.map, {
        onProgress: options.onProgress,
        ...(options.parallelCopyMin !== undefined ? { parallelMin: options.parallelCopyMin } : {}),
      });
      if (!slot.map) rememberDataMap(cacheDir, slot, found);
    }
    let changedBytes = 0;
    for (const chunk of overlay.changedChunks()) {
      await writeFullyAt(handle, Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.length), chunk.data.length, chunk.byteOffset);
      changedBytes += chunk.data.length;
    }
    if (options.sync ?? false) await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporary, outPath);
    return { path: outPath, changedBytes, reflinked };
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await unlink(temporary).catch(() => undefined);
    if (error instanceof PiimgError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${outPath}: ${(error as Error).message}`, { path: outPath }, { cause: error });
  }
}
