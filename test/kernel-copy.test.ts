import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPiimgError, openImage, type Image } from '@piimg/core';
import { findCpSync } from '../packages/core/src/image/cp.js';
import { rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';
import { alive } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-kcopy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cacheDir = join(dir, 'cache');
const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));

const gnuCp = findCpSync();
if (!gnuCp) {
  if (process.env.CI) throw new Error('CI runs on Debian, whose /usr/bin/cp is GNU coreutils: the kernel copy must be tested there');
  console.warn('\n*** SKIPPED: kernel-copy tests need GNU cp in /usr/bin or /bin ***\n');
}
if (!built) console.warn('\n*** SKIPPED: the inject signal test runs the built piimg command; `npm test` builds it first ***\n');

const entries = (at: string) => readdirSync(at).sort();

/** A stand-in for cp: answers --version as GNU coreutils does, then runs `body` (sh) with the destination in $dest. */
function fakeCp(name: string, body: string, version = 'cp (GNU coreutils) 9.1'): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\nif [ "$1" = --version ]; then echo '${version}'; exit 0; fi\nfor dest; do :; done\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/**
 * A copy of a fixture image that is sparse exactly at 64 KiB units: all-zero
 * units are holes, the others fully allocated. The JavaScript copy leaves the
 * same units as holes, so both copies must allocate the same blocks. 32 MiB of
 * random data is appended inside the image's size, past its partitions, so
 * the copy has something to do.
 */
async function sparseBase(): Promise<string> {
  const fixture = await rawFixture('pi-bookworm', join(dir, 'fixture'));
  const path = join(dir, 'base.img');
  const size = statSync(fixture).size;
  const from = openSync(fixture, 'r');
  const to = openSync(path, 'w');
  const unit = Buffer.alloc(65536);
  const zero = Buffer.alloc(65536);
  for (let at = 0; at < size; at += unit.length) {
    const length = readSync(from, unit, 0, Math.min(unit.length, size - at), at);
    if (!unit.subarray(0, length).equals(zero.subarray(0, length))) writeSync(to, unit, 0, length, at);
  }
  const data = randomBytes(32 << 20);
  writeSync(to, data, 0, data.length, size);
  closeSync(to);
  closeSync(from);
  // Read-only, as a base often is: the output still gets the mode of a new file.
  chmodSync(path, 0o444);
  return path;
}

