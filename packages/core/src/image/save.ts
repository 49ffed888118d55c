import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Overlay } from '../device/overlay.js';
import { PiimgError } from '../errors.js';
import type { DataMap } from './datamap.js';
import type { Progress } from './source.js';

const COPY_BUFFER = 8 << 20;

async function readFullyAt(handle: FileHandle, buffer: Buffer, length: number, position: number, path: string): Promise<void> {
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new PiimgError('E_TRUNCATED', `${path} changed size while being copied`, { path });
    filled += bytesRead;
  }
}

async function writeFullyAt(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Copies the given ranges of a file into `to` at the same offsets and sets
 * the length to `size`: what lies outside the ranges stays a hole. Reads run
 * one block ahead of writes (two buffers on the thread pool), so reading and
 * writing overlap.
 */
export async function copyRanges(fromPath: string, to: FileHandle, size: number, ranges: DataMap, onProgress?: (progress: Progress) => void): Promise<void> {
  const from = await open(fromPath, 'r');
  const buffers = [Buffer.allocUnsafe(COPY_BUFFER), Buffer.allocUnsafe(COPY_BUFFER)];
  const writes: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  const bytesTotal = ranges.reduce((sum, r) => sum + r.length, 0);
  let bytesDone = 0;
  let turn = 0;
  try {
    await to.truncate(size);
    for (const range of ranges) {
      for (let position = range.byteOffset; position < range.byteOffset + range.length; ) {
        const length = Math.min(COPY_BUFFER, range.byteOffset + range.length - position);
        const slot = turn++ & 1;
        await writes[slot]; // this buffer's previous write must be done before it is refilled
        await readFullyAt(from, buffers[slot]!, length, position, fromPath);
        writes[slot] = writeFullyAt(to, buffers[slot]!, length, position);
        position += length;
        bytesDone += length;
        onProgress?.({ phase: 'save', bytesDone, bytesTotal });
      }
    }
    await Promise.all(writes);
  } finally {
    await Promise.allSettled(writes);
    await from.close();
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
  dataMap: () => DataMap,
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
    if (!reflinked) await copyRanges(basePath, handle, overlay.size, dataMap(), options.onProgress);
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
