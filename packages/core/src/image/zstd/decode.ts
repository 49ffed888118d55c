import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream';
import { isZstdError, loadZstd } from '@piimg/wasm';
import { PiimgError } from '../../errors.js';
import { nodeZstd, zstdBackend } from './backend.js';

/**
 * Reading .zst: concatenated zstd frames (RFC 8878 §3.1) decoded as one
 * stream by libzstd (Node's zlib where it has zstd, else wasm: backend.ts),
 * verifying each frame's checksum when it has one.
 * Memory is bounded: a frame asking for a window over 128 MiB (what
 * `zstd --long` or levels 20-22 with --ultra may write) is refused rather
 * than allocated, the limit `zstd -d` itself applies without --memory.
 */

/** log2 of the largest window accepted: 128 MiB (zstd's ZSTD_WINDOWLOG_LIMIT_DEFAULT). */
export const ZSTD_WINDOW_LOG_MAX = 27;

function badCompressed(path: string, error: unknown): PiimgError {
  if (error instanceof PiimgError) return error;
  return new PiimgError('E_BAD_COMPRESSED', `${path} is not a valid zstd file: ${(error as Error).message}`, { path, compression: 'zstd' }, { cause: error });
}

/** The decoded bytes of the .zst file at `path`, in chunks of at most 4 MiB. */
export function zstdStreamChunks(path: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Uint8Array> {
  return zstdBackend() === 'zlib' ? zlibStreamChunks(path, options) : wasmStreamChunks(path, options);
}

/**
 * Node's zlib reports a file that ends inside a frame (or holds no frame) as
 * "unexpected end of file" (Z_BUF_ERROR), and libzstd's own errors with
 * codes `ZSTD_error_*`.
 */
async function* zlibStreamChunks(path: string, options: { signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
  const c = nodeZstd.constants;
  const decoder = nodeZstd.createZstdDecompress!({ params: { [c.ZSTD_d_windowLogMax!]: ZSTD_WINDOW_LOG_MAX }, chunkSize: 1 << 20 });
  const input = createReadStream(path, { highWaterMark: 1 << 20, ...(options.signal ? { signal: options.signal } : {}) });
  // pipeline destroys both streams on an error or an early return; the error reaches the loop below.
  const output = pipeline(input, decoder, () => undefined);
  try {
    for await (const chunk of output) yield chunk as Buffer;
  } catch (error) {
    const code = String((error as { code?: unknown }).code ?? '');
    if (code === 'Z_BUF_ERROR') throw new PiimgError('E_BAD_COMPRESSED', `${path} is truncated`, { path, compression: 'zstd' }, { cause: error });
    throw code.startsWith('ZSTD_') || code.startsWith('Z_') ? badCompressed(path, error) : error;
  } finally {
    input.destroy();
    decoder.destroy();
  }
}

async function* wasmStreamChunks(path: string, options: { signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
  const zstd = loadZstd();
  const decoder = zstd.decoder(ZSTD_WINDOW_LOG_MAX);
  const inSize = 1 << 20;
  const outSize = 4 << 20;
  const inPtr = zstd.alloc(inSize);
  const outPtr = zstd.alloc(outSize);
  try {
    // True between frames: the input may end only there.
    let atFrameEnd = false;
    let sawInput = false;
    for await (const chunk of createReadStream(path, { highWaterMark: inSize, ...(options.signal ? { signal: options.signal } : {}) })) {
      const input = chunk as Buffer;
      if (input.length === 0) continue;
      sawInput = true;
      zstd.memory().set(input, inPtr);
      for (let offset = 0; offset < input.length || (!atFrameEnd && offset === input.length); ) {
        const step = decoder.decode(inPtr + offset, input.length - offset, outPtr, outSize);
        offset += step.consumed;
        if (step.produced > 0) yield zstd.memory().slice(outPtr, outPtr + step.produced);
        atFrameEnd = step.frameEnd;
        // Input used up and the output not full: the decoder needs the next chunk.
        if (offset === input.length && step.produced < outSize) break;
      }
    }
    if (!sawInput || !atFrameEnd) throw new PiimgError('E_BAD_COMPRESSED', `${path} is truncated`, { path, compression: 'zstd' });
  } catch (error) {
    throw isZstdError(error) ? badCompressed(path, error) : error;
  } finally {
    decoder.end();
    zstd.free(inPtr);
    zstd.free(outPtr);
  }
}
