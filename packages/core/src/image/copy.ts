import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { PiimgError } from '../errors.js';
import { DATA_MAP_BLOCK, DataMapBuilder, type DataMap } from './datamap.js';
import { throwIfAborted } from './abort.js';
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
 * - Each write call is at most 64 KiB. The kernel caches a write in pages
 *   as large as the call (and its alignment) allows, and on a virtual
 *   machine whose free memory the host reclaims, large pages often came from
 *   memory the host had to hand back first: with 512 KiB calls a save took
 *   0.9-1.8 s instead of 0.35 s on 7 of 8 runs that followed a cp, and
 *   with 128 KiB calls on 4 of 6. With 64 KiB calls saves stayed at
 *   0.36-0.38 s on 7 of 8 (0.5 s once); 32 KiB calls were as steady but
 *   slower. cp is steady too: its 128 KiB writes start at unaligned offsets,
 *   so it gets small pages. Where memory is not reclaimed, 512 KiB calls
 *   were ~10% faster; steady times were chosen.
 * - Reads are 512 KiB blocks: fewer hand-overs between threads, and each
 *   thread's buffer stays in its CPU cache.
 * - Writes to one file serialize in the kernel, reads do not. Two worker
 *   threads claim blocks in turn: one reads its next block while the other
 *   writes, and they pass the turn to write, in block order, through shared
 *   memory.
 */
export const COPY_BLOCK = 512 << 10;
/** The most bytes one write call gets (see above). */
export const WRITE_SIZE = 64 << 10;
/** Below this many bytes the copy runs on the calling thread: starting workers costs ~25 ms. */
export const PARALLEL_COPY_MIN = 64 << 20;
const COPY_THREADS = 2;

/** Options of `copyRanges`. */
export interface CopyOptions {
  /** Called as bytes are copied. */
  onProgress?: (progress: Progress) => void;
  /** Copy with worker threads when at least this many bytes are to be copied. Default PARALLEL_COPY_MIN. */
  parallelMin?: number;
  /** Stops the copy between blocks; the call then rejects with the signal's reason (E_ABORTED). */
  signal?: AbortSignal;
}

