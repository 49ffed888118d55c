import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice, Overlay } from '@piimg/core';

// image.derive() starts the new overlay with its parent's changes shared, copy-on-write on
// either side (Overlay.adopt). Random writes to a family of overlays are checked against
// plain copies of the bytes each one should hold.
const dir = mkdtempSync(join(tmpdir(), 'piimg-overlay-share-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIZE = 1 << 20;
const CHUNK = 4096;

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state / 2 ** 32;
  };
}

describe('Overlay.adopt: changes shared copy-on-write', () => {
  it('parents, children and grandchildren never see each other’s later writes, in memory or spilled', () => {
    for (const maxMemory of [Infinity, 64 * CHUNK]) {
      const next = random(maxMemory === Infinity ? 1 : 2);
      const baseBytes = new Uint8Array(SIZE).map((_, i) => (i * 7) & 0xff);
      const base = new MemoryDevice(baseBytes.slice());
      const overlays: Overlay[] = [];
      const models: Uint8Array[] = [];
      const make = (from?: number) => {
        const overlay = new Overlay(base, { chunkSize: CHUNK, maxMemory, spillDir: dir });
        if (from !== undefined) overlay.adopt(overlays[from]!);
        overlays.push(overlay);
        models.push(from === undefined ? baseBytes.slice() : models[from]!.slice());
      };
      const write = (which: number) => {
        // Whole chunks, pieces of chunks (partial chunks) and runs across chunk borders.
        const length = 1 + Math.floor(next() * 3 * CHUNK);
        const at = Math.floor(next() * (SIZE - length));
        const data = new Uint8Array(length).map(() => Math.floor(next() * 256));
        overlays[which]!.write(at, data);
        models[which]!.set(data, at);
      };
      make();
      for (let step = 0; step < 600; step++) {
        if (step % 100 === 50 && overlays.length < 6) make(Math.floor(next() * overlays.length));
        write(Math.floor(next() * overlays.length));
      }
      for (const [i, overlay] of overlays.entries()) {
        expect(Buffer.from(overlay.read(0, SIZE)).equals(Buffer.from(models[i]!)), `overlay ${i}, maxMemory ${maxMemory}`).toBe(true);
        const chunks = [...overlay.changedChunks()];
        for (const chunk of chunks) expect(Buffer.from(chunk.data).equals(Buffer.from(models[i]!.subarray(chunk.byteOffset, chunk.byteOffset + chunk.data.length)))).toBe(true);
      }
      // The base is never written.
      expect(Buffer.from(base.read(0, SIZE)).equals(Buffer.from(baseBytes))).toBe(true);
      for (const overlay of overlays) overlay.close();
    }
  });

  it('a child shares its parent’s chunks until one of them writes', () => {
    const base = new MemoryDevice(new Uint8Array(SIZE));
    const parent = new Overlay(base, { chunkSize: CHUNK });
    parent.write(0, new Uint8Array(8 * CHUNK).fill(1));
    const child = new Overlay(base, { chunkSize: CHUNK });
    child.adopt(parent);
    expect(child.stats.changedChunks).toBe(8);
    child.write(CHUNK, new Uint8Array([9]));
    parent.write(2 * CHUNK, new Uint8Array([7]));
    expect([...parent.read(CHUNK, 1), ...parent.read(2 * CHUNK, 1)]).toEqual([1, 7]);
    expect([...child.read(CHUNK, 1), ...child.read(2 * CHUNK, 1)]).toEqual([9, 1]);
    // An overlay with changes of its own takes the parent's by copying them.
    const other = new Overlay(base, { chunkSize: CHUNK });
    other.write(SIZE - 1, new Uint8Array([5]));
    other.adopt(child);
    expect([...other.read(CHUNK, 1), ...other.read(SIZE - 1, 1)]).toEqual([9, 5]);
    other.write(CHUNK, new Uint8Array([3]));
    expect(child.read(CHUNK, 1)[0]).toBe(9);
  });
});
