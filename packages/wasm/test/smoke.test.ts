import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { e2fsck, loadExt2fs, mke2fs } from '@piimg/wasm';
import { hasTool, run } from '../../../test/support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-wasm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class Mem {
  constructor(readonly bytes: Uint8Array) {}
  get size() { return this.bytes.length; }
  read(o: number, n: number) { return this.bytes.slice(o, o + n); }
  write(o: number, d: Uint8Array) { this.bytes.set(d, o); }
  flush() {}
}

describe.skipIf(!hasTool('mke2fs'))('wasm smoke', () => {
  it('opens a native ext4 and lists the root', () => {
    const path = join(dir, 'a.img');
    run('mke2fs', ['-q', '-F', '-t', 'ext4', path, '8M']);
    const dev = new Mem(new Uint8Array(readFileSync(path)));
    const fs = loadExt2fs().open(dev, { writable: false });
    const names = fs.readdir(2).map((e) => new TextDecoder().decode(e.name));
    expect(names).toContain('lost+found');
    fs.close();
  });
  it('runs e2fsck -fn', () => {
    const path = join(dir, 'b.img');
    run('mke2fs', ['-q', '-F', '-t', 'ext4', path, '8M']);
    const dev = new Mem(new Uint8Array(readFileSync(path)));
    const r = e2fsck(dev);
    expect(r.status).toBe(0);
  });
  it('runs mke2fs', () => {
    const dev = new Mem(new Uint8Array(8 << 20));
    const r = mke2fs(dev, ['-q', '-F', '-t', 'ext4']);
    expect(r.status).toBe(0);
    expect(e2fsck(dev).status).toBe(0);
  });
});
