import { loadZstd, zstdCompress, type Zstd } from '@piimg/wasm';
import { PiimgError } from '../../errors.js';
import { nodeZstd, zstdBackend } from './backend.js';
import { DEFAULT_ZSTD_LEVEL } from './encode.js';

/** One libzstd instance per thread, made on first use (wasm backend only). */
let instance: Zstd | undefined;

/**
 * Compresses `data` into one zstd frame on the calling thread, with its
 * content size and checksum: frames made of consecutive chunks concatenate
 * into one valid `.zst` stream (RFC 8878 §3.1). For a service that streams
 * an image chunk by chunk from its own worker threads; `Image.save` and
 * `createReadStream` compress whole images in parallel instead. Node's zlib
 * compresses where it has zstd, else the wasm build (backend.ts).
 */
export function compressZstdFrame(data: Uint8Array, level: number = DEFAULT_ZSTD_LEVEL): Uint8Array {
  if (!Number.isInteger(level) || level < 1 || level > 19) throw new PiimgError('EINVAL', `zstd level must be an integer 1..19, got ${level}`, { level });
  if (zstdBackend() === 'zlib') {
    const c = nodeZstd.constants;
    // 1 MiB of output at a time, as zstdCompress gives the wasm build: libzstd's bytes depend on it.
    return nodeZstd.zstdCompressSync!(data, {
      params: { [c.ZSTD_c_compressionLevel!]: level, [c.ZSTD_c_checksumFlag!]: 1 },
      pledgedSrcSize: data.length,
      chunkSize: 1 << 20,
    });
  }
  instance ??= loadZstd();
  return zstdCompress(data, level, instance);
}
