import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_MEMORY, FileReader, openImage, Overlay } from '@piimg/core';
import { rawFixture } from './support/fixtures.js';

// README: openImage(path, { overlay: { maxMemory } }): changed chunks spill to a temporary
// file past maxMemory, 256 MiB by default.
const dir = mkdtempSync(join(tmpdir(), 'piimg-overlay-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

describe('openImage overlay memory', () => {
  it('spills past maxMemory to a file in spillDir, and reads, verify and save stay correct', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'small'));
    const spillDir = join(dir, 'spill');
    mkdirSync(spillDir);
    const data = pattern(6 * MiB, 5);
    const out = join(dir, 'small', 'out.img');
    {
      await using image = await openImage(base, { overlay: { maxMemory: 1 * MiB, spillDir } });
      const root = await image.mount('root');
      await root.writeFile('/var/big.bin', data);
      await root.close();
      const { memoryBytes, spilledBytes } = image.changes;
      expect(memoryBytes).toBeLessThanOrEqual(1 * MiB);
      expect(spilledBytes).toBeGreaterThanOrEqual(5 * MiB);
      // The spill file is unlinked once opened where the platform allows it; piimg's own name otherwise.
      expect(readdirSync(spillDir).every((name) => name.startsWith('piimg-overlay-'))).toBe(true);
      const again = await image.mount('root', { readOnly: true });
      expect(Buffer.from(await again.readFile('/var/big.bin')).equals(Buffer.from(data))).toBe(true);
      await again.close();
      expect((await image.verify()).every((finding) => finding.clean)).toBe(true);
      await image.save(out);
    }
    await using saved = await openImage(out);
    const root = await saved.mount('root', { readOnly: true });
    expect(Buffer.from(await root.readFile('/var/big.bin')).equals(Buffer.from(data))).toBe(true);
    expect(saved.changes.spilledBytes).toBe(0);
  });

  it('keeps up to 256 MiB in memory by default and spills what comes after', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'default'));
    {
      await using image = await openImage(base);
      expect((image.device as Overlay).maxMemory).toBe(DEFAULT_MAX_MEMORY);
    }
    expect(DEFAULT_MAX_MEMORY).toBe(256 * MiB);
    // A sparse base larger than the bound, written through once with the default options.
    const sparse = join(dir, 'sparse.img');
    closeSync(openSync(sparse, 'w'));
    truncateSync(sparse, DEFAULT_MAX_MEMORY + 8 * MiB);
    const reader = FileReader.open(sparse);
    const overlay = new Overlay(reader, { spillDir: dir });
    try {
      const piece = pattern(MiB, 9);
      for (let at = 0; at < DEFAULT_MAX_MEMORY + 2 * MiB; at += MiB) {
        piece[0] = (at / MiB) & 0xff;
        overlay.write(at, piece);
      }
      expect(overlay.stats.memoryBytes).toBeLessThanOrEqual(DEFAULT_MAX_MEMORY);
      expect(overlay.stats.spilledBytes).toBeGreaterThanOrEqual(2 * MiB);
      // The first and the last pieces read back as written, from memory and from the spill file.
      for (const at of [0, DEFAULT_MAX_MEMORY + MiB]) {
        const read = overlay.read(at, MiB);
        piece[0] = (at / MiB) & 0xff;
        expect(Buffer.from(read).equals(Buffer.from(piece))).toBe(true);
      }
    } finally {
      overlay.close();
      reader.close();
    }
  });
});
