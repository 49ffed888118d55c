import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { readHostFile } from '../src/host.js';

it('readHostFile yields the whole file in chunks of the given size, each a fresh array', () => {
  const dir = mkdtempSync(join(tmpdir(), 'piimg-host-'));
  try {
    const bytes = new Uint8Array(10_000).map((_, i) => (i * 13) & 0xff);
    writeFileSync(join(dir, 'f.bin'), bytes);
    const chunks = [...readHostFile(join(dir, 'f.bin'), 4096)];
    expect(chunks.map((c) => c.length)).toEqual([4096, 4096, 1808]);
    expect(chunks[0]!.buffer).not.toBe(chunks[1]!.buffer);
    expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true);
    writeFileSync(join(dir, 'empty'), '');
    expect([...readHostFile(join(dir, 'empty'))]).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
