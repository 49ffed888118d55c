import { bindLzma, lzmaModule, XZ_CHECK, type LzmaWasmModule } from '@piimg/wasm';
import { PiimgError } from '../../errors.js';
import { EncoderPool } from '../encoder-pool.js';
import { encodeIndex, encodeStreamFooter, encodeStreamHeader } from './layout.js';

/**
 * Writing .xz: one Stream of independent Blocks, each encoded by liblzma on
 * a worker thread and recording its sizes in its Block Header, so that
 * `xz -T` (and piimg) can decode them in parallel. Block size and preset
 * follow `xz -T`: Blocks of three times the LZMA2 dictionary.
 * Ref: The .xz File Format 1.2.1 §2 Streams, §3 Block, §4 Index.
 *
 * Workers read the base image themselves (only its data ranges; holes are
 * zeros without a read) and get the changed bytes from this thread, so no
 * Block is held whole in memory anywhere: a worker feeds liblzma 1 MiB at a
 * time and keeps only the compressed output.
 */

/** Dictionary size of each preset (xz-utils' lzma_lzma_preset): the Block size is three times it, as in `xz -T`. */
const PRESET_DICT_SIZE = [256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20];
export const DEFAULT_XZ_LEVEL = 6;
const PIECE_SIZE = 1 << 20;

/** The Block size `xz -T` uses for a preset: three times the dictionary, at least 1 MiB. */
export function xzBlockSize(level: number): number {
  return Math.max(1 << 20, 3 * PRESET_DICT_SIZE[level]!);
}

/** One piece of a Block's content: base ranges to read, changed bytes to lay over them. */
export interface BlockContent {
  byteOffset: number;
  length: number;
  /** Absolute [offset, length] pairs of base data inside the Block; the rest reads as zeros. */
  baseRanges: number[];
  /** Changed bytes inside the Block, applied after the base ranges. */
  patches: { byteOffset: number; data: Uint8Array }[];
}

/**
 * Lays bytes [position, position + length) of `content` into `target` at
 * `targetOffset`: zeros, the base's data ranges read from `base` over them,
 * then the changed bytes. The input of every xz Block and zstd frame, on the
 * encoding workers. Self-contained: its source text is what workers run.
 */
export function fillContent(
  fs: Pick<typeof import('node:fs'), 'readSync'>,
  base: number,
  content: Pick<BlockContent, 'baseRanges' | 'patches'>,
  position: number,
  length: number,
  target: Uint8Array,
  targetOffset: number,
): void {
  target.fill(0, targetOffset, targetOffset + length);
  for (let i = 0; i < content.baseRanges.length; i += 2) {
    const from = Math.max(position, content.baseRanges[i]!);
    const to = Math.min(position + length, content.baseRanges[i]! + content.baseRanges[i + 1]!);
    for (let done = from; done < to; ) {
      const read = fs.readSync(base, target, targetOffset + done - position, to - done, done);
      if (read === 0) throw Object.assign(new Error('the base ended while being read'), { code: 'E_TRUNCATED' });
      done += read;
    }
  }
  for (const patch of content.patches) {
    const from = Math.max(position, patch.byteOffset);
    const to = Math.min(position + length, patch.byteOffset + patch.data.length);
    if (from < to) target.set(patch.data.subarray(from - patch.byteOffset, to - patch.byteOffset), targetOffset + from - position);
  }
}

export interface EncodedBlock {
  /** Block Header, Compressed Data, Block Padding and Check, in pieces of at most 1 MiB (never joined: no copy of a whole Block). */
  pieces: Uint8Array[];
  unpaddedSize: number;
  uncompressedSize: number;
}

interface EncodeRequest extends BlockContent {
  id: number;
  level: number;
  check: number;
}

type EncodeFs = Pick<typeof import('node:fs'), 'openSync' | 'readSync' | 'closeSync'>;

/**
 * The body of an encoding worker: answers each request with the encoded
 * Block. Self-contained: its source text is what workers run.
 */
export function encodeWorker(
  port: { on(event: 'message', listener: (request: EncodeRequest) => void): void; postMessage(message: unknown, transfer?: ArrayBuffer[]): void },
  setup: { basePath: string; module: LzmaWasmModule; pieceSize: number },
  fs: EncodeFs,
  bind: typeof bindLzma,
  fill: typeof fillContent,
): void {
  const lzma = bind(setup.module);
  const base = fs.openSync(setup.basePath, 'r');
  const pieceSize = setup.pieceSize;
  const inPtr = lzma.alloc(pieceSize);
  const outPtr = lzma.alloc(pieceSize);
  const headerPtr = lzma.alloc(1024);
  port.on('message', (request) => {
    if (request.id < 0) {
      fs.closeSync(base);
      port.postMessage({ id: request.id, closed: true });
      return;
    }
    let encoder: ReturnType<typeof lzma.blockEncoder> | undefined;
    try {
      encoder = lzma.blockEncoder(request.level, request.check);
      const output: Uint8Array[] = [];
      const drain = (produced: number) => {
        if (produced > 0) output.push(lzma.memory().slice(outPtr, outPtr + produced));
      };
      const end = request.byteOffset + request.length;
      for (let position = request.byteOffset; position < end; position += pieceSize) {
        const length = Math.min(pieceSize, end - position);
        let memory = lzma.memory();
        fill(fs, base, request, position, length, memory, inPtr);
        for (let offset = 0; offset < length; ) {
          const step = encoder.code(inPtr + offset, length - offset, outPtr, pieceSize, false);
          offset += step.consumed;
          drain(step.produced);
          memory = lzma.memory();
        }
      }
      for (let done = false; !done; ) {
        const step = encoder.code(inPtr, 0, outPtr, pieceSize, true);
        drain(step.produced);
        done = step.done;
      }
      const header = encoder.blockHeader(headerPtr);
      const pieces = [lzma.memory().slice(headerPtr, headerPtr + header.headerSize), ...output];
      port.postMessage(
        { id: request.id, pieces, unpaddedSize: header.unpaddedSize, uncompressedSize: header.uncompressedSize },
        pieces.map((piece) => piece.buffer as ArrayBuffer),
      );
    } catch (error) {
      port.postMessage({ id: request.id, error: String((error as Error)?.message), code: (error as { code?: string })?.code });
    } finally {
      encoder?.end();
    }
  });
}

