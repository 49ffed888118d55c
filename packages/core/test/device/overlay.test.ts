import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDevice, FileReader, MemoryDevice, Overlay, slice } from '../../src/device/index.js';
import { isPiimgError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-device-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

function patterned(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

describe('Overlay', () => {
  it('serves merged reads and never writes the base', () => {
    const baseBytes = patterned(10_000);
    const base = new MemoryDevice(baseBytes.slice());
    const overlay = new Overlay(base, { chunkSize: 512 });
    overlay.write(100, new Uint8Array([1, 2, 3]));
    overlay.write(1020, new Uint8Array(10).fill(9)); // spans chunks 1 and 2
    expect(Array.from(overlay.read(99, 5))).toEqual([baseBytes[99], 1, 2, 3, baseBytes[103]]);
    expect(Array.from(overlay.read(1019, 12))).toEqual([baseBytes[1019], ...new Array(10).fill(9), baseBytes[1030]]);
    expect(base.bytes).toEqual(baseBytes);
    // Chunks 0, 1 and 2 changed: one merged range.
    expect(overlay.changedRanges()).toEqual([{ byteOffset: 0, length: 1536 }]);
  });

  it('keeps the partial last chunk at the device size', () => {
    const base = new MemoryDevice(patterned(1300));
    const overlay = new Overlay(base, { chunkSize: 512 });
    overlay.write(1299, new Uint8Array([7]));
    expect(overlay.changedRanges()).toEqual([{ byteOffset: 1024, length: 276 }]);
    expect(overlay.read(1299, 1)[0]).toBe(7);
    expect(() => overlay.write(1300, new Uint8Array([1]))).toThrowError(/outside/);
  });

  it('rejects out-of-range access with E_OUT_OF_RANGE', () => {
    const overlay = new Overlay(new MemoryDevice(1024), { chunkSize: 512 });
    for (const call of [() => overlay.read(-1, 1), () => overlay.read(1000, 100), () => overlay.write(1024, new Uint8Array(1))]) {
      let error: unknown;
      try {
        call();
      } catch (caught) {
        error = caught;
      }
      expect(isPiimgError(error, 'E_OUT_OF_RANGE')).toBe(true);
    }
  });

  it('spills to a temporary file past its memory bound and stays correct', () => {
    const base = new MemoryDevice(patterned(64 * 1024));
    const overlay = new Overlay(base, { chunkSize: 1024, maxMemory: 4096, spillDir: dir });
    const model = patterned(64 * 1024);
    for (let i = 0; i < 40; i++) {
      const data = patterned(700, i + 3);
      const at = (i * 1531) % (64 * 1024 - 700);
      overlay.write(at, data);
      model.set(data, at);
    }
    expect(overlay.stats.memoryBytes).toBeLessThanOrEqual(4096);
    expect(overlay.stats.spilledBytes).toBeGreaterThan(0);
    expect(same(overlay.read(0, model.length), model)).toBe(true);
    const merged = new Uint8Array(model.length);
    merged.set(base.bytes);
    for (const chunk of overlay.changedChunks()) merged.set(chunk.data, chunk.byteOffset);
    expect(same(merged, model)).toBe(true);
    overlay.close();
    expect(readdirSync(dir).filter((name) => name.startsWith('piimg-overlay-'))).toEqual([]);
  });

  it('fills a chunk written piece by piece without reading the base under it', () => {
    const baseBytes = patterned(8192);
    const device = new MemoryDevice(baseBytes.slice());
    let baseReads = 0;
    const base = { size: device.size, read: (byteOffset: number, length: number) => (baseReads++, device.read(byteOffset, length)) };
    const overlay = new Overlay(base, { chunkSize: 4096 });
    const model = baseBytes.slice();
    // File data laid out back to back, as libext2fs writes it: 1000 + 3000 + 96 bytes cover chunk 0.
    for (const [at, length] of [[0, 1000], [1000, 3000], [4000, 96]] as const) {
      const data = patterned(length, at + 5);
      overlay.write(at, data);
      model.set(data, at);
    }
    expect(same(overlay.read(0, 4096), model.subarray(0, 4096))).toBe(true);
    expect(baseReads).toBe(0);
    // A gap in chunk 1: its base bytes are read once, when the chunk is read.
    overlay.write(4096 + 10, new Uint8Array([1, 2]));
    overlay.write(4096 + 100, new Uint8Array([3]));
    model.set([1, 2], 4096 + 10);
    model.set([3], 4096 + 100);
    expect(same(overlay.read(0, 8192), model)).toBe(true);
    expect(baseReads).toBeGreaterThan(0);
  });

  it('matches a plain buffer under random writes and reads (property)', () => {
    const size = 20_000;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            at: fc.nat(size - 1),
            length: fc.integer({ min: 0, max: 3000 }),
            fill: fc.integer({ min: 0, max: 255 }),
            read: fc.boolean(),
          }),
          { maxLength: 40 },
        ),
        fc.constantFrom(512, 1024, 4096),
        fc.constantFrom(0, 2048, 1 << 30),
        (ops, chunkSize, maxMemory) => {
          const base = new MemoryDevice(patterned(size));
          const model = patterned(size);
          const overlay = new Overlay(base, { chunkSize, maxMemory, spillDir: dir });
          for (const op of ops) {
            const length = Math.min(op.length, size - op.at);
            if (op.read) {
              expect(same(overlay.read(op.at, length), model.subarray(op.at, op.at + length))).toBe(true);
            } else {
              const data = new Uint8Array(length).fill(op.fill);
              overlay.write(op.at, data);
              model.set(data, op.at);
            }
          }
          // The changed chunks alone, laid over the base, give the model (partly written chunks included).
          const merged = patterned(size);
          for (const chunk of overlay.changedChunks()) merged.set(chunk.data, chunk.byteOffset);
          expect(same(merged, model)).toBe(true);
          expect(same(overlay.read(0, size), model)).toBe(true);
          expect(same(base.bytes, patterned(size))).toBe(true);
          overlay.close();
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('FileReader, FileDevice and slice', () => {
  it('reads a file, refuses ranges past its end, and slices are bounded', () => {
    const path = join(dir, 'disk.bin');
    writeFileSync(path, patterned(8192));
    using reader = FileReader.open(path);
    expect(reader.size).toBe(8192);
    expect(reader.read(4096, 4)).toEqual(patterned(8192).subarray(4096, 4100));
    expect(() => reader.read(8190, 4)).toThrowError(/outside/);
    const part = slice(reader, { byteOffset: 1024, length: 2048 });
    expect(part.read(0, 2)).toEqual(patterned(8192).subarray(1024, 1026));
    expect(() => part.read(2047, 2)).toThrowError(/outside/);
    expect(() => slice(reader, { byteOffset: 8000, length: 1000 })).toThrowError(/outside/);
    expect('write' in part).toBe(false);
  });

  it('writes through a writable slice into the file', () => {
    const path = join(dir, 'disk2.bin');
    writeFileSync(path, new Uint8Array(4096));
    const device = FileDevice.open(path);
    slice(device, { byteOffset: 512, length: 512 }).write(10, new Uint8Array([0xaa, 0xbb]));
    device.flush();
    device.close();
    const bytes = readFileSync(path);
    expect([bytes[522], bytes[523], bytes[521], bytes[524]]).toEqual([0xaa, 0xbb, 0, 0]);
  });

  it('reports a missing file with E_NOT_FOUND', () => {
    expect(() => FileReader.open(join(dir, 'missing.img'))).toThrowError(expect.objectContaining({ code: 'E_NOT_FOUND' }));
  });
});
