/**
 * libzstd (Debian's libzstd 1.5.7) compiled to WebAssembly by
 * build/build-zstd.sh: a streaming encoder of whole frames (the unit of
 * parallel encoding; concatenated frames are one valid zstd stream, RFC 8878
 * §3.1) that record their content size and checksum, and a streaming decoder
 * of concatenated frames whose window is bounded.
 *
 * Like lzma.ts, the module has no JavaScript glue: `zstdModule()` compiles it
 * once, the compiled module can be posted to worker threads, and `bindZstd()`
 * (self-contained, so its source text can run in a worker) wraps a fresh
 * instance whose memory holds the buffers.
 */
import { readFileSync } from 'node:fs';

// The project compiles without the DOM library, where WebAssembly's types live.
export interface ZstdWasmModule {
  readonly __zstdWasmModule?: never;
}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => ZstdWasmModule;
  Instance: new (module: ZstdWasmModule, imports: Record<string, unknown>) => WasmInstance;
};

/** The lowest level offered (zstd's negative "fast" levels are left out). */
export const ZSTD_MIN_LEVEL = 1;
/** The highest level offered: zstd's "ultra" levels 20-22 need windows of up to 128 MiB per worker. */
export const ZSTD_MAX_LEVEL = 19;
/** zstd's own default level. */
export const ZSTD_DEFAULT_LEVEL = 3;

/** A libzstd call failed; `code` is zstd's error name (`ZSTD_error_corruption_detected`...). */
export class ZstdError extends Error {
  override readonly name = 'ZstdError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ZstdDecodeResult {
  /** Bytes taken from the input. */
  consumed: number;
  /** Bytes written to the output. */
  produced: number;
  /** A frame was just completed and fully flushed (the next input byte, if any, starts a new frame). */
  frameEnd: boolean;
}

export interface ZstdDecoder {
  /** One ZSTD_decompressStream() step over buffers in the instance's memory. */
  decode(inPtr: number, inSize: number, outPtr: number, outSize: number): ZstdDecodeResult;
  end(): void;
}

export interface ZstdFrameEncoder {
  /**
   * One ZSTD_compressStream2() step; `end` once all the frame's input has
   * been given, then repeated until `done`.
   */
  encode(inPtr: number, inSize: number, outPtr: number, outSize: number, end: boolean): { consumed: number; produced: number; done: boolean };
}

export interface Zstd {
  /** A fresh view of the instance's memory (growth replaces the old one). */
  memory(): Uint8Array;
  /** Allocates in the instance's memory; throws ZstdError ZSTD_error_memory_allocation when it cannot. */
  alloc(size: number): number;
  free(ptr: number): void;
  /**
   * Starts one frame of exactly `contentSize` bytes at `level` (1-19) on the
   * instance's one compression context, recording the content size and an
   * XXH64 checksum in the frame. Starting another frame abandons this one.
   */
  frameEncoder(level: number, contentSize: number): ZstdFrameEncoder;
  /** A decoder of concatenated frames refusing windows larger than 2^windowLogMax bytes. */
  decoder(windowLogMax: number): ZstdDecoder;
}

/**
 * Wraps an instance of zstd.wasm. Self-contained (it refers to nothing
 * outside itself), so `bindZstd.toString()` can run in a worker thread.
 */