/** Blocks of at most COPY_BLOCK bytes, as [offset, length] pairs, in increasing order. */
export function splitBlocks(ranges: DataMap): Float64Array {
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

/** Slots of the shared control array (Int32). */
export const SLOTS = {
  /** Index of the next block nobody has claimed yet. */
  claim: 0,
  /** Index of the next block to write. */
  turn: 1,
  /** 1 once any thread failed. */
  failed: 2,
} as const;
export const CONTROL_SLOTS = 3;
const { turn: TURN, failed: FAILED } = SLOTS;

/** What one copy thread needs; structured-cloned into each worker. */
export interface CopyJob {
  fromPath: string;
  toFd: number;
  blocks: Float64Array;
  control: SharedArrayBuffer;
  /** The layout of `control`, passed along since the worker source cannot see this module. */
  slots: typeof SLOTS;
  /**
   * When set, blocks are checked for zeros in units of `unitSize` bytes (blocks
   * start at multiples of it): all-zero units are not written (they stay
   * holes) and each unit holding data gets a 1 at its index in `units`.
   */
  units?: SharedArrayBuffer;
  unitSize: number;
  /** The most bytes per write call (WRITE_SIZE). */
  writeSize: number;
}

export type FsSync = Pick<typeof import('node:fs'), 'openSync' | 'readSync' | 'writeSync' | 'closeSync'>;
const SYNC_FS: FsSync = { openSync, readSync, writeSync, closeSync };

/**
 * One copying thread: claims the next block, reads it, waits until every
 * earlier block is written, writes it, passes the turn on; until no block is
 * left. Any number of threads can share a copy: if a worker fails to start,
 * the other copies its blocks. Self-contained: its source text is what each
 * worker runs.
 */
export function copyThread(job: CopyJob, fs: FsSync): void {
  const { claim: CLAIM, turn: TURN, failed: FAILED } = job.slots;
  const control = new Int32Array(job.control);
  const blocks = job.blocks;
  const count = blocks.length / 2;
  let largest = 0;
  for (let index = 1; index < blocks.length; index += 2) largest = Math.max(largest, blocks[index]!);
  const buffer = Buffer.allocUnsafe(largest);
  const units = job.units ? new Uint8Array(job.units) : undefined;
  const zeros = Buffer.alloc(units ? job.unitSize : 0);
  const hasData = new Uint8Array(units ? Math.ceil(largest / job.unitSize) : 0);
  const writeAll = (start: number, end: number, position: number) => {
    for (let done = start; done < end; ) done += fs.writeSync(job.toFd, buffer, done, Math.min(end - done, job.writeSize), position + done);
  };
  let from = -1;
  try {
    from = fs.openSync(job.fromPath, 'r');
    for (;;) {
      const block = Atomics.add(control, CLAIM, 1);
      if (block >= count) return;
      const position = blocks[block * 2]!;
      const length = blocks[block * 2 + 1]!;
      for (let done = 0; done < length; ) {
        const read = fs.readSync(from, buffer, done, length - done, position + done);
        if (read === 0) throw Object.assign(new Error('the base changed size while being copied'), { code: 'E_TRUNCATED' });
        done += read;
      }
      // Zero checks before waiting for the turn, off the path every write waits on.
      if (units) {
        for (let start = 0, unit = 0; start < length; start += job.unitSize, unit++) {
          const end = Math.min(start + job.unitSize, length);
          hasData[unit] = buffer.subarray(start, end).equals(zeros.subarray(0, end - start)) ? 0 : 1;
          if (hasData[unit]) units[(position + start) / job.unitSize] = 1;
        }
      }
      // The thread before usually hands over within microseconds: spin
      // briefly before sleeping, since waking a sleeping thread costs more.
      const waitStarted = performance.now();
      let lastTurn = -1;
      let lastChange = waitStarted;
      for (;;) {
        const turn = Atomics.load(control, TURN);
        if (Atomics.load(control, FAILED) !== 0) return;
        if (turn === block) break;
        const now = performance.now();
        if (turn !== lastTurn) [lastTurn, lastChange] = [turn, now];
        // A thread that stopped without raising FAILED would leave the others waiting forever.
        if (now - lastChange > 60_000) throw Object.assign(new Error('the copy stalled: no block written for 60 s'), { code: 'E_IO' });
        if (now - waitStarted > 0.2) Atomics.wait(control, TURN, turn, 100);
      }
      if (!units) {
        writeAll(0, length, position);
      } else {
        // Write runs of units that hold data; zero units become holes.
        let runStart = -1;
        for (let start = 0, unit = 0; start < length; start += job.unitSize, unit++) {
          if (hasData[unit]) {
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
    if (from >= 0) fs.closeSync(from);
  }
}

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
try {
  (${copyThread.toString()})(workerData, fs);
  parentPort.postMessage({ ok: true });
} catch (error) {
  parentPort.postMessage({ ok: false, message: String(error && error.message), code: error && error.code });
}`;

/** Runs one copy worker; the error of a worker that never came online has `started: false`. */
function runWorker(job: CopyJob): Promise<void> {
  return new Promise((resolve, reject) => {
    let started = false;
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      if (error) reject(Object.assign(error, { started }));
      else resolve();
    };
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: job, stdout: true, stderr: true });
    } catch (error) {
      settle(error as Error);
      return;
    }
    worker.once('online', () => (started = true));
    worker.once('message', (message: { ok: boolean; message?: string; code?: string }) => {
      started = true;
      settle(message.ok ? undefined : Object.assign(new Error(message.message), { code: message.code }));
    });
    worker.once('error', (error) => settle(error));
    worker.once('exit', (code) => settle(new Error(`copy worker exited with code ${code}`)));
  });
}

function fail(control: Int32Array): void {
  Atomics.store(control, FAILED, 1);
  Atomics.notify(control, TURN);
}

/**
 * Copies the blocks on COPY_THREADS worker threads. (Letting the calling
 * thread copy while they start measured no faster.)
 */
async function copyParallel(job: Omit<CopyJob, 'control' | 'slots'>, onProgress?: (progress: Progress) => void, signal?: AbortSignal): Promise<void> {
  const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
  // Aborting raises the flag the threads check between blocks.
  const stop = () => fail(control);
  signal?.addEventListener('abort', stop, { once: true });
  const shared = { ...job, control: control.buffer as SharedArrayBuffer, slots: SLOTS };
  const { blocks } = job;
  const bytesTotal = totalBytes(blocks);
  // Progress from the shared turn counter: bytes of the blocks written so far.
  const report = () => {
    if (!onProgress) return;
    const written = Math.min(Atomics.load(control, TURN), blocks.length / 2);
    let bytesDone = 0;
    for (let block = 0; block < written; block++) bytesDone += blocks[block * 2 + 1]!;
    onProgress({ phase: 'save', bytesDone, bytesTotal });
  };
  const timer = onProgress ? setInterval(report, 100) : undefined;
  try {
    const workers: Promise<void>[] = [];
    for (let index = 0; index < COPY_THREADS; index++) {
      workers.push(
        runWorker(shared).catch((error: Error & { started?: boolean }) => {
          // A worker that died cannot raise the flag itself: stop the others. One
          // that never started claimed no block; the others copy without it.
          if (error.started) fail(control);
          throw error;
        }),
      );
    }
    const results = await Promise.allSettled(workers);
    throwIfAborted(signal, `copying ${job.fromPath}`);
    const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected').map((result) => result.reason as Error & { started?: boolean });
    if (failures.length === COPY_THREADS && failures.every((failure) => !failure.started)) {
      // No worker thread could start here: copy on this thread.
      copyThread(shared, SYNC_FS);
      return;
    }
    // Every block written, in order, and nobody failed: the copy is complete, even if a
    // worker could not start (then the other one copied its blocks).
    if (Atomics.load(control, FAILED) === 0 && Atomics.load(control, TURN) === blocks.length / 2) return report();
    throw failures.find((failure) => failure.started) ?? failures[0] ?? new Error('the copy ended before every block was written');
  } finally {
    if (timer) clearInterval(timer);
    signal?.removeEventListener('abort', stop);
  }
}

function totalBytes(blocks: Float64Array): number {
  let sum = 0;
  for (let index = 1; index < blocks.length; index += 2) sum += blocks[index]!;
  return sum;
}

/** Merged ranges of the units flagged as holding data. */
function unitsToMap(units: Uint8Array, size: number): DataMap {
  const builder = new DataMapBuilder();
  for (let index = 0; index < units.length; index++) {
    if (units[index]) builder.addRange(index * DATA_MAP_BLOCK, Math.min(DATA_MAP_BLOCK, size - index * DATA_MAP_BLOCK));
  }
  return builder.ranges;
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
    const job = { fromPath, toFd: to.fd, blocks, units, unitSize: DATA_MAP_BLOCK, writeSize: WRITE_SIZE };
    const bytesTotal = totalBytes(blocks);
    if (bytesTotal >= (options.parallelMin ?? PARALLEL_COPY_MIN)) {
      await copyParallel(job, options.onProgress, options.signal);
    } else {
      // A few ms of work: on this thread alone.
      throwIfAborted(options.signal, `copying ${fromPath}`);
      copyThread({ ...job, control: new SharedArrayBuffer(CONTROL_SLOTS * 4), slots: SLOTS }, SYNC_FS);
      options.onProgress?.({ phase: 'save', bytesDone: bytesTotal, bytesTotal });
    }
    await to.truncate(size);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'E_TRUNCATED' || code === 'E_IO') {
      throw new PiimgError(code, `cannot copy ${fromPath}: ${(error as Error).message}`, { path: fromPath }, { cause: error });
    }
    throw error;
  }
  return ranges ?? unitsToMap(new Uint8Array(units!), size);
}
