import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, win32 } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadExt2fs, setWasmDirectory, urlToPath, wasmDirectoryCandidates } from '@piimg/wasm';

describe('locating the wasm files', () => {
  afterEach(() => {
    setWasmDirectory(undefined);
    delete process.env.PIIMG_WASM_DIR;
  });

  it('turns file: URLs into Windows paths (drive letter, backslashes, decoded space)', () => {
    const url = new URL('../dist/', 'file:///C:/Program%20Files/app/node_modules/@piimg/wasm/lib/index.js');
    const dir = urlToPath(url, { windows: true });
    expect(dir).toBe(win32.join('C:\\', 'Program Files', 'app', 'node_modules', '@piimg', 'wasm', 'dist') + '\\');
    expect(win32.join(dir, 'ext2fs.wasm')).toBe('C:\\Program Files\\app\\node_modules\\@piimg\\wasm\\dist\\ext2fs.wasm');
    expect(urlToPath(new URL('file://server/share/a%20b/dist/'), { windows: true })).toBe('\\\\server\\share\\a b\\dist\\');
  });

  it('turns file: URLs into POSIX paths with the space decoded', () => {
    expect(urlToPath(new URL('file:///opt/my%20app/dist/'), { windows: false })).toBe(posix.join('/opt', 'my app', 'dist') + '/');
  });

  it('looks in setWasmDirectory(), else PIIMG_WASM_DIR, else dist/ then the module directory', () => {
    const [packageDist, moduleDir] = wasmDirectoryCandidates();
    expect(packageDist).toMatch(/[\\/]dist[\\/]$/);
    expect(moduleDir).toBeDefined();
    process.env.PIIMG_WASM_DIR = '/from/env';
    expect(wasmDirectoryCandidates()).toEqual(['/from/env']);
    setWasmDirectory(new URL('file:///from/call/'));
    expect(wasmDirectoryCandidates()).toEqual([urlToPath(new URL('file:///from/call/'))]);
  });

  it('fails with a message naming PIIMG_WASM_DIR when the files are not where it is told', () => {
    const empty = mkdtempSync(join(tmpdir(), 'piimg-nowasm-'));
    try {
      setWasmDirectory(empty);
      expect(() => loadExt2fs().open({ size: 1 << 20, read: (_o, n) => new Uint8Array(n) }, { writable: false })).toThrow(/ext2fs\.wasm not found .*PIIMG_WASM_DIR/);
    } finally {
      rmSync(empty, { recursive: true });
    }
  });
});