export function bindZstd(module: ZstdWasmModule): Zstd {
  type Fn = (...args: number[]) => number;
  // Ref: lib/zstd_errors.h, ZSTD_ErrorCode.
  const names: Record<number, string> = {
    1: 'GENERIC',
    10: 'prefix_unknown',
    12: 'version_unsupported',
    14: 'frameParameter_unsupported',
    16: 'frameParameter_windowTooLarge',
    20: 'corruption_detected',
    22: 'checksum_wrong',
    24: 'literals_headerWrong',
    40: 'parameter_unsupported',
    42: 'parameter_outOfBound',
    44: 'tableLog_tooLarge',
    46: 'maxSymbolValue_tooLarge',
    64: 'memory_allocation',
    70: 'dstSize_tooSmall',
    72: 'srcSize_wrong',
  };
  const messages: Record<string, string> = {
    prefix_unknown: 'not in the zstd format',
    version_unsupported: 'unsupported zstd version',
    frameParameter_unsupported: 'unsupported frame parameter',
    frameParameter_windowTooLarge: 'the frame needs a larger window than allowed',
    corruption_detected: 'compressed data is corrupt',
    checksum_wrong: 'checksum mismatch',
    memory_allocation: 'out of memory',
    srcSize_wrong: 'content size does not match the frame header',
  };
  const fail = (errorCode: number, what: string): never => {
    const name = names[errorCode] ?? `${errorCode}`;
    const code = `ZSTD_error_${name}`;
    const error = new Error(`${what}: ${messages[name] ?? name} (${code})`) as Error & { code: string };
    error.name = 'ZstdError';
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
  const frameBegin = call('piimg_zstd_frame_begin');
  const frameCompress = call('piimg_zstd_frame_compress');
  const decompress = call('piimg_zstd_decompress');
  const decoderFree = call('piimg_zstd_decoder_free');
  // Scratch: two uint32 of progress.
  const scratch = malloc(8);
  if (scratch === 0) fail(64, 'zstd');
  let cctx = 0;

  const alloc = (size: number): number => {
    const ptr = size > 0x7fffffff ? 0 : malloc(Math.max(1, size));
    if (ptr === 0) fail(64, `zstd: allocating ${size} bytes`);
    return ptr;
  };

  return {
    memory: () => new Uint8Array(memory.buffer),
    alloc,
    free: (ptr) => free(ptr),
    frameEncoder(level, contentSize) {
      if (!Number.isInteger(level) || level < 1 || level > 19) fail(42, `zstd encoder: level ${level}`);
      if (cctx === 0) cctx = call('piimg_zstd_cctx_new')();
      if (cctx === 0) fail(64, 'zstd encoder');
      const handle = cctx;
      const begun = frameBegin(handle, level, contentSize);
      if (begun < 0) fail(-begun, 'zstd encoder');
      return {
        encode(inPtr, inSize, outPtr, outSize, end) {
          const ret = frameCompress(handle, inPtr, inSize, outPtr, outSize, end ? 1 : 0, scratch);
          if (ret < 0) fail(-ret, 'zstd encoder');
          const progress = new Uint32Array(memory.buffer, scratch, 2);
          return { consumed: progress[0]!, produced: progress[1]!, done: end && ret === 0 };
        },
      };
    },
    decoder(windowLogMax) {
      const handle = call('piimg_zstd_decoder')(windowLogMax);
      if (handle === 0) fail(64, 'zstd decoder');
      return {
        decode(inPtr, inSize, outPtr, outSize) {
          const ret = decompress(handle, inPtr, inSize, outPtr, outSize, scratch);
          if (ret < 0) fail(-ret, 'zstd');
          const progress = new Uint32Array(memory.buffer, scratch, 2);
          return { consumed: progress[0]!, produced: progress[1]!, frameEnd: ret === 1 };
        },
        end() {
          decoderFree(handle);
        },
      };
    },
  };
}

let compiled: ZstdWasmModule | undefined;

/** The compiled zstd.wasm, compiled once per thread; can be posted to worker threads. */
export function zstdModule(): ZstdWasmModule {
  compiled ??= new WebAssembly.Module(readFileSync(new URL('../dist/zstd.wasm', import.meta.url)));
  return compiled;
}

/** A fresh libzstd instance on this thread. */
export function loadZstd(): Zstd {
  return bindZstd(zstdModule());
}

/** Errors thrown by bindZstd carry `name === 'ZstdError'` and a zstd `code`. */
export function isZstdError(error: unknown): error is ZstdError {
  return error instanceof Error && error.name === 'ZstdError' && typeof (error as { code?: unknown }).code === 'string';
}

/**
 * Compresses `data` held in memory into one frame (tests, small inputs, the
 * chunks of a streamed image); `zstd` reuses an instance instead of making one.
 */
export function zstdCompress(data: Uint8Array, level = ZSTD_DEFAULT_LEVEL, zstd: Zstd = loadZstd()): Uint8Array {
  const outSize = 1 << 20;
  const inPtr = zstd.alloc(data.length);
  const outPtr = zstd.alloc(outSize);
  const pieces: Uint8Array[] = [];
  try {
    zstd.memory().set(data, inPtr);
    const encoder = zstd.frameEncoder(level, data.length);
    for (let offset = 0, done = false; !done; ) {
      const step = encoder.encode(inPtr + offset, data.length - offset, outPtr, outSize, true);
      offset += step.consumed;
      pieces.push(zstd.memory().slice(outPtr, outPtr + step.produced));
      done = step.done;
    }
    return joinPieces(pieces);
  } finally {
    zstd.free(inPtr);
    zstd.free(outPtr);
  }
}

/**
 * Decodes concatenated zstd frames held in memory (tests, small inputs),
 * verifying checksums; throws ZstdError. `maxOutput` bounds the result,
 * `windowLogMax` (default 27, 128 MiB) the window the decoder allocates.
 */
export function zstdDecompress(data: Uint8Array, options: { windowLogMax?: number; maxOutput?: number } = {}): Uint8Array {
  const zstd = loadZstd();
  const maxOutput = options.maxOutput ?? 1 << 30;
  const decoder = zstd.decoder(options.windowLogMax ?? 27);
  const inPtr = zstd.alloc(data.length);
  const outSize = 1 << 20;
  const outPtr = zstd.alloc(outSize);
  const pieces: Uint8Array[] = [];
  let total = 0;
  try {
    zstd.memory().set(data, inPtr);
    let offset = 0;
    for (;;) {
      const step = decoder.decode(inPtr + offset, data.length - offset, outPtr, outSize);
      offset += step.consumed;
      total += step.produced;
      if (total > maxOutput) throw new ZstdError('ZSTD_error_dstSize_tooSmall', `zstd: decodes to more than ${maxOutput} bytes`);
      pieces.push(zstd.memory().slice(outPtr, outPtr + step.produced));
      if (step.frameEnd && offset === data.length) break;
      if (step.consumed === 0 && step.produced === 0) throw new ZstdError('ZSTD_error_srcSize_wrong', 'zstd: compressed data is truncated');
    }
  } finally {
    decoder.end();
    zstd.free(inPtr);
    zstd.free(outPtr);
  }
  return joinPieces(pieces);
}

function joinPieces(pieces: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((sum, piece) => sum + piece.length, 0));
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}
