/**
 * liblzma (Debian's xz-utils 5.8.1) compiled to WebAssembly by
 * build/build-lzma.sh: decoding single .xz Blocks (the unit of parallel
 * decoding), a streaming .xz decoder, and a streaming Block encoder whose
 * Block Header records both sizes, as parallel readers need.
 *
 * The module has no JavaScript glue: `lzmaModule()` compiles it once and the
 * compiled module can be posted to worker threads, where `bindLzma()` (a
 * self-contained function, so its source text can run in a worker) wraps a
 * fresh instance. Buffers live in the instance's memory; callers read files
 * straight into it and write from it, without copies.
 */
import { readFileSync } from 'node:fs';

// The project compiles without the DOM library, where WebAssembly's types live.
export interface LzmaWasmModule {
  readonly __lzmaWasmModule?: never;
}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => LzmaWasmModule;
  Instance: new (module: LzmaWasmModule, imports: Record<string, unknown>) => WasmInstance;
};

/** Integrity check types of .xz (Ref: The .xz File Format 1.2.1 §2.1.1.2 Stream Flags). */
export const XZ_CHECK = { none: 0x00, crc32: 0x01, crc64: 0x04, sha256: 0x0a } as const;

/** A liblzma call failed; `code` is liblzma's name for it (`LZMA_DATA_ERROR`, `LZMA_MEMLIMIT_ERROR`...). */
export class LzmaError extends Error {
  override readonly name = 'LzmaError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface CodeResult {
  /** Bytes taken from the input. */
  consumed: number;
  /** Bytes written to the output. */
  produced: number;
  /** The coder finished (liblzma's LZMA_STREAM_END). */
  done: boolean;
}

export interface LzmaCoder {
  /** One lzma_code() step over buffers in the instance's memory; `finish` once the input is complete. */
  code(inPtr: number, inSize: number, outPtr: number, outSize: number, finish: boolean): CodeResult;
  /**
   * Block encoders, after `code` reported `done`: writes the Block Header (at
   * most 1024 bytes) at `outPtr` and returns its size and the sizes the Index records.
   */
  blockHeader(outPtr: number): { headerSize: number; unpaddedSize: number; uncompressedSize: number };
  end(): void;
}

export interface Lzma {
  /** A fresh view of the instance's memory (growth replaces the old one). */
  memory(): Uint8Array;
  /** Allocates in the instance's memory; throws LzmaError LZMA_MEM_ERROR when it cannot. */
  alloc(size: number): number;
  free(ptr: number): void;
  /**
   * Decodes one whole Block (Header to Check, `inSize` bytes at `inPtr`) into
   * exactly `uncompressedSize` bytes at `outPtr`, verifying the Check. The
   * sizes come from the Index; a Header that disagrees is a data error.
   * Filters needing more than `memlimit` bytes are refused before allocating.
   */
  decodeBlock(inPtr: number, inSize: number, sizes: { unpaddedSize: number; uncompressedSize: number }, check: number, outPtr: number, memlimit: number): void;
  /** A decoder of whole .xz files (concatenated Streams included), verifying every Check. */
  streamDecoder(memlimit: number): LzmaCoder;
  /** An encoder of one Block's data with LZMA2 at `preset` (0-9); the Header comes last, see LzmaCoder.blockHeader. */
  blockEncoder(preset: number, check: number): LzmaCoder;
}

/**
 * Wraps an instance of lzma.wasm. Self-contained (it refers to nothing
 * outside itself), so `bindLzma.toString()` can run in a worker thread.
 */
