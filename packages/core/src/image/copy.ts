import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { PiimgError } from '../errors.js';
import { DATA_MAP_BLOCK, type DataMap } from './datamap.js';
import type { Progress } from './source.js';

/**
 * Copying the data ranges of a base image into a new file: the slowest step of
 * a save on filesystems without reflinks. Node has neither SEEK_DATA nor a
 * ranged copy_file_range, so data passes through user space, as it does for
 * `cp --sparse=always`. Three measured facts shape this file (figures from
 * `node bench/save.bench.mjs`, Linux 6.x, ext4):
 *
 * - Writes must append. Writing into a file already truncated to its final
 *   size (inside i_size, over holes) took 2.5-3x longer than appending, so
 *   blocks are written strictly in increasing order and the length is set at
 *   the end.
 * - Writes of 1 MiB or more were erratic: on some runs every write took
 *   2.5x longer (the kernel then allocates page-cache folios of that size),
 *   while 128-512 KiB writes stayed steady, as they do for cp (128 KiB).
 *   512 KiB blocks also keep each thread's buffer in its CPU cache.
 * - Writes to one file serialize in the kernel, reads do not. Two threads
 *   take alternate blocks: one reads its next block while the other writes,
 *   and they pass the turn to write in block order through shared memory.
 */
export const COPY_BLOCK = 512 << 10;
/** Below this many bytes the copy runs on the calling thread: starting workers costs ~25 ms. */
export const PARALLEL_COPY_MIN = 64 << 20;
const COPY_THREADS = 2;

export interface CopyOptions {
  onProgress?: (progress: Progress) => void;
  /** Copy with worker threads when at least this many bytes are to be copied. Default PARALLEL_COPY_MIN. */
  parallelMin?: number;
}

/** Blocks of at most COPY_BLOCK bytes, as [offset, length] pairs, in increasing order. */
function splitBlocks(ranges: DataMap): Float64Array {
  let count = 0;
  for (const range of ranges) count += Math.ceil(range.length / COPY_BLOCK);
  const blocks = new Float64Array(count * 2);
  let index = 0;
  for (const range of ranges) {
    for (let position = range.byteOffset; position < range.byteOffset + range.length; position += COPY_BLOCK) {
      blocks[index++] = position;
      blocks[index++] = Math.min(COPY_BLOCK, range.byteOffset + range.length - position);
    }
  }
  return blocks;
}

/** What one copy thread needs; structured-cloned into the worker. */
interface CopyShare {
  fromPath: string;
  toFd: number;
  blocks: Float64Array;
  /** Int32 slots: [0] index of the next block to write, [1] set to 1 when a thread failed. */
  control: SharedArrayBuffer;
  first: number;
  step: number;
  /**
   * When set, blocks are checked for zeros in units of `unitSize` bytes (blocks
   * start at multiples of it): all-zero units are not written (they stay
   * holes) and each unit holding data gets a 1 at its index in `units`.
   */
  units?: SharedArrayBuffer;
  unitSize: number;
}

type FsSync = Pick<typeof import('node:fs'), 'openSync' | 'readSync' | 'writeSync' | 'closeSync'>;

/**
 * One thread's share: blocks first, first + step, ... Reads its block, waits
 * for its turn, writes, passes the turn on. Self-contained: its source text is
 * what each worker runs.
 */
