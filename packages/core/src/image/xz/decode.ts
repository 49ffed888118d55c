import { closeSync, createReadStream, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { bindLzma, isLzmaError, loadLzma, lzmaModule, type LzmaWasmModule } from '@piimg/wasm';
import { PiimgError } from '../../errors.js';
import { throwIfAborted } from '../abort.js';
import { WRITE_SIZE } from '../copy.js';
import { DATA_MAP_BLOCK, DataMapBuilder, type DataMap } from '../datamap.js';
import type { Progress } from '../source.js';
import { readXzIndex, type XzBlock } from './layout.js';

/**
 * Decoding .xz bases. A multi-Block file (what `xz -T`, pi-gen and piimg
 * write) is decoded Block by Block on worker threads: the Index at the end
 * of the file gives every Block's place and sizes (Ref: The .xz File Format
 * 1.2.1 §4 Index, §3 Block), each worker reads a Block straight into
 * liblzma's memory, decodes it, and writes its data at its place with
 * positioned writes (zeros stay holes). Single-Block files, Blocks too large to buffer and anything that
 * is not a regular file decode as one stream on this thread.
 */

/** Blocks up to this size are decoded whole in a worker's memory (pi-gen's are 24 MiB, xz -T's 3x the dictionary). */
export const MAX_PARALLEL_BLOCK = 64 << 20;
/** liblzma memory limit per decoder: xz -9 needs 65 MiB; larger dictionaries are refused, not allocated. */
export const DECODER_MEMLIMIT = 256 << 20;
/** Default decoding threads: one per core, at most 4 (measured: the writes serialize beyond). */
export const DEFAULT_DECODE_THREADS = Math.max(1, Math.min(4, availableParallelism()));

export interface XzDecodeOptions {
  maxImageSize: number;
  onProgress?: (progress: Progress) => void;
  /** Worker threads for multi-Block files (default: one per core, at most 4). */
  threads?: number;
  /** Stops decoding: the workers end at their next Block and the call rejects with E_ABORTED. */
  signal?: AbortSignal;
}

export interface DecodeResult {
  size: number;
  dataMap: DataMap;
  /** 'parallel' when Blocks were decoded on worker threads. */
  mode: 'parallel' | 'stream';
  /** Blocks not decoded because their bytes equal those of a Block already decoded to zeros. */
  blocksReused: number;
}

const FIELDS = 6;
/** Slots of the shared control array (Int32): next Block to claim, Blocks written, KiB written, failure flag, Blocks reused. */
const SLOTS = { claim: 0, written: 1, writtenKiB: 2, failed: 3, reused: 4 } as const;

/** What one decoding thread needs; structured-cloned into each worker. */
export interface DecodeJob {
  path: string;
  outFd: number;
  /** Per Block: compressedOffset, totalSize, unpaddedSize, uncompressedOffset, uncompressedSize, check. */
  blocks: Float64Array;
  control: SharedArrayBuffer;
  slots: typeof SLOTS;
  /** One byte per DATA_MAP_BLOCK unit of the output, set to 1 when the unit holds data. */
  units: SharedArrayBuffer;
  unitSize: number;
  writeSize: number;
  memlimit: number;
  module: LzmaWasmModule;
}

type DecodeFs = Pick<typeof import('node:fs'), 'openSync' | 'readSync' | 'writeSync' | 'closeSync'>;

/**
 * One decoding thread: claims the next Block, reads and decodes it, writes
 * the parts that are not zeros at their place (the rest stays holes), and
 * claims the next. Blocks are written in whatever order they finish: a
 * thread never waits for another (waiting for the turn to append left a
 * thread idle whenever the other was descheduled: 1.5x xz -T2's wall time
 * for the same CPU time on a loaded machine). Self-contained: its source
 * text is what workers run.
 * A Block whose bytes equal those of a Block already found to decode to
 * zeros is not decoded again: decoding is a pure function of the Block's
 * bytes, the sizes the Index gives it and the Stream's Check type, so all of
 * these must match, and that Block's Check was verified (a run of free space
 * makes many such Blocks: zerofree'd free space in Raspberry Pi OS images).
 */
export function decodeThread(job: DecodeJob, fs: DecodeFs, bind: typeof bindLzma): void {
  const { claim: CLAIM, written: WRITTEN, writtenKiB: WRITTEN_KIB, failed: FAILED, reused: REUSED } = job.slots;
  const control = new Int32Array(job.control);
  const units = new Uint8Array(job.units);
  const blocks = job.blocks;
  const count = blocks.length / 6;
  const lzma = bind(job.module);
  const zeros = Buffer.alloc(job.unitSize);
  let inPtr = 0;
  let inCapacity = 0;
  let outPtr = 0;
  let outCapacity = 0;
  let zeroBlock: Buffer | undefined;
  let zeroBlockKey = '';
  let file = -1;
  const writeAll = (memory: Uint8Array, from: number, length: number, position: number) => {
    for (let done = 0; done < length; ) {
      done += fs.writeSync(job.outFd, memory, from + done, Math.min(length - done, job.writeSize), position + done);
    }
  };
  try {
    file = fs.openSync(job.path, 'r');
    for (;;) {
      const block = Atomics.add(control, CLAIM, 1);
      if (block >= count || Atomics.load(control, FAILED) !== 0) return;
      const base = block * 6;
      const compressedOffset = blocks[base]!;
      const totalSize = blocks[base + 1]!;
      const unpaddedSize = blocks[base + 2]!;
      const uncompressedOffset = blocks[base + 3]!;
      const uncompressedSize = blocks[base + 4]!;
      const check = blocks[base + 5]!;
      if (totalSize > inCapacity) {
        if (inPtr) lzma.free(inPtr);
        inPtr = 0;
        inPtr = lzma.alloc(totalSize);
        inCapacity = totalSize;
      }
      if (uncompressedSize > outCapacity) {
        if (outPtr) lzma.free(outPtr);
        outPtr = 0;
        outPtr = lzma.alloc(uncompressedSize);
        outCapacity = uncompressedSize;
      }
      let memory = lzma.memory();
      for (let done = 0; done < totalSize; ) {
        const read = fs.readSync(file, memory, inPtr + done, totalSize - done, compressedOffset + done);
        if (read === 0) throw Object.assign(new Error('the file ends inside a Block'), { code: 'LZMA_BUF_ERROR' });
        done += read;
      }
      const compressed = Buffer.from(memory.buffer, memory.byteOffset + inPtr, totalSize);
      const key = `${unpaddedSize}/${uncompressedSize}/${check}`;
      const knownZero = zeroBlock !== undefined && zeroBlockKey === key && compressed.equals(zeroBlock);
      if (knownZero) Atomics.add(control, REUSED, 1);
      // Which parts hold data, in pieces cut at the output's unit boundaries.
      const pieces: number[] = [];
      if (!knownZero) {
        lzma.decodeBlock(inPtr, totalSize, { unpaddedSize, uncompressedSize }, check, outPtr, job.memlimit);
        memory = lzma.memory();
        for (let start = 0; start < uncompressedSize; ) {
          const absolute = uncompressedOffset + start;
          const end = Math.min(uncompressedSize, start + job.unitSize - (absolute % job.unitSize));
          const piece = Buffer.from(memory.buffer, memory.byteOffset + outPtr + start, end - start);
          if (!piece.equals(zeros.subarray(0, end - start))) {
            pieces.push(start, end);
            units[Math.floor(absolute / job.unitSize)] = 1;
          }
          start = end;
        }
        if (pieces.length === 0) {
          zeroBlock = Buffer.from(compressed);
          zeroBlockKey = key;
        }
      }
      // Adjacent pieces with data are written in one go.
      for (let i = 0; i < pieces.length; ) {
        const start = pieces[i]!;
        let end = pieces[i + 1]!;
        i += 2;
        while (i < pieces.length && pieces[i] === end) {
          end = pieces[i + 1]!;
          i += 2;
        }
        writeAll(memory, outPtr + start, end - start, uncompressedOffset + start);
      }
      Atomics.add(control, WRITTEN_KIB, Math.floor(uncompressedSize / 1024));
      Atomics.add(control, WRITTEN, 1);
    }
  } catch (error) {
    Atomics.store(control, FAILED, 1);
    throw error;
  } finally {
    if (file >= 0) fs.closeSync(file);
  }
}

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const bindLzma = (${bindLzma.toString()});
try {
  (${decodeThread.toString()})(workerData, fs, bindLzma);
  parentPort.postMessage({ ok: true });
} catch (error) {
  parentPort.postMessage({ ok: false, message: String(error && error.message), code: error && error.code });
}`;

/** Runs one worker to its end; the error of a worker that never came online has `started: false`. */
function runWorker(source: string, workerData: unknown): Promise<void> {
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
      worker = new Worker(source, { eval: true, workerData, stdout: true, stderr: true });
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
    worker.once('exit', (code) => settle(new Error(`decoding worker exited with code ${code}`)));
  });
}

function badCompressed(path: string, error: unknown): PiimgError {
  if (error instanceof PiimgError) return error;
  return new PiimgError('E_BAD_COMPRESSED', `${path} is not a valid xz file: ${(error as Error).message}`, { path, compression: 'xz' }, { cause: error });
}

/** The most bytes a Block of `uncompressedSize` can take: LZMA2 stores incompressible chunks with 3 bytes per 64 KiB, plus Header and Check. */
function blockBound(uncompressedSize: number): number {
  return uncompressedSize + Math.ceil(uncompressedSize / 65536) * 3 + 1024 + 64 + 4;
}

async function decodeParallel(path: string, fd: number, blocks: XzBlock[], size: number, threads: number, onProgress?: (progress: Progress) => void, signal?: AbortSignal): Promise<{ dataMap: DataMap; blocksReused: number }> {
  const fields = new Float64Array(blocks.length * FIELDS);
  blocks.forEach((block, i) => fields.set([block.compressedOffset, block.totalSize, block.unpaddedSize, block.uncompressedOffset, block.uncompressedSize, block.check], i * FIELDS));
  const control = new Int32Array(new SharedArrayBuffer(5 * 4));
  const job: DecodeJob = {
    path,
    outFd: fd,
    blocks: fields,
    control: control.buffer as SharedArrayBuffer,
    slots: SLOTS,
    units: new SharedArrayBuffer(Math.ceil(size / DATA_MAP_BLOCK)),
    unitSize: DATA_MAP_BLOCK,
    writeSize: WRITE_SIZE,
    memlimit: DECODER_MEMLIMIT,
    module: lzmaModule(),
  };
  const report = () => {
    const done = Atomics.load(control, SLOTS.written) === blocks.length;
    onProgress?.({ phase: 'decompress', bytesDone: done ? size : Math.min(size, Atomics.load(control, SLOTS.writtenKiB) * 1024), bytesTotal: size });
  };
  const timer = onProgress ? setInterval(report, 100) : undefined;
  // An abort raises the same flag as a failed worker: every worker stops at its next Block.
  const onAbort = () => Atomics.store(control, SLOTS.failed, 1);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const workers = Array.from({ length: Math.min(threads, blocks.length) }, () =>
      runWorker(WORKER_SOURCE, job).catch((error: Error & { started?: boolean }) => {
        // A worker that died cannot raise the flag itself: stop the others.
        if (error.started) Atomics.store(control, SLOTS.failed, 1);
        throw error;
      }),
    );
    const results = await Promise.allSettled(workers);
    throwIfAborted(signal, `decompressing ${path}`);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error & { started?: boolean; code?: string });
    if (failures.length === workers.length && failures.every((failure) => !failure.started)) {
      // No worker thread could start here: decode on this thread.
      decodeThread(job, { openSync, readSync, writeSync, closeSync }, bindLzma);
    } else if (Atomics.load(control, SLOTS.failed) !== 0 || Atomics.load(control, SLOTS.written) !== blocks.length) {
      const failure: Error & { code?: string } = failures.find((f) => f.started) ?? failures[0] ?? new Error('decoding ended before every Block was written');
      // A write that failed (ENOSPC, EIO...) is the cache's problem: the caller names the cache.
      if (typeof failure.code === 'string' && !failure.code.startsWith('LZMA_')) throw failure;
      throw failure;
    }
    report();
  } finally {
    if (timer) clearInterval(timer);
    signal?.removeEventListener('abort', onAbort);
  }
  const units = new Uint8Array(job.units);
  const map = new DataMapBuilder();
  for (let index = 0; index < units.length; index++) {
    if (units[index]) map.addRange(index * DATA_MAP_BLOCK, Math.min(DATA_MAP_BLOCK, size - index * DATA_MAP_BLOCK));
  }
  return { dataMap: map.ranges, blocksReused: Atomics.load(control, SLOTS.reused) };
}

/**
 * The decoded bytes of an .xz file as a stream, decoded on this thread by
 * liblzma's stream decoder (every Check verified, concatenated Streams too).
 */
export async function* xzStreamChunks(path: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Uint8Array> {
  const lzma = loadLzma();
  const decoder = lzma.streamDecoder(DECODER_MEMLIMIT);
  const inSize = 1 << 20;
  const outSize = 4 << 20;
  const inPtr = lzma.alloc(inSize);
  const outPtr = lzma.alloc(outSize);
  try {
    let done = false;
    for await (const chunk of createReadStream(path, { highWaterMark: inSize, ...(options.signal ? { signal: options.signal } : {}) })) {
      const input = chunk as Buffer;
      lzma.memory().set(input, inPtr);
      // With concatenated Streams allowed, liblzma ends only once told the input is complete.
      for (let offset = 0; offset < input.length; ) {
        const step = decoder.code(inPtr + offset, input.length - offset, outPtr, outSize, false);
        offset += step.consumed;
        if (step.produced > 0) yield lzma.memory().slice(outPtr, outPtr + step.produced);
      }
    }
    while (!done) {
      const step = decoder.code(inPtr, 0, outPtr, outSize, true);
      done = step.done;
      if (step.produced > 0) yield lzma.memory().slice(outPtr, outPtr + step.produced);
      else if (!done) throw new PiimgError('E_BAD_COMPRESSED', `${path} is truncated`, { path, compression: 'xz' });
    }
  } catch (error) {
    throw isLzmaError(error) ? badCompressed(path, error) : error;
  } finally {
    decoder.end();
  }
}

/**
 * Decodes a multi-Block .xz file at `path` into `fd` (empty, opened for
 * writing) on worker threads, leaving all-zero 64 KiB units as holes.
 * Returns undefined when the file is better decoded as one stream
 * (one Block, Blocks larger than MAX_PARALLEL_BLOCK, not a regular file).
 * A file whose Index does not add up is refused here, before any decoding.
 */
export async function decodeXzBlocks(path: string, fd: number, options: XzDecodeOptions): Promise<DecodeResult | undefined> {
  const file = openSync(path, 'r');
  let index;
  try {
    const stats = fstatSync(file);
    if (!stats.isFile()) return undefined;
    index = readXzIndex(stats.size, (position, length) => {
      const bytes = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const read = readSync(file, bytes, done, length - done, position + done);
        if (read === 0) break;
        done += read;
      }
      return bytes.subarray(0, done);
    });
  } catch (error) {
    throw badCompressed(path, error);
  } finally {
    closeSync(file);
  }
  if (index.uncompressedSize > options.maxImageSize) {
    throw new PiimgError('E_LIMIT', `${path} decompresses to ${index.uncompressedSize} bytes, more than ${options.maxImageSize}`, { path, maxImageSize: options.maxImageSize });
  }
  for (const block of index.blocks) {
    if (block.totalSize > blockBound(block.uncompressedSize)) {
      throw new PiimgError('E_BAD_COMPRESSED', `${path} is not a valid xz file: a Block of ${block.totalSize} bytes claims to hold only ${block.uncompressedSize}`, { path, compression: 'xz' });
    }
  }
  if (index.blocks.length < 2 || index.blocks.some((block) => block.uncompressedSize > MAX_PARALLEL_BLOCK)) return undefined;
  const threads = options.threads ?? DEFAULT_DECODE_THREADS;
  try {
    const { dataMap, blocksReused } = await decodeParallel(path, fd, index.blocks, index.uncompressedSize, threads, options.onProgress, options.signal);
    ftruncateSync(fd, index.uncompressedSize);
    return { size: index.uncompressedSize, dataMap, mode: 'parallel', blocksReused };
  } catch (error) {
    if (error instanceof PiimgError) throw error;
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('LZMA_')) throw badCompressed(path, error);
    throw error;
  }
}