export function bindLzma(module: LzmaWasmModule): Lzma {
  type Fn = (...args: number[]) => number;
  const names = ['', 'LZMA_STREAM_END', 'LZMA_NO_CHECK', 'LZMA_UNSUPPORTED_CHECK', 'LZMA_GET_CHECK', 'LZMA_MEM_ERROR', 'LZMA_MEMLIMIT_ERROR', 'LZMA_FORMAT_ERROR', 'LZMA_OPTIONS_ERROR', 'LZMA_DATA_ERROR', 'LZMA_BUF_ERROR', 'LZMA_PROG_ERROR'];
  const messages: Record<string, string> = {
    LZMA_MEM_ERROR: 'out of memory',
    LZMA_MEMLIMIT_ERROR: 'needs more memory than allowed',
    LZMA_FORMAT_ERROR: 'not in the .xz format',
    LZMA_OPTIONS_ERROR: 'unsupported options',
    LZMA_DATA_ERROR: 'compressed data is corrupt',
    LZMA_BUF_ERROR: 'compressed data is truncated',
    LZMA_PROG_ERROR: 'internal error',
  };
  const fail = (ret: number, what: string): never => {
    const code = names[ret] ?? `LZMA_RET_${ret}`;
    const error = new Error(`${what}: ${messages[code] ?? code} (${code})`) as Error & { code: string };
    error.name = 'LzmaError';
    error.code = code;
    throw error;
  };
  const WasmApi = (globalThis as unknown as { WebAssembly: { Instance: new (m: unknown, i: unknown) => { exports: Record<string, unknown> } } }).WebAssembly;
  const instance = new WasmApi.Instance(module, { env: { emscripten_notify_memory_growth: () => {} } });
  const exports = instance.exports;
  const memory = exports.memory as { buffer: ArrayBuffer };
  const call = (name: string): Fn => exports[name] as Fn;
  (exports._initialize as () => void)();
  const malloc = call('malloc');
  const free = call('free');
  const blockDecode = call('piimg_lzma_block_decode');
  const code = call('piimg_lzma_code');
  const header = call('piimg_lzma_block_header');
  const end = call('piimg_lzma_end');
  // Scratch: two uint32 of progress, two doubles of sizes.
  const scratch = malloc(24);
  if (scratch === 0) fail(5, 'lzma');

  const alloc = (size: number): number => {
    const ptr = size > 0x7fffffff ? 0 : malloc(Math.max(1, size));
    if (ptr === 0) fail(5, `lzma: allocating ${size} bytes`);
    return ptr;
  };
  const coder = (handle: number, what: string): LzmaCoder => ({
    code(inPtr, inSize, outPtr, outSize, finish) {
      const ret = code(handle, inPtr, inSize, outPtr, outSize, finish ? 1 : 0, scratch);
      if (ret > 1) fail(ret, what);
      const progress = new Uint32Array(memory.buffer, scratch, 2);
      return { consumed: progress[0]!, produced: progress[1]!, done: ret === 1 };
    },
    blockHeader(outPtr) {
      const headerSize = header(handle, outPtr, scratch + 8);
      if (headerSize === 0) fail(11, what);
      const sizes = new Float64Array(memory.buffer, scratch + 8, 2);
      return { headerSize, unpaddedSize: sizes[0]!, uncompressedSize: sizes[1]! };
    },
    end() {
      end(handle);
    },
  });

  return {
    memory: () => new Uint8Array(memory.buffer),
    alloc,
    free: (ptr) => free(ptr),
    decodeBlock(inPtr, inSize, sizes, check, outPtr, memlimit) {
      const ret = blockDecode(inPtr, inSize, sizes.unpaddedSize, sizes.uncompressedSize, check, outPtr, memlimit);
      if (ret !== 0) fail(ret, 'xz block');
    },
    streamDecoder(memlimit) {
      const handle = call('piimg_lzma_stream_decoder')(memlimit);
      if (handle === 0) fail(5, 'xz decoder');
      return coder(handle, 'xz');
    },
    blockEncoder(preset, check) {
      if (!Number.isInteger(preset) || preset < 0 || preset > 9) fail(8, `xz encoder: level ${preset}`);
      const handle = call('piimg_lzma_block_encoder')(preset, check);
      if (handle === 0) fail(5, 'xz encoder');
      return coder(handle, 'xz encoder');
    },
  };
}

let compiled: LzmaWasmModule | undefined;

/** The compiled lzma.wasm, compiled once per thread; can be posted to worker threads. */
export function lzmaModule(): LzmaWasmModule {
  compiled ??= new WebAssembly.Module(readFileSync(new URL('../dist/lzma.wasm', import.meta.url)));
  return compiled;
}

/** A fresh liblzma instance on this thread. */
export function loadLzma(): Lzma {
  return bindLzma(lzmaModule());
}

/** Errors thrown by bindLzma carry `name === 'LzmaError'` and a liblzma `code`. */
export function isLzmaError(error: unknown): error is LzmaError {
  return error instanceof Error && error.name === 'LzmaError' && typeof (error as { code?: unknown }).code === 'string';
}

/**
 * Decodes a whole .xz file held in memory (tests, small inputs), verifying
 * every Check; throws LzmaError. `maxOutput` bounds the result.
 */
export function xzDecompress(data: Uint8Array, options: { memlimit?: number; maxOutput?: number } = {}): Uint8Array {
  const lzma = loadLzma();
  const maxOutput = options.maxOutput ?? 1 << 30;
  const decoder = lzma.streamDecoder(options.memlimit ?? 256 << 20);
  const inPtr = lzma.alloc(data.length);
  const outSize = 1 << 20;
  const outPtr = lzma.alloc(outSize);
  const pieces: Uint8Array[] = [];
  let total = 0;
  try {
    lzma.memory().set(data, inPtr);
    let offset = 0;
    for (;;) {
      const step = decoder.code(inPtr + offset, data.length - offset, outPtr, outSize, true);
      offset += step.consumed;
      total += step.produced;
      if (total > maxOutput) throw new LzmaError('LZMA_MEMLIMIT_ERROR', `xz: decodes to more than ${maxOutput} bytes`);
      pieces.push(lzma.memory().slice(outPtr, outPtr + step.produced));
      if (step.done) break;
      if (step.consumed === 0 && step.produced === 0) throw new LzmaError('LZMA_BUF_ERROR', 'xz: compressed data is truncated');
    }
  } finally {
    decoder.end();
    lzma.free(inPtr);
    lzma.free(outPtr);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}
