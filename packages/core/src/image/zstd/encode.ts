import { bindZstd, zstdModule, type ZstdWasmModule } from '@piimg/wasm';
import { EncoderPool } from '../encoder-pool.js';
import { fillContent, type BlockContent } from '../xz/encode.js';
import { zstdBackend, type ZstdBackend, type ZstdZlib } from './backend.js';

/**
 * Writing .zst: a series of independent zstd frames, each compressed by
 * libzstd on a worker thread: Node's zlib where it has zstd, else the wasm
 * build (backend.ts). Concatenated frames are one valid zstd
 * stream (RFC 8878 §3.1), which `zstd -dc` reads; each frame records its
 * content size and an XXH64 checksum, so readers verify every frame.
 *
 * Frames are the size of the jobs of `zstd -T` (four times the level's
 * window, Ref: zstd lib/compress/zstdmt_compress.c, ZSTDMT_computeTargetJobLog),
 * but unlike those jobs they share no history, which is what makes each one
 * reusable alone. As in xz/encode.ts, workers read the base themselves (data
 * ranges only), into one frame-sized buffer per worker (8 MiB at level 3,
 * 32 MiB at 19) handed whole to libzstd by either backend, so that both
 * write the same bytes.
 */

export const DEFAULT_ZSTD_LEVEL = 3;

/** Window log of each level for inputs over 256 KiB (Ref: zstd lib/compress/clevels.h, ZSTD_defaultCParameters[0]). */
const LEVEL_WINDOW_LOG = [0, 19, 20, 21, 21, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23];

/** The frame size for a level: four times its window, at least 4 MiB (8 MiB at level 3). */
export function zstdFrameSize(level: number): number {
  return Math.max(4 << 20, 4 * 2 ** LEVEL_WINDOW_LOG[level]!);
}

interface FrameRequest extends BlockContent {
  id: number;
  level: number;
}

type EncodeFs = Pick<typeof import('node:fs'), 'openSync' | 'readSync' | 'closeSync'>;

/**
 * The body of an encoding worker: answers each request with the frame's
 * bytes and the encoder that made them. Self-contained: its source text is
 * what workers run.
 */
