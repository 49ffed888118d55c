import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '@piimg/core';
import { fixturePath, repoRoot, testCacheDir } from './support/fixtures.js';

// The three packages as users get them: packed by npm, installed from the tarballs into a fresh
// project whose directory name has a space, then imported, required, bundled and run.

const built = ['wasm', 'core', 'cli'].every((name) => existsSync(join(repoRoot, 'packages', name, 'lib', 'index.js')));
if (!built) console.warn('\n*** SKIPPED: the packages are not built; `npm test` builds them first ***\n');

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const esbuild = join(repoRoot, 'node_modules', '.bin', 'esbuild');
const root = mkdtempSync(join(tmpdir(), 'piimg-packages-'));
const app = join(root, 'app with space');
const cacheDir = join(root, 'cache');
afterAll(() => rmSync(root, { recursive: true, force: true }));

function run(command: string, args: string[], options: { cwd: string; env?: Record<string, string> }): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, {
    cwd: options.cwd,
    env: { ...process.env, PIIMG_CACHE_DIR: cacheDir, PIIMG_WASM_DIR: '', ...options.env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return result;
}

function ok(result: SpawnSyncReturns<string>): string {
  expect(result.stderr.replace(/^.*ExperimentalWarning.*\n.*--trace-warnings.*\n?/m, '')).toBe('');
  expect(result.status).toBe(0);
  return result.stdout;
}

interface Packed {
  name: string;
  filename: string;
  files: { path: string }[];
}

let packed: Packed[] = [];
let hostname = '';

// Reads a file from the ext4 root of the fixture: every ext4 operation loads the wasm files.
const script = `
const image = await openImage(process.argv[2]);
try {
  const root = await image.mount('root');
  process.stdout.write(new TextDecoder().decode(await root.readFile('/etc/hostname')));
} finally {
  await image.close();
}
`;

describe.skipIf(!built)('the packed packages', () => {
  beforeAll(async () => {
    const packDir = join(root, 'packs');
    mkdirSync(packDir);
    const pack = run(npm, ['pack', '--json', '--pack-destination', packDir, '-w', 'packages/wasm', '-w', 'packages/core', '-w', 'packages/cli'], { cwd: repoRoot });
    expect(pack.status, pack.stderr).toBe(0);
    packed = JSON.parse(pack.stdout) as Packed[];
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    const install = run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', ...packed.map((p) => join(packDir, p.filename))], { cwd: app });
    expect(install.status, install.stderr).toBe(0);
    writeFileSync(join(app, 'ext4.mjs'), `import { openImage } from '@piimg/core';\n${script}`);
    writeFileSync(join(app, 'ext4.cjs'), `const { openImage } = require('@piimg/core');\n(async () => {${script}})().catch((e) => { console.error(e); process.exit(1); });`);
    const image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    try {
      hostname = new TextDecoder().decode(await (await image.mount('root')).readFile('/etc/hostname'));
    } finally {
      await image.close();
    }
    expect(hostname).not.toBe('');
  }, 300_000);

  it('ship README, LICENSE and what their exports name', () => {
    expect(packed.map((p) => p.name).sort()).toEqual(['@piimg/core', '@piimg/wasm', 'piimg']);
    for (const p of packed) {
      const files = p.files.map((f) => f.path);
      expect(files, p.name).toEqual(expect.arrayContaining(['README.md', 'LICENSE', 'package.json', 'lib/index.js', 'lib/index.d.ts']));
    }
    const files = (name: string) => packed.find((p) => p.name === name)!.files.map((f) => f.path);
    expect(files('@piimg/core')).toEqual(expect.arrayContaining(['lib/config.js', 'lib/config.d.ts', 'lib/early.js', 'lib/early.d.ts', 'schema/device-config.schema.json']));
    expect(files('@piimg/wasm')).toEqual(expect.arrayContaining(['dist/ext2fs.wasm', 'dist/ext2fs.cjs', 'dist/e2fsck.wasm', 'dist/mke2fs.wasm', 'LICENSES/GPL-2', 'LICENSES/LGPL-2', 'LICENSES/e2fsprogs-NOTICE']));
    expect(files('piimg')).toEqual(expect.arrayContaining(['bin/piimg.js', 'THIRD-PARTY-NOTICES.md']));
    // The command's bundle carries other packages (packages/cli/tsup.config.ts): each one's license must ship with it.
    const cliLib = join(repoRoot, 'packages', 'cli', 'lib');
    const bundled = new Set<string>();
    let zodLocales = 0;
    for (const name of readdirSync(cliLib, { recursive: true }) as string[]) {
      if (!name.endsWith('.js')) continue;
      const text = readFileSync(join(cliLib, name), 'utf8');
      for (const match of text.matchAll(/^\/\/ .*?node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)) bundled.add(match[1]!);
      zodLocales += text.match(/^\/\/ .*?node_modules\/zod\/v4\/locales\//gm)?.length ?? 0;
    }
    expect(bundled.size).toBeGreaterThan(0);
    // The schema imports zod as a namespace, so the bundle keeps only the English messages: `import { z }`
    // took all 64 locales along (780 KB of the 1.8 MB the command loads, ~25 ms of its start-up).
    expect(zodLocales).toBeLessThanOrEqual(1);
    const notices = readFileSync(join(repoRoot, 'packages', 'cli', 'THIRD-PARTY-NOTICES.md'), 'utf8');
    for (const name of bundled) expect(notices, name).toMatch(new RegExp(`^## ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `, 'm'));
    for (const name of ['core', 'cli']) {
      expect(readFileSync(join(repoRoot, 'packages', name, 'LICENSE'), 'utf8'), `packages/${name}/LICENSE`).toBe(readFileSync(join(repoRoot, 'LICENSE'), 'utf8'));
    }
    expect(readFileSync(join(repoRoot, 'packages', 'wasm', 'LICENSE'), 'utf8')).toContain(readFileSync(join(repoRoot, 'LICENSE'), 'utf8'));
  });

  it('read ext4 from an install directory whose name has a space (import)', () => {
    expect(ok(run(process.execPath, ['ext4.mjs', fixturePath('pi-bookworm')], { cwd: app }))).toBe(hostname);
  });

  it("load with require() on Node versions that have require(esm)", () => {
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    const hasRequireEsm = major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19);
    if (!hasRequireEsm) {
      console.warn(`\n*** SKIPPED: Node ${process.versions.node} has no unflagged require(esm) ***\n`);
      return;
    }
    expect(ok(run(process.execPath, ['ext4.cjs', fixturePath('pi-bookworm')], { cwd: app }))).toBe(hostname);
    const config = run(process.execPath, ['-e', "process.stdout.write(typeof require('@piimg/core/config').parseConfig)"], { cwd: app });
    expect(ok(config)).toBe('function');
    const early = run(process.execPath, ['-e', "process.stdout.write(typeof require('@piimg/core/early').startSave)"], { cwd: app });
    expect(ok(early)).toBe('function');
  });

  it('run the installed piimg command', () => {
    const bin = join(app, 'node_modules', 'piimg', 'bin', 'piimg.js');
    const info = JSON.parse(ok(run(process.execPath, [bin, 'info', fixturePath('pi-bookworm'), '--json'], { cwd: app }))) as { partitions: unknown[] };
    expect(info.partitions).toHaveLength(2);
    expect(ok(run(process.execPath, [bin, 'verify', fixturePath('pi-bookworm')], { cwd: app }))).toMatch(/p2 ext4: clean/);
  });

  it('work from an esbuild bundle with @piimg/wasm external', () => {
    const out = join(app, 'dist-external', 'app.mjs');
    ok(run(esbuild, ['ext4.mjs', '--bundle', '--platform=node', '--format=esm', '--external:@piimg/wasm', `--outfile=${out}`, '--log-level=warning'], { cwd: app }));
    expect(ok(run(process.execPath, [out, fixturePath('pi-bookworm')], { cwd: app }))).toBe(hostname);
  });

  it('work from a fully bundled app, with PIIMG_WASM_DIR or with the wasm files next to the bundle', () => {
    // CommonJS dependencies (yauzl, xz-decompress) call require() for Node's own modules: an ESM
    // bundle needs a require, as esbuild documents for --format=esm.
    const banner = "--banner:js=import { createRequire as piimgCreateRequire } from 'node:module'; const require = piimgCreateRequire(import.meta.url);";
    const standalone = join(root, 'standalone');
    const out = join(standalone, 'app.mjs');
    ok(run(esbuild, ['ext4.mjs', '--bundle', '--platform=node', '--format=esm', banner, `--outfile=${out}`, '--log-level=warning'], { cwd: app }));
    const dist = join(app, 'node_modules', '@piimg', 'wasm', 'dist');
    // No node_modules next to the bundle: without a way to find the files it must fail clearly.
    const lost = run(process.execPath, [out, fixturePath('pi-bookworm')], { cwd: standalone });
    expect(lost.status).not.toBe(0);
    expect(lost.stderr).toMatch(/ext2fs\.wasm not found .*PIIMG_WASM_DIR/);
    expect(ok(run(process.execPath, [out, fixturePath('pi-bookworm')], { cwd: standalone, env: { PIIMG_WASM_DIR: dist } }))).toBe(hostname);
    for (const file of readdirSync(dist)) copyFileSync(join(dist, file), join(standalone, file));
    expect(ok(run(process.execPath, [out, fixturePath('pi-bookworm')], { cwd: standalone }))).toBe(hostname);
  });
});
