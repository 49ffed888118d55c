import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeChunks } from '../packages/core/src/image/save.js';

// A save writes the changed chunks over the copy of the base, contiguous runs with one
// writev each. Checked against the bytes each chunk must land on, with a file handle
// whose writev writes only part of what it is given (as a short write may).
const dir = mkdtempSync(join(tmpdir(), 'piimg-save-chunks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CHUNK = 64 * 1024;

describe('writeChunks', () => {
  it('writes every chunk at its offset, in runs, also when writev writes short', async () => {
    // Runs of 1, 3, 70 (more than one writev) and 2 chunks, with gaps between them.
    const starts = [0, 2, 3, 4, 10, ...Array.from({ length: 70 }, (_, i) => 20 + i), 100, 101];
    const chunks = starts.map((index) => ({ byteOffset: index * CHUNK, data: new Uint8Array(randomBytes(CHUNK)) }));
    const expected = new Uint8Array(102 * CHUNK);
    for (const chunk of chunks) expected.set(chunk.data, chunk.byteOffset);
    for (const short of [false, true]) {
      const path = join(dir, `out-${short}.bin`);
      const handle = await open(path, 'w+');
      let calls = 0;
      const shortened = new Proxy(handle, {
        get(target, key) {
          if (key === 'writev' && short) {
            return async (buffers: Buffer[], position: number) => {
              calls++;
              // Half of the first buffer only.
              const { bytesWritten } = await target.write(buffers[0]!, 0, buffers[0]!.length >> 1, position);
              return { bytesWritten, buffers };
            };
          }
          if (key === 'writev') calls++;
          const value = Reflect.get(target, key) as unknown;
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      }) as FileHandle;
      let checks = 0;
      const written = await writeChunks(shortened, chunks, () => checks++);
      await handle.close();
      expect(written).toBe(chunks.length * CHUNK);
      expect(Buffer.from(readFileSync(path)).equals(Buffer.from(expected))).toBe(true);
      // One writev per run: 0 | 2,3,4 | 10 | 20..83 | 84..89 | 100,101.
      expect(calls).toBe(6);
      expect(checks).toBe(6);
    }
  });
});
