import { closeSync, openSync, readSync } from 'node:fs';

/**
 * Reads a file of this machine as a sequence of chunks, for `writeFile` of
 * large files without holding them in memory. Each chunk is a fresh array,
 * so a consumer may keep it.
 */
export function* readHostFile(path: string, chunkSize = 4 * 1024 * 1024): Generator<Uint8Array> {
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const chunk = new Uint8Array(chunkSize);
      const count = readSync(fd, chunk, 0, chunkSize, null);
      if (count === 0) return;
      yield count === chunkSize ? chunk : chunk.subarray(0, count);
    }
  } finally {
    closeSync(fd);
  }
}
