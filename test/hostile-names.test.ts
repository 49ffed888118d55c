import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../packages/core/src/image/image.js';
import { walk } from '../packages/core/src/fs/walk.js';
import type { BadEntryName } from '../packages/core/src/fs/path.js';
import { piimg } from './support/cli.js';
import { rawFixture, testCacheDir } from './support/fixtures.js';
import { FAT_HOSTILE, hostileDiskImage } from './support/hostile-names.js';
import { hasTool } from './support/tools.js';

const env = { PIIMG_CACHE_DIR: testCacheDir };
const dir = mkdtempSync(join(tmpdir(), 'piimg-names-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every path below `root`, as raw bytes joined with '/'. */
function hostTree(root: string): string[] {
  const out: string[] = [];
  const visit = (at: Buffer, prefix: string) => {
    for (const name of readdirSync(at, { encoding: 'buffer' })) {
      const path = Buffer.concat([at, Buffer.from('/'), name]);
      const shown = prefix + name.toString('latin1');
      out.push(shown);
      if (lstatSync(path).isDirectory()) visit(path, shown + '/');
    }
  };
  visit(Buffer.from(root), '');
  return out.sort();
}

describe.skipIf(!hasTool('mke2fs'))('names read from an image', () => {
  let image = '';
  beforeAll(async () => {
    image = await hostileDiskImage(dir);
  });

  it('walk and readdir leave out names that are not one path component and report them', async () => {
    await using opened = await openImage(image, { cacheDir: testCacheDir });
    const root = await opened.mount('root', { readOnly: true });
    const bad: BadEntryName[] = [];
    const paths: string[] = [];
    for await (const entry of walk(root, '/dir', { onBadName: (b) => bad.push(b) })) paths.push(entry.path);
    expect(paths).toEqual(['/dir', '/dir/caf\udce9.txt', '/dir/dir\udcff\udcfe', '/dir/dir\udcff\udcfe/inner.txt', '/dir/ok.txt']);
    expect(bad.map((b) => [b.dir, b.name, b.reason]).sort()).toEqual([
      ['/dir', '../../x', 'slash'],
      ['/dir', 'nul\\x00name', 'nul'],
    ]);
    // A name that is not UTF-8 is a usable path: read it back.
    expect(new TextDecoder().decode(await root.readFile('/dir/caf\udce9.txt'))).toBe('latin-1 name\n');
    const boot = await opened.mount('boot', { readOnly: true });
    const fatBad: BadEntryName[] = [];
    expect((await boot.readdir('/evil', { onBadName: (b) => fatBad.push(b) })).map((e) => e.name)).toEqual(['ok.txt']);
    expect(fatBad).toEqual([{ dir: '/evil', name: FAT_HOSTILE, reason: 'slash' }]);
  });

  it('cp -r never writes outside the destination and copies names that are not UTF-8 byte for byte', async () => {
    const top = join(dir, 'cp-ext4', 'a', 'b');
    const out = join(top, 'out');
    const result = await piimg(['cp', '-r', image, 'root:/dir', out], env);
    expect(result.stderr).toContain('skipped /dir/../../x');
    expect(result.stderr).toContain('skipped /dir/nul\\x00name');
    expect(result.code).toBe(0);
    // "../../x" joined below out would land in top/../x = cp-ext4/a/x (or out/../../x).
    expect(existsSync(join(dir, 'cp-ext4', 'a', 'x'))).toBe(false);
    expect(hostTree(join(dir, 'cp-ext4'))).toEqual(['a', 'a/b', 'a/b/out', 'a/b/out/caf\xe9.txt', 'a/b/out/dir\xff\xfe', 'a/b/out/dir\xff\xfe/inner.txt', 'a/b/out/ok.txt']);
    expect(readFileSync(Buffer.from(`${out}/caf\xe9.txt`, 'latin1'), 'utf8')).toBe('latin-1 name\n');

    const fatOut = join(dir, 'cp-fat', 'out');
    const fat = await piimg(['cp', '-r', image, 'boot:/evil', fatOut], env);
    expect(fat.code).toBe(0);
    expect(fat.stderr).toContain(`skipped /evil/${FAT_HOSTILE}`);
    expect(hostTree(join(dir, 'cp-fat'))).toEqual(['out', 'out/ok.txt']);
  });

  it('cp -r replaces a symlink in the destination instead of writing through it', async () => {
    const out = join(dir, 'cp-link', 'out');
    const victim = join(dir, 'cp-link', 'victim.txt');
    mkdirSync(out, { recursive: true });
    writeFileSync(victim, 'keep me\n');
    symlinkSync(victim, join(out, 'ok.txt'));
    const files = await piimg(['cp', '-r', image, 'root:/dir', out], env);
    expect(files.code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('keep me\n');
    expect(lstatSync(join(out, 'ok.txt')).isFile()).toBe(true);
    expect(readFileSync(join(out, 'ok.txt'), 'utf8')).toBe('fine\n');

    const out2 = join(dir, 'cp-link', 'out2');
    mkdirSync(out2);
    mkdirSync(join(dir, 'cp-link', 'elsewhere'));
    symlinkSync(join(dir, 'cp-link', 'elsewhere'), Buffer.from(`${out2}/dir\xff\xfe`, 'latin1'));
    const result = await piimg(['cp', '-r', image, 'root:/dir', out2], env);
    // The directory symlink is refused, and nothing lands where it points.
    expect(result.code).toBe(6);
    expect(result.stderr).toContain('refusing to write through the symbolic link');
    expect(readdirSync(join(dir, 'cp-link', 'elsewhere'))).toEqual([]);
  });

  it('ls lists a directory holding names that are not UTF-8, escaped, with the raw bytes in --json', async () => {
    const text = await piimg(['ls', image, 'root:/dir'], env);
    expect(text.code).toBe(0);
    expect(text.stdout.split('\n').filter(Boolean)).toEqual(['caf\\xe9.txt', 'dir\\xff\\xfe/', 'ok.txt']);
    expect(text.stderr).toContain('"../../x"');
    const json = await piimg(['ls', image, 'root:/dir', '--json'], env);
    const rows = (JSON.parse(json.stdout) as { entries: { name: string; nameBase64?: string }[] }).entries;
    const latin = rows.find((r) => r.name === 'caf\\xe9.txt')!;
    expect(Buffer.from(latin.nameBase64!, 'base64')).toEqual(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]));
    expect(rows.find((r) => r.name === 'ok.txt')!.nameBase64).toBeUndefined();
    const inner = await piimg(['ls', image, 'root:/dir/dir\udcff\udcfe'], env);
    expect(inner.stdout).toBe('inner.txt\n');
  });

  it('verify flags the names (e2fsck for ext4, piimg\'s own checker for FAT)', async () => {
    const result = await piimg(['verify', image, '--json'], env);
    expect(result.code).toBe(4);
    const report = JSON.parse(result.stdout) as { partitions: { partition: number; clean: boolean; problems: string[] }[] };
    expect(report.partitions.find((p) => p.partition === 1)!.problems.join('\n')).toContain('is not a single file name (slash)');
    expect(report.partitions.find((p) => p.partition === 2)!.clean).toBe(false);
  });

  it('diff reports the names it skipped and still compares the rest', async () => {
    const result = await piimg(['diff', image, image], env);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('"../../x"');
  });
});

describe('cp of one file out of an image', () => {
  it('writes into an existing directory under the file name, as cp does', async () => {
    const raw = await rawFixture('pi-bookworm', join(dir, 'single'));
    const out = join(dir, 'single-out');
    mkdirSync(out);
    const result = await piimg(['cp', raw, 'boot:/config.txt', out], env);
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(join(out, 'config.txt'), 'utf8').length).toBeGreaterThan(0);
    expect(readdirSync(out)).toEqual(['config.txt']);
  });
});
