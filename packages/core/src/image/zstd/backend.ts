import zlib from 'node:zlib';
import type { Transform } from 'node:stream';

/**
 * Which libzstd compresses and decompresses .zst: Node's own zlib, native,
 * where the running Node has zstd (22.15+, 23.8+; Ref:
 * https://nodejs.org/api/zlib.html#zlibzstdcompresssyncbuffer-options), else
 * the WebAssembly build of @piimg/wasm. PIIMG_ZSTD=wasm forces the
 * WebAssembly build (tests of that path on a newer Node; a workaround if the
 * native one misbehaves). Both are libzstd: with the same version their
 * frames are byte for byte the same, and each reads the other's.
 */
export type ZstdBackend = 'zlib' | 'wasm';

/** The zstd part of node:zlib (@types/node 20 does not declare it; absent before Node 22.15). */
export interface ZstdZlib {
  zstdCompressSync?: (data: Uint8Array, options: { params: Record<number, number>; pledgedSrcSize?: number; chunkSize?: number }) => Buffer;
  createZstdDecompress?: (options: { params: Record<number, number>; chunkSize?: number }) => Transform;
  constants: Record<string, number>;
}

export const nodeZstd = zlib as unknown as ZstdZlib;

export function zstdBackend(): ZstdBackend {
  if (process.env.PIIMG_ZSTD === 'wasm') return 'wasm';
  return typeof nodeZstd.zstdCompressSync === 'function' && typeof nodeZstd.createZstdDecompress === 'function' ? 'zlib' : 'wasm';
}
