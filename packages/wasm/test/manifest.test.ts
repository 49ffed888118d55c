import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dist = new URL('../dist/', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('manifest.json', dist), 'utf8')) as {
  source: { package: string; version: string };
  patches: Record<string, string>;
  piimgSources: Record<string, string>;
  outputs: Record<string, string>;
};
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

describe('committed WebAssembly build', () => {
  it('records e2fsprogs 1.47.2 from Debian and matches the committed outputs', () => {
    expect(manifest.source).toMatchObject({ package: 'e2fsprogs', version: '1.47.2-3' });
    expect(Object.keys(manifest.outputs).sort()).toEqual(
      ['e2fsck.cjs', 'e2fsck.wasm', 'ext2fs.cjs', 'ext2fs.wasm', 'mke2fs.cjs', 'mke2fs.wasm'].sort(),
    );
    for (const [name, hash] of Object.entries(manifest.outputs)) {
      expect(sha256(readFileSync(new URL(name, dist))), name).toBe(hash);
    }
  });

  // A hash check only: that the outputs come from these inputs is shown by rebuilding them
  // (packages/wasm/build/build.sh, about 20 minutes; PIIMG_REBUILD_WASM=1 .ci/run compares the result).
  it('lists every committed patch and build source with its hash', () => {
    const pkg = new URL('../', import.meta.url);
    // Every build input is in the manifest: a patch or source added without a rebuild fails here.
    expect(Object.keys(manifest.patches).sort()).toEqual(readdirSync(new URL('build/patches/', pkg)).sort());
    expect(Object.keys(manifest.piimgSources).sort()).toEqual(
      ['build/build.sh', 'build/lib/debian-source.sh', ...readdirSync(new URL('build/src/', pkg)).map((name) => `build/src/${name}`)].sort(),
    );
    for (const [name, hash] of Object.entries(manifest.patches)) {
      expect(sha256(readFileSync(new URL(`build/patches/${name}`, pkg))), name).toBe(hash);
    }
    for (const [path, hash] of Object.entries(manifest.piimgSources)) {
      expect(sha256(readFileSync(new URL(path, pkg))), path).toBe(hash);
    }
  });

  it('ships the licence texts', () => {
    const licenses = new URL('../LICENSES/', import.meta.url);
    expect(readFileSync(new URL('GPL-2', licenses), 'utf8')).toContain('GNU GENERAL PUBLIC LICENSE');
    expect(readFileSync(new URL('LGPL-2', licenses), 'utf8')).toContain('GNU LIBRARY GENERAL PUBLIC LICENSE');
    expect(readFileSync(new URL('e2fsprogs-NOTICE', licenses), 'utf8')).toContain('e2fsprogs');
  });
});