const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const bindLzma = (${bindLzma.toString()});
const fillContent = (${fillContent.toString()});
(${encodeWorker.toString()})(parentPort, workerData, fs, bindLzma, fillContent);`;

/** Worker threads encoding Blocks; requests go to the least busy one. */
export class XzEncoderPool {
  private readonly pool: EncoderPool<Omit<EncodeRequest, 'id'>, { id: number; pieces: Uint8Array[]; unpaddedSize: number; uncompressedSize: number }, EncodedBlock>;

  constructor(basePath: string, threads: number) {
    this.pool = new EncoderPool('xz', WORKER_SOURCE, { basePath, module: lzmaModule(), pieceSize: PIECE_SIZE }, threads, (answer) => ({
      pieces: answer.pieces,
      unpaddedSize: answer.unpaddedSize,
      uncompressedSize: answer.uncompressedSize,
    }));
  }

  encode(content: BlockContent, level: number, check: number): Promise<EncodedBlock> {
    return this.pool.run({ ...content, level, check });
  }

  /** Lets each worker close its file, then ends it. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

export interface XzEncodeOptions<T extends BlockContent = BlockContent> {
  level: number;
  threads: number;
  /**
   * Blocks compressed before (a fleet's base, see image/blockcache.ts):
   * `lookup` returns a Block's stored form or undefined, `store` keeps a
   * freshly encoded one. Both see the content objects given to encodeXz.
   */
  reuse?: {
    lookup(content: T): Promise<EncodedBlock | undefined> | undefined;
    store(content: T, block: EncodedBlock): void;
  };
}

/**
 * The .xz file of an image given Block by Block: Stream Header, the Blocks
 * in order, Index, Stream Footer. At most one Block per thread and one more
 * are in flight (each worker has its next request waiting); the consumer's
 * pace (backpressure) sets the rest. An all-zero
 * Block is encoded once and its bytes reused; with `reuse`, Blocks stored
 * before are taken as they are.
 */
export async function* encodeXz<T extends BlockContent>(basePath: string, blocks: Iterable<T>, options: XzEncodeOptions<T>): AsyncGenerator<Uint8Array> {
  const check = XZ_CHECK.crc64;
  // Started on the first Block that needs encoding: an output made only of reused Blocks needs no worker.
  let pool: XzEncoderPool | undefined;
  let closed = false;
  const zeroBlocks = new Map<number, Promise<EncodedBlock>>();
  const fresh = (content: T): Promise<EncodedBlock> => {
    const reuse = options.reuse;
    // A lookup that settles after the consumer stopped must not start workers nobody closes.
    if (closed) return Promise.reject(new PiimgError('E_ABORTED', 'xz encoding stopped'));
    const encoded = (pool ??= new XzEncoderPool(basePath, options.threads)).encode(content, options.level, check);
    if (!reuse) return encoded;
    return encoded.then((block) => {
      reuse.store(content, block);
      return block;
    });
  };
  const reusedOrFresh = (content: T): Promise<EncodedBlock> => {
    const stored = options.reuse?.lookup(content);
    return stored ? stored.then((block) => block ?? fresh(content)) : fresh(content);
  };
  const encode = (content: T): Promise<EncodedBlock> => {
    if (content.baseRanges.length > 0 || content.patches.length > 0) return reusedOrFresh(content);
    let zero = zeroBlocks.get(content.length);
    if (!zero) {
      zero = reusedOrFresh(content);
      zeroBlocks.set(content.length, zero);
    }
    return zero;
  };
  const records: { unpaddedSize: number; uncompressedSize: number }[] = [];
  const inFlight: Promise<EncodedBlock>[] = [];
  // Settled rejections must not surface as unhandled while they wait in the queue.
  const track = (promise: Promise<EncodedBlock>) => {
    promise.catch(() => undefined);
    inFlight.push(promise);
  };
  try {
    yield encodeStreamHeader(check);
    const iterator = blocks[Symbol.iterator]();
    let next = iterator.next();
    while (!next.done || inFlight.length > 0) {
      while (!next.done && inFlight.length < options.threads + 1) {
        track(encode(next.value));
        next = iterator.next();
      }
      let block: EncodedBlock | undefined = await inFlight.shift()!;
      records.push({ unpaddedSize: block.unpaddedSize, uncompressedSize: block.uncompressedSize });
      // A copy of the list (all-zero Blocks share theirs), emptied as the consumer takes each
      // piece: pieces written can be freed while the rest of a 24 MiB Block waits.
      const pieces = block.pieces.slice();
      block = undefined;
      while (pieces.length > 0) yield pieces.shift()!;
    }
    const index = encodeIndex(records);
    yield index;
    yield encodeStreamFooter(check, index.length);
  } finally {
    closed = true;
    await pool?.close();
  }
}