export function zstdEncodeWorker(
  port: { on(event: 'message', listener: (request: FrameRequest) => void): void; postMessage(message: unknown, transfer?: ArrayBuffer[]): void },
  setup: { basePath: string; backend: ZstdBackend; module?: ZstdWasmModule },
  fs: EncodeFs,
  bind: typeof bindZstd,
  zlib: ZstdZlib,
  fillFrom: typeof fillContent,
): void {
  const base = fs.openSync(setup.basePath, 'r');
  // The request's [position, position + length) into target at targetOffset.
  const fill = (request: FrameRequest, position: number, length: number, target: Uint8Array, targetOffset: number) =>
    fillFrom(fs, base, request, position, length, target, targetOffset);
  // One output buffer for a whole frame: one byte under ZSTD_compressBound (Ref: zstd
  // lib/zstd.h), which holds any frame (zstd adds at most 3 bytes per 128 KiB block) but keeps
  // libzstd off its one-pass path. libzstd's bytes depend on the size of the output buffer it
  // is given (and on that path): both backends give the same, so they write the same frames.
  const outCapacity = (length: number) => Math.max(64, length + (length >> 8) + (length < 128 << 10 ? ((128 << 10) - length) >> 11 : 0) - 1);
  const backend = setup.backend === 'zlib' && typeof zlib.zstdCompressSync === 'function' ? 'zlib' : 'wasm';
  let encode: (request: FrameRequest) => Uint8Array[];
  if (backend === 'zlib') {
    const compress = zlib.zstdCompressSync!;
    const c = zlib.constants;
    let frame = new Uint8Array(0);
    encode = (request) => {
      if (frame.length < request.length) frame = new Uint8Array(request.length);
      fill(request, request.byteOffset, request.length, frame, 0);
      // Checksum on and the content size pledged: the same frame header as the wasm encoder's.
      // The frame comes back as a view of the one output buffer, neither copied nor joined.
      const out = compress(frame.subarray(0, request.length), {
        params: { [c.ZSTD_c_compressionLevel!]: request.level, [c.ZSTD_c_checksumFlag!]: 1 },
        pledgedSrcSize: request.length,
        chunkSize: outCapacity(request.length),
      });
      // A small result may sit in Node's shared Buffer pool (8 KiB), which must not be transferred.
      return [out.buffer.byteLength > 64 << 10 ? new Uint8Array(out.buffer, out.byteOffset, out.length) : new Uint8Array(out)];
    };
  } else {
    const zstd = bind(setup.module!);
    // The whole frame in wasm memory and one output buffer, as zlib has them.
    let inPtr = 0;
    let outPtr = 0;
    let capacity = 0;
    encode = (request) => {
      const outSize = outCapacity(request.length);
      if (capacity < outSize) {
        if (capacity > 0) {
          zstd.free(inPtr);
          zstd.free(outPtr);
        }
        inPtr = zstd.alloc(request.length);
        outPtr = zstd.alloc(outSize);
        capacity = outSize;
      }
      fill(request, request.byteOffset, request.length, zstd.memory(), inPtr);
      const encoder = zstd.frameEncoder(request.level, request.length);
      const output: Uint8Array[] = [];
      // Repeated until libzstd has flushed the epilogue and checksum (once, as the buffer holds any frame).
      for (let offset = 0, done = false; !done; ) {
        const step = encoder.encode(inPtr + offset, request.length - offset, outPtr, outSize, true);
        offset += step.consumed;
        if (step.produced > 0) output.push(zstd.memory().slice(outPtr, outPtr + step.produced));
        done = step.done;
      }
      return output;
    };
  }
  port.on('message', (request) => {
    if (request.id < 0) {
      fs.closeSync(base);
      port.postMessage({ id: request.id, closed: true });
      return;
    }
    try {
      const output = encode(request);
      port.postMessage(
        { id: request.id, pieces: output, backend },
        output.map((piece) => piece.buffer as ArrayBuffer),
      );
    } catch (error) {
      port.postMessage({ id: request.id, error: String((error as Error)?.message), code: (error as { code?: string })?.code });
    }
  });
}

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const zlib = require('node:zlib');
const bindZstd = (${bindZstd.toString()});
const fillContent = (${fillContent.toString()});
(${zstdEncodeWorker.toString()})(parentPort, workerData, fs, bindZstd, zlib, fillContent);`;

/** Worker threads compressing frames; requests go to the least busy one. */
export class ZstdEncoderPool {
  private readonly pool: EncoderPool<Omit<FrameRequest, 'id'>, { id: number; pieces: Uint8Array[]; backend: ZstdBackend }, Uint8Array[]>;
  /** The encoders that made the frames so far, as the workers report them (tests check the native one runs where Node has it). */
  readonly backendsUsed = new Set<ZstdBackend>();

  constructor(basePath: string, threads: number, backend: ZstdBackend = zstdBackend()) {
    // The wasm module is compiled only when it is used.
    const setup = { basePath, backend, ...(backend === 'wasm' ? { module: zstdModule() } : {}) };
    this.pool = new EncoderPool('zstd', WORKER_SOURCE, setup, threads, (answer) => {
      this.backendsUsed.add(answer.backend);
      return answer.pieces;
    });
  }

  encode(content: BlockContent, level: number): Promise<Uint8Array[]> {
    return this.pool.run({ ...content, level });
  }

  /** Lets each worker close its file, then ends it. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * The .zst file of an image given frame by frame, in order. At most four
 * frames per thread are in flight: frames differ in cost (text takes longer
 * than random bytes), and a thread done early keeps working while the frame
 * ahead of it is still being compressed (with one more than the threads, the
 * second of two workers sat idle a quarter of the time). The consumer's pace
 * (backpressure) sets the rest. An all-zero frame is compressed once and its
 * bytes reused.
 */
export async function* encodeZstd(basePath: string, frames: Iterable<BlockContent>, options: { level: number; threads: number }): AsyncGenerator<Uint8Array> {
  const pool = new ZstdEncoderPool(basePath, options.threads);
  const zeroFrames = new Map<number, Promise<Uint8Array[]>>();
  const encode = (content: BlockContent): Promise<Uint8Array[]> => {
    if (content.baseRanges.length > 0 || content.patches.length > 0) return pool.encode(content, options.level);
    let zero = zeroFrames.get(content.length);
    if (!zero) {
      zero = pool.encode(content, options.level);
      zeroFrames.set(content.length, zero);
    }
    return zero;
  };
  const inFlight: Promise<Uint8Array[]>[] = [];
  try {
    const iterator = frames[Symbol.iterator]();
    let next = iterator.next();
    while (!next.done || inFlight.length > 0) {
      while (!next.done && inFlight.length < 4 * options.threads) {
        const promise = encode(next.value);
        // Settled rejections must not surface as unhandled while they wait in the queue.
        promise.catch(() => undefined);
        inFlight.push(promise);
        next = iterator.next();
      }
      yield* await inFlight.shift()!;
    }
  } finally {
    await pool.close();
  }
}
