import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage, startSave, type StartedSave } from '@piimg/core';
import { findCpSync } from '../packages/core/src/image/cp.js';
import { rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';
import { alive } from './support/tools.js';

// startSave(): the copy of a raw base started before the image is opened, and
// Image.prepareSave(out, { started }) taking it over, or refusing it and
// making its own. The piimg command starts its inject's copy this way.

const dir = mkdtempSync(join(tmpdir(), 'piimg-early-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cacheDir = join(dir, 'cache');
const gnuCp = findCpSync();
const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
if (!gnuCp) {
  if (process.env.CI) throw new Error('CI runs on Debian, whose /usr/bin/cp is GNU coreutils');
  console.warn('\n*** SKIPPED: the early-save tests with a stand-in cp need GNU cp in /usr/bin or /bin ***\n');
}
if (!built) console.warn('\n*** SKIPPED: the early-save tests of the piimg command run the built command; `npm test` builds it first ***\n');

const entries = (at: string) => readdirSync(at).sort();
const partials = (at: string) => readdirSync(at).filter((name) => name.endsWith('.piimg-partial'));
/** The inode of the one temporary file in `at`: the JavaScript copy writes into it, so the output keeps it when the save took that copy over. */
const partialInode = (at: string) => {
  const names = partials(at);
  expect(names).toHaveLength(1);
  return statSync(join(at, names[0]!)).ino;
};
const waitFor = async (test: () => boolean) => {
  for (let i = 0; i < 500 && !test(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
};

let base = '';
beforeAll(async () => {
  base = await rawFixture('pi-bookworm', join(dir, 'fixture'));
});

/** The bytes of a save of `base` with one change, by prepareSave with `started` (or without). */
async function saveWith(out: string, started: StartedSave | undefined, options: { copier?: 'js' | 'cp' } = {}) {
  await using image = await openImage(base, { cacheDir });
  await using save = image.prepareSave(out, { ...options, ...(started ? { started } : {}) });
  image.device.write(1 << 20, Buffer.from('changed after the copy started'));
  const result = await save.finish();
  return { result, bytes: readFileSync(out) };
}

describe('startSave', () => {
  it('starts the copy of a raw base at once; prepareSave takes it over and the output is the same as without it', async () => {
    const out = join(dir, 'taken');
    mkdirSync(out);
    const started = startSave(base, join(out, 'early.img'), { copier: 'js', cacheDir });
    expect(started).toBeDefined();
    expect(started!.outPath).toBe(join(out, 'early.img'));
    // Its temporary file is there before the image is even opened.
    const inode = partialInode(out);
    const early = await saveWith(join(out, 'early.img'), started, { copier: 'js' });
    // Taken over: that file became the output, and the started save is no longer its own to cancel.
    expect(statSync(join(out, 'early.img')).ino).toBe(inode);
    expect(started!.outPath).toBeUndefined();
    await started!.cancel();
    const plain = await saveWith(join(out, 'plain.img'), undefined, { copier: 'js' });
    expect(early.bytes.equals(plain.bytes)).toBe(true);
    expect(early.bytes.subarray(1 << 20, (1 << 20) + 30).toString()).toBe('changed after the copy started');
    expect(early.result.baseCopy).toBe(plain.result.baseCopy);
    expect(entries(out)).toEqual(['early.img', 'plain.img']);
  });

  it('is refused, cancelled and replaced by a save of its own when the base changed, the output differs or progress is asked for', async () => {
    const out = join(dir, 'refused');
    mkdirSync(out);
    const own = join(dir, 'own-base.img');
    copyFileSync(base, own);
    const expected = (await saveWith(join(out, 'expected.img'), undefined, { copier: 'js' })).bytes;

    // The base was modified after the copy started (its modification time moved).
    const refused = async (name: string, started: StartedSave, options: { copier?: 'js' | 'cp' }) => {
      const inode = statSync(join(out, partials(out).find((partial) => partial.startsWith(`.${name}.`))!)).ino;
      expect((await saveWith(join(out, name), started, options)).bytes.equals(expected)).toBe(true);
      expect(started.outPath).toBeUndefined();
      expect(statSync(join(out, name)).ino).not.toBe(inode);
    };
    const changedBase = startSave(base, join(out, 'a.img'), { copier: 'js', cacheDir })!;
    const later = new Date(Date.now() + 5000);
    utimesSync(base, later, later);
    await refused('a.img', changedBase, { copier: 'js' });

    // Started for another output, or with another copier.
    const otherOut = startSave(base, join(out, 'other.img'), { copier: 'js', cacheDir })!;
    expect((await saveWith(join(out, 'b.img'), otherOut, { copier: 'js' })).bytes.equals(expected)).toBe(true);
    expect(otherOut.outPath).toBeUndefined();
    await refused('c.img', startSave(base, join(out, 'c.img'), { copier: 'js', cacheDir })!, gnuCp ? { copier: 'cp' } : {});

    // A caller that wants the copy's progress gets a copy that reports it.
    const quiet = startSave(base, join(out, 'd.img'), { copier: 'js', cacheDir })!;
    const quietInode = partialInode(out);
    const seen: number[] = [];
    {
      await using image = await openImage(base, { cacheDir });
      await using save = image.prepareSave(join(out, 'd.img'), { copier: 'js', started: quiet, onProgress: (p) => seen.push(p.bytesDone) });
      image.device.write(1 << 20, Buffer.from('changed after the copy started'));
      await save.finish();
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'd.img')).equals(expected)).toBe(true);
    expect(statSync(join(out, 'd.img')).ino).not.toBe(quietInode);

    // Another image file (the same bytes elsewhere) is not the base that was copied.
    await refused('e.img', startSave(own, join(out, 'e.img'), { copier: 'js', cacheDir })!, { copier: 'js' });

    // Every refused copy was cancelled: only the outputs are left.
    await waitFor(() => partials(out).length === 0);
    expect(entries(out)).toEqual(['a.img', 'b.img', 'c.img', 'd.img', 'e.img', 'expected.img']);
  });

  it('starts nothing for what prepareSave would not copy early, or for wrong paths', async () => {
    const out = join(dir, 'nothing');
    mkdirSync(out);
    const xz = join(dir, 'base.img.xz');
    writeFileSync(xz, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0]));
    expect(startSave(xz, join(out, 'a.img'))).toBeUndefined(); // a compressed base, whatever its name
    expect(startSave(base, join(out, 'a.img.xz'))).toBeUndefined();
    expect(startSave(base, join(out, 'a.img.gz'))).toBeUndefined();
    expect(startSave(base, join(out, 'a.img'), { format: 'zst' })).toBeUndefined();
    expect(startSave(base, join(out, 'a.img'), { format: 'nonsense' })).toBeUndefined();
    expect(startSave(base, out)).toBeUndefined(); // a directory
    expect(startSave(base, base)).toBeUndefined(); // the base itself
    expect(startSave(join(dir, 'missing.img'), join(out, 'a.img'))).toBeUndefined();
    expect(startSave(dir, join(out, 'a.img'))).toBeUndefined();
    const aborted = new AbortController();
    aborted.abort();
    expect(startSave(base, join(out, 'a.img'), { signal: aborted.signal })).toBeUndefined();
    expect(entries(out)).toEqual([]);
    // A compressed output from a started save: the raw copy is stopped, the output made from the stream.
    const started = startSave(base, join(out, 'b.img'), { copier: 'js', cacheDir })!;
    {
      await using image = await openImage(base, { cacheDir });
      await using save = image.prepareSave(join(out, 'b.img'), { format: 'gzip', started });
      await save.finish();
    }
    expect(started.outPath).toBeUndefined();
    expect(readFileSync(join(out, 'b.img')).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(entries(out)).toEqual(['b.img']);
  });

  it('not taken over: cancel(), await using and its signal remove the temporary file', async () => {
    const out = join(dir, 'cancelled');
    mkdirSync(out);
    const started = startSave(base, join(out, 'a.img'), { copier: 'js', cacheDir })!;
    expect(partials(out)).toHaveLength(1);
    await started.cancel();
    expect(entries(out)).toEqual([]);
    {
      await using _ = startSave(base, join(out, 'b.img'), { copier: 'js', cacheDir });
      expect(partials(out)).toHaveLength(1);
    }
    expect(entries(out)).toEqual([]);
    const controller = new AbortController();
    const signalled = startSave(base, join(out, 'c.img'), { copier: 'js', cacheDir, signal: controller.signal })!;
    controller.abort();
    await waitFor(() => partials(out).length === 0);
    expect(entries(out)).toEqual([]);
    // The aborted copy is not taken over: the save makes its own.
    const { bytes } = await saveWith(join(out, 'c.img'), signalled, { copier: 'js' });
    expect(bytes.length).toBe(readFileSync(base).length);
    expect(entries(out)).toEqual(['c.img']);
  });

  it.skipIf(!gnuCp)('cancelling a copy that cp is making kills cp', async () => {
    const out = join(dir, 'kill');
    mkdirSync(out);
    const slow = join(dir, 'slow-cp');
    writeFileSync(slow, `#!/bin/sh\nif [ "$1" = --version ]; then echo 'cp (GNU coreutils) 9.1'; exit 0; fi\nfor dest; do :; done\necho $$ > "$dest.pid.tmp"\nmv "$dest.pid.tmp" "${dir}/slow.pid"\nexec sleep 60\n`);
    chmodSync(slow, 0o755);
    const started = startSave(base, join(out, 'a.img'), { copier: 'cp', cpPath: slow, cacheDir })!;
    await waitFor(() => existsSync(join(dir, 'slow.pid')));
    const pid = Number(readFileSync(join(dir, 'slow.pid'), 'utf8'));
    expect(alive(pid)).toBe(true);
    await started.cancel();
    await waitFor(() => !alive(pid));
    expect(alive(pid)).toBe(false);
    expect(entries(out)).toEqual([]);
  });
});

describe.skipIf(!built)('piimg inject starts its copy before it loads', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [bin, 'inject', ...args], { env: { ...process.env, PIIMG_CACHE_DIR: testCacheDir }, encoding: 'utf8' });

  it('the copy of the base has started when the library begins to load', () => {
    const out = join(dir, 'cli-order');
    mkdirSync(out);
    const config = join(dir, 'order.yaml');
    writeFileSync(config, 'hostname: early\n');
    // A resolve hook notes, when @piimg/wasm is first asked for (the command's copy of
    // @piimg/core loads it first), whether OUT's temporary file is there yet.
    const report = join(dir, 'order.txt');
    const hooks = join(dir, 'order-hooks.mjs');
    writeFileSync(
      hooks,
      `import { readdirSync, writeFileSync } from 'node:fs';\nlet seen = false;\nexport async function resolve(specifier, context, next) {\n  if (!seen && specifier === '@piimg/wasm') {\n    seen = true;\n    writeFileSync(${JSON.stringify(report)}, String(readdirSync(${JSON.stringify(out)}).some((name) => name.endsWith('.piimg-partial'))));\n  }\n  return next(specifier, context);\n}\n`,
    );
    const register = join(dir, 'order-register.mjs');
    writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
    const result = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, bin, 'inject', base, '-o', join(out, 'out.img'), '--config', config], {
      env: { ...process.env, PIIMG_CACHE_DIR: testCacheDir },
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    expect(readFileSync(report, 'utf8')).toBe('true');
    expect(entries(out)).toEqual(['out.img']);
  });

  it('a configuration that fails leaves no output and no temporary file', () => {
    const out = join(dir, 'cli-bad');
    mkdirSync(out);
    const config = join(dir, 'bad.yaml');
    writeFileSync(config, 'hostname: "not a valid host name!"\n');
    const result = run([base, '-o', join(out, 'out.img'), '--config', config]);
    expect(result.status, result.stderr).toBe(3);
    expect(entries(out)).toEqual([]);
  });

  it('an output the command refuses is refused as before, nothing written', () => {
    const out = join(dir, 'cli-refused');
    mkdirSync(out);
    const config = join(dir, 'good.yaml');
    writeFileSync(config, 'hostname: early\n');
    // A directory as OUT: E_BAD_OUTPUT, a usage error.
    const result = run([base, '-o', out, '--config', config]);
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/directory/);
    expect(entries(out)).toEqual([]);
    // A good inject: one copy, the output verified.
    const good = run([base, '-o', join(out, 'out.img'), '--config', config, '--json']);
    expect(good.status, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout).verified).toBe(true);
    expect(entries(out)).toEqual(['out.img']);
  });
});