describe.skipIf(!gnuCp)('the base copied by cp', () => {
  let base = '';
  beforeAll(async () => {
    base = await sparseBase();
  });

  async function changed(): Promise<Image> {
    const image = await openImage(base, { cacheDir });
    for (const at of [0x100000, 0x2345000, image.size - 8192]) image.device.write(at, randomBytes(4096).fill(7, 0, 100));
    return image;
  }

  it('gives the same bytes and the same holes as the JavaScript copy', async () => {
    await using image = await changed();
    const out = join(dir, 'same');
    mkdirSync(out);
    const byCp = await image.save(join(out, 'cp.img'), { copier: 'cp' });
    const byJs = await image.save(join(out, 'js.img'), { copier: 'js' });
    // A filesystem with reflinks clones instead; tmp dirs on CI are ext4 or overlayfs.
    expect(['cp', 'reflink']).toContain(byCp.baseCopy);
    expect(['js', 'reflink']).toContain(byJs.baseCopy);
    expect(byCp.changedBytes).toBe(byJs.changedBytes);
    const cpBytes = readFileSync(join(out, 'cp.img'));
    expect(cpBytes.equals(readFileSync(join(out, 'js.img')))).toBe(true);
    expect(cpBytes.length).toBe(statSync(base).size);
    expect(statSync(join(out, 'cp.img')).mode).toBe(statSync(join(out, 'js.img')).mode);
    // Holes preserved: the blocks allocated as by the JavaScript copy (to the
    // filesystem's own metadata blocks), and far fewer than the size.
    const cpBlocks = statSync(join(out, 'cp.img')).blocks;
    expect(Math.abs(cpBlocks - statSync(join(out, 'js.img')).blocks) * 512).toBeLessThan(1 << 20);
    expect(cpBlocks * 512).toBeLessThan(statSync(base).blocks * 512 + (1 << 20));
    expect(cpBlocks * 512).toBeLessThan(cpBytes.length / 2);
    expect(entries(out)).toEqual(['cp.img', 'js.img']);
  });

  it('PIIMG_COPY=js forces the JavaScript copy; a cp that is not GNU coreutils falls back to it', async () => {
    await using image = await changed();
    const out = join(dir, 'fallback');
    mkdirSync(out);
    const saved = process.env.PIIMG_COPY;
    process.env.PIIMG_COPY = 'js';
    try {
      expect((await image.save(join(out, 'env.img'))).baseCopy).toMatch(/^(js|reflink)$/);
    } finally {
      if (saved === undefined) delete process.env.PIIMG_COPY;
      else process.env.PIIMG_COPY = saved;
    }
    const busybox = fakeCp('busybox-cp', 'exit 1', 'BusyBox v1.36.1 multi-call binary.');
    const fallback = await image.save(join(out, 'busybox.img'), { cpPath: busybox });
    expect(fallback.baseCopy).toMatch(/^(js|reflink)$/);
    expect(readFileSync(join(out, 'busybox.img')).equals(readFileSync(join(out, 'env.img')))).toBe(true);
    // Insisting on cp where there is none is a typed error, and nothing is written.
    const error = await image.save(join(out, 'insist.img'), { cpPath: busybox, copier: 'cp' }).catch((e: unknown) => e);
    if (fallback.baseCopy === 'js') expect(isPiimgError(error, 'E_UNSUPPORTED'), String(error)).toBe(true);
    expect(entries(out)).toEqual(['busybox.img', 'env.img']);
  });

  it('a cp that runs out of space gives ENOSPC and leaves no output and no temporary file', async () => {
    await using image = await changed();
    const out = join(dir, 'enospc');
    mkdirSync(out);
    const full = fakeCp('full-cp', `head -c 1000000 /dev/zero > "$dest"\necho "cp: error writing '$dest': No space left on device" >&2\nexit 1`);
    const error = await image.save(join(out, 'out.img'), { cpPath: full, copier: 'cp' }).catch((e: unknown) => e);
    if (existsSync(join(out, 'out.img'))) return; // cloned by reflink: cp never ran
    expect(isPiimgError(error, 'ENOSPC'), String(error)).toBe(true);
    expect((error as Error).message).toContain('No space left on device');
    expect(entries(out)).toEqual([]);
    // Prepared ahead of the changes, the failed copy is removed at once, not at finish().
    const prepared = image.prepareSave(join(out, 'out.img'), { cpPath: full, copier: 'cp' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(entries(out)).toEqual([]);
    await expect(prepared.finish()).rejects.toMatchObject({ code: 'ENOSPC' });
    // Any other failure of cp is E_IO, naming the output.
    const broken = fakeCp('broken-cp', `echo "cp: cannot open '$dest' for writing: Input/output error" >&2\nexit 1`);
    const io = await image.save(join(out, 'out.img'), { cpPath: broken }).catch((e: unknown) => e);
    expect(isPiimgError(io, 'E_IO'), String(io)).toBe(true);
    expect(entries(out)).toEqual([]);
  });

  /** A cp that writes a little, records its pid and then hangs, as a long copy does. */
  const slowCp = () => fakeCp('slow-cp', `echo $$ > "$dest.tmp"\nmv "$dest.tmp" "$dest.pid"\nhead -c 1000000 /dev/zero > "$dest"\nexec sleep 60`);
  const waitFor = async (test: () => boolean) => {
    for (let i = 0; i < 500 && !test(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  };
  const pidOf = (out: string) => Number(readFileSync(join(out, readdirSync(out).find((name) => name.endsWith('.pid'))!), 'utf8'));

  it('an abort in the middle of the copy kills cp and leaves nothing', async () => {
    await using image = await changed();
    const out = join(dir, 'abort');
    mkdirSync(out);
    const controller = new AbortController();
    const saving = image.save(join(out, 'out.img'), { cpPath: slowCp(), copier: 'cp', signal: controller.signal });
    await waitFor(() => readdirSync(out).some((name) => name.endsWith('.pid')));
    const pid = pidOf(out);
    expect(alive(pid)).toBe(true);
    controller.abort();
    const error = await saving.catch((e: unknown) => e);
    expect(isPiimgError(error, 'E_ABORTED'), String(error)).toBe(true);
    await waitFor(() => !alive(pid));
    expect(alive(pid)).toBe(false);
    expect(entries(out).filter((name) => !name.endsWith('.pid'))).toEqual([]);
  });

  it('a prepared save is removed when the step before it fails, when cancelled, and when the image is closed', async () => {
    const out = join(dir, 'prepared');
    mkdirSync(out);
    const slow = slowCp();
    const image = await changed();
    // apply() fails (a volume is mounted): leaving the block removes the prepared save.
    const volume = await image.mount('boot');
    const failed = await (async () => {
      await using save = image.prepareSave(join(out, 'a.img'), { cpPath: slow, copier: 'cp' });
      expect(save.path).toBe(join(out, 'a.img'));
      await waitFor(() => readdirSync(out).some((name) => name.endsWith('.pid')));
      await image.apply({} as never);
    })().catch((e: unknown) => e);
    expect(isPiimgError(failed, 'E_BUSY'), String(failed)).toBe(true);
    const pid = pidOf(out);
    await waitFor(() => !alive(pid));
    expect(alive(pid)).toBe(false);
    expect(entries(out).filter((name) => !name.endsWith('.pid'))).toEqual([]);
    await volume.close();
    // close() of the image cancels what is still prepared.
    image.prepareSave(join(out, 'b.img'), { cpPath: slow, copier: 'cp' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await image.close();
    expect(entries(out).filter((name) => !name.endsWith('.pid'))).toEqual([]);
    // A prepared save is finished once; the output is the changes as they are at finish().
    await using again = await openImage(base, { cacheDir });
    const save = again.prepareSave(join(out, 'c.img'));
    again.device.write(4096 * 5, Buffer.from('written after prepareSave'));
    const result = await save.finish();
    expect(result.changedBytes).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'c.img')).subarray(4096 * 5, 4096 * 5 + 25).toString()).toBe('written after prepareSave');
    await expect(save.finish()).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('prepareSave() starts cp before it returns: synchronous work right after it does not hold the copy back', async () => {
    await using image = await changed();
    const out = join(dir, 'sync-start');
    mkdirSync(out);
    const save = image.prepareSave(join(out, 'out.img'), { cpPath: slowCp(), copier: 'cp' });
    // Busy, without yielding to the event loop, as recipes and WebAssembly are.
    const until = Date.now() + 1500;
    while (Date.now() < until && !readdirSync(out).some((name) => name.endsWith('.pid')));
    const started = readdirSync(out).some((name) => name.endsWith('.pid'));
    await save.cancel();
    if (!started && existsSync(join(out, 'out.img'))) return; // cloned by reflink: cp never ran
    expect(started).toBe(true);
  });

  const parentOf = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  };

  it('from its third cp on, a process starts cp from a launcher process instead of forking itself; same bytes', async () => {
    await using image = await changed();
    const out = join(dir, 'launcher');
    mkdirSync(out);
    const log = join(dir, 'launcher.log');
    const logging = fakeCp('logging-cp', `echo $PPID >> ${JSON.stringify(log)}\nexec ${gnuCp!.path} "$@"`);
    await image.save(join(out, 'js.img'), { copier: 'js' });
    const expected = createHash('sha256').update(readFileSync(join(out, 'js.img'))).digest('hex');
    for (let i = 0; i < 4; i++) {
      await image.save(join(out, `${i}.img`), { cpPath: logging, copier: 'cp' });
      expect(createHash('sha256').update(readFileSync(join(out, `${i}.img`))).digest('hex')).toBe(expected);
    }
    if (!existsSync(log)) return; // cloned by reflink: cp never ran
    const parents = readFileSync(log, 'utf8').trim().split('\n').map(Number);
    expect(parents).toHaveLength(4);
    const launcher = parents[3]!;
    expect(launcher).not.toBe(process.pid);
    expect(parents[2]).toBe(launcher);
    expect(parentOf(launcher)).toBe(process.pid);
  });

  it('a process killed (SIGKILL) while a launched cp runs: the launcher sees its pipe close and kills cp', async () => {
    const out = join(dir, 'killed-launched');
    mkdirSync(out);
    const script = join(dir, 'killed-launched.mjs');
    const core = join(repoRoot, 'packages', 'core', 'lib', 'index.js');
    if (!existsSync(core)) return console.warn('*** SKIPPED: the kill test runs the built @piimg/core ***');
    writeFileSync(
      script,
      `import { openImage } from ${JSON.stringify(core)};
const image = await openImage(${JSON.stringify(base)}, { cacheDir: ${JSON.stringify(cacheDir)} });
for (const name of ['a.img', 'b.img', 'c.img']) await image.save(${JSON.stringify(out)} + '/' + name, { copier: 'cp' });
image.prepareSave(${JSON.stringify(join(out, 'out.img'))}, { cpPath: ${JSON.stringify(slowCp())}, copier: 'cp' });
setInterval(() => undefined, 1000);
`,
    );
    const child = spawn(process.execPath, [script], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    await waitFor(() => readdirSync(out).some((name) => name.endsWith('.pid')) || child.exitCode !== null);
    if (!readdirSync(out).some((name) => name.endsWith('.pid'))) return; // cloned by reflink: cp never ran
    const pid = pidOf(out);
    // Launched: cp is not the child of the killed process.
    expect(parentOf(pid)).not.toBe(child.pid);
    child.kill('SIGKILL');
    await exited;
    await waitFor(() => !alive(pid));
    expect(alive(pid)).toBe(false);
  });

  it('a process that exits while cp runs kills it and removes the temporary file', async () => {
    const out = join(dir, 'exit');
    mkdirSync(out);
    const script = join(dir, 'exit.mjs');
    const core = join(repoRoot, 'packages', 'core', 'lib', 'index.js');
    writeFileSync(
      script,
      `import { openImage } from ${JSON.stringify(core)};
const image = await openImage(${JSON.stringify(base)}, { cacheDir: ${JSON.stringify(cacheDir)} });
image.prepareSave(${JSON.stringify(join(out, 'out.img'))}, { cpPath: ${JSON.stringify(slowCp())}, copier: 'cp' });
setTimeout(() => process.exit(3), 500);
`,
    );
    if (!existsSync(core)) return console.warn('*** SKIPPED: the exit test runs the built @piimg/core ***');
    const code = await new Promise<number | null>((resolve) => spawn(process.execPath, [script], { stdio: 'ignore' }).on('exit', resolve));
    expect(code).toBe(3);
    const pid = pidOf(out);
    await waitFor(() => !alive(pid));
    expect(alive(pid)).toBe(false);
    expect(entries(out).filter((name) => !name.endsWith('.pid'))).toEqual([]);
  });

  it.skipIf(!built)('piimg inject interrupted while the prepared copy runs exits 130 and leaves nothing', async () => {
    const out = join(dir, 'inject-signal');
    mkdirSync(out);
    const config = join(dir, 'device.yaml');
    writeFileSync(config, 'hostname: interrupted\n');
    const child = spawn(process.execPath, [bin, 'inject', base, '-o', join(out, 'out.img'), '--config', config], {
      env: { ...process.env, PIIMG_CACHE_DIR: testCacheDir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await waitFor(() => readdirSync(out).length > 0);
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(entries(out)).toEqual([]);
  });
});