function copyShare(share: CopyShare, fs: FsSync): void {
  const TURN = 0;
  const FAILED = 1;
  const control = new Int32Array(share.control);
  const blocks = share.blocks;
  let largest = 0;
  for (let index = 1; index < blocks.length; index += 2) largest = Math.max(largest, blocks[index]!);
  const buffer = Buffer.allocUnsafe(largest);
  const units = share.units ? new Uint8Array(share.units) : undefined;
  const zeros = Buffer.alloc(units ? share.unitSize : 0);
  const from = fs.openSync(share.fromPath, 'r');
  const writeAll = (start: number, end: number, position: number) => {
    for (let done = start; done < end; ) done += fs.writeSync(share.toFd, buffer, done, end - done, position + done);
  };
  try {
    for (let block = share.first; block < blocks.length / 2; block += share.step) {
      const position = blocks[block * 2]!;
      const length = blocks[block * 2 + 1]!;
      for (let done = 0; done < length; ) {
        const count = fs.readSync(from, buffer, done, length - done, position + done);
        if (count === 0) throw Object.assign(new Error('the base changed size while being copied'), { code: 'E_TRUNCATED' });
        done += count;
      }
      // The other thread usually hands over within microseconds: spin briefly
      // before sleeping, since waking a sleeping thread costs more than that.
      const spinUntil = performance.now() + 0.2;
      for (;;) {
        const turn = Atomics.load(control, TURN);
        if (Atomics.load(control, FAILED) !== 0) return;
        if (turn === block) break;
        if (performance.now() > spinUntil) Atomics.wait(control, TURN, turn, 100);
      }
      if (!units) {
        writeAll(0, length, position);
      } else {
        // Write runs of units that hold data; zero units become holes.
        let runStart = -1;
        for (let start = 0; start < length; start += share.unitSize) {
          const end = Math.min(start + share.unitSize, length);
          const data = !buffer.subarray(start, end).equals(zeros.subarray(0, end - start));
          if (data) {
            units[(position + start) / share.unitSize] = 1;
            if (runStart < 0) runStart = start;
          } else if (runStart >= 0) {
            writeAll(runStart, start, position);
            runStart = -1;
          }
        }
        if (runStart >= 0) writeAll(runStart, length, position);
      }
      Atomics.store(control, TURN, block + 1);
      Atomics.notify(control, TURN);
    }
  } catch (error) {
    Atomics.store(control, FAILED, 1);
    Atomics.notify(control, TURN);
    throw error;
  } finally {
    fs.closeSync(from);
  }
}

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
try {
  (${copyShare.toString()})(workerData, fs);
  parentPort.postMessage({ ok: true });
} catch (error) {
  parentPort.postMessage({ ok: false, message: String(error && error.message), code: error && error.code });
}`;

function runWorker(share: CopyShare): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: share, stdout: true, stderr: true });
    let settled = false;
    worker.once('message', (message: { ok: boolean; message?: string; code?: string }) => {
      settled = true;
      if (message.ok) resolve();
      else reject(Object.assign(new Error(message.message), { code: message.code }));
    });
    worker.once('error', (error) => {
      settled = true;
      reject(error);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`copy worker exited with code ${code}`));
    });
  });
}

async function copyParallel(fromPath: string, toFd: number, blocks: Float64Array, units: SharedArrayBuffer | undefined, onProgress?: (progress: Progress) => void): Promise<void> {
  const control = new SharedArrayBuffer(8);
  const turn = new Int32Array(control);
  const count = blocks.length / 2;
  const bytesTotal = totalBytes(blocks);
  // Progress from the shared turn counter; bytes of the blocks written so far.
  const report = () => {
    if (!onProgress) return;
    const written = Atomics.load(turn, 0);
    let bytesDone = 0;
    for (let block = 0; block < written; block++) bytesDone += blocks[block * 2 + 1]!;
    onProgress({ phase: 'save', bytesDone, bytesTotal });
  };
  const timer = onProgress ? setInterval(report, 100) : undefined;
  try {
    const shares = Array.from({ length: Math.min(COPY_THREADS, count) }, (_, first) =>
      runWorker({ fromPath, toFd, blocks, control, first, step: COPY_THREADS, units, unitSize: DATA_MAP_BLOCK }).catch((error: unknown) => {
        // A worker that could not start or died cannot set the flag itself: stop the others.
        Atomics.store(turn, 1, 1);
        Atomics.notify(turn, 0);
        throw error;
      }),
    );
    const results = await Promise.allSettled(shares);
    const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure) throw failure.reason;
  } finally {
    if (timer) clearInterval(timer);
  }
  report();
}

function totalBytes(blocks: Float64Array): number {
  let sum = 0;
  for (let index = 1; index < blocks.length; index += 2) sum += blocks[index]!;
  return sum;
}

/**
 * The copy on the calling thread, for small copies (a few ms) or where worker
 * threads cannot start: the same code as one worker, with the turn always its own.
 */
function copyInline(fromPath: string, toFd: number, blocks: Float64Array, units: SharedArrayBuffer | undefined, onProgress?: (progress: Progress) => void): void {
  copyShare({ fromPath, toFd, blocks, control: new SharedArrayBuffer(8), first: 0, step: 1, units, unitSize: DATA_MAP_BLOCK }, { openSync, readSync, writeSync, closeSync });
  const bytesTotal = totalBytes(blocks);
  onProgress?.({ phase: 'save', bytesDone: bytesTotal, bytesTotal });
}

/** Merged ranges of the units flagged as holding data. */
function unitsToMap(units: Uint8Array, size: number): DataMap {
  const map: DataMap = [];
  for (let index = 0; index < units.length; index++) {
    if (!units[index]) continue;
    const byteOffset = index * DATA_MAP_BLOCK;
    const length = Math.min(DATA_MAP_BLOCK, size - byteOffset);
    const last = map[map.length - 1];
    if (last && last.byteOffset + last.length === byteOffset) last.length += length;
    else map.push({ byteOffset, length });
  }
  return map;
}

/**
 * Copies `fromPath` into `to` (which must be empty) and sets its length to
 * `size`. With `ranges` (the base's data map), only those ranges are copied and
 * everything else stays a hole. Without, the whole file is read, all-zero
 * 64 KiB units are left as holes, and the data map found on the way is
 * returned, so the next copy of the same base reads no holes.
 */
export async function copyRanges(fromPath: string, to: FileHandle, size: number, ranges: DataMap | undefined, options: CopyOptions = {}): Promise<DataMap> {
  const blocks = splitBlocks(ranges ?? (size > 0 ? [{ byteOffset: 0, length: size }] : []));
  const units = ranges ? undefined : new SharedArrayBuffer(Math.ceil(size / DATA_MAP_BLOCK));
  try {
    let copied = false;
    if (totalBytes(blocks) >= (options.parallelMin ?? PARALLEL_COPY_MIN)) {
      try {
        await copyParallel(fromPath, to.fd, blocks, units, options.onProgress);
        copied = true;
      } catch (error) {
        // Where worker threads cannot start, copy on this thread instead: it writes every block again.
        if (!String((error as NodeJS.ErrnoException).code).startsWith('ERR_WORKER')) throw error;
      }
    }
    if (!copied) copyInline(fromPath, to.fd, blocks, units, options.onProgress);
    await to.truncate(size);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'E_TRUNCATED') {
      throw new PiimgError('E_TRUNCATED', `${fromPath} changed size while being copied`, { path: fromPath }, { cause: error });
    }
    throw error;
  }
  return ranges ?? unitsToMap(new Uint8Array(units!), size);
}
