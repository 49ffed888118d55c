import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { piimg } from './support/cli.js';
import { openImage } from '@piimg/core';
import { fixturePath, rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';

const env = { PIIMG_CACHE_DIR: testCacheDir };
const dir = mkdtempSync(join(tmpdir(), 'piimg-output-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;
const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
if (!isRoot) console.warn('\n*** SKIPPED: device-node output tests need root (mknod); CI runs as root ***\n');
if (!built) console.warn('\n*** SKIPPED: signal tests run the built piimg command; `npm test` builds it first ***\n');

const partials = (at: string) => readdirSync(at).filter((name) => name.endsWith('.piimg-partial'));
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('the output path', () => {
  let base = '';
  let hostFile = '';
  beforeAll(async () => {
    base = await rawFixture('pi-bookworm', join(dir, 'base'));
    hostFile = join(dir, 'hello.txt');
    writeFileSync(hostFile, 'hello\n');
  });

  const cpTo = (out: string, ...extra: string[]) => piimg(['cp', base, hostFile, 'boot:/hello.txt', '-o', out, ...extra], env);

  it('refuses an output whose directory is missing or a file before any work, and writes nothing', async () => {
    const config = join(dir, 'early.yaml');
    writeFileSync(config, 'hostname: early\n');
    // A compressed base with a cache of its own: nothing is decompressed for an output that cannot be written.
    const cache = join(dir, 'early-cache');
    const missing = await piimg(['inject', fixturePath('pi-trixie'), '-o', join(dir, 'no-such-dir', 'out.img'), '--config', config], { PIIMG_CACHE_DIR: cache });
    expect(missing.code, missing.stderr).toBe(5);
    expect(missing.stderr).toContain(`the directory ${join(dir, 'no-such-dir')} does not exist [ENOENT]`);
    expect(existsSync(cache) ? readdirSync(cache) : []).toEqual([]);
    const applied = await piimg(['apply', fixturePath('pi-trixie'), join(dir, 'any.delta'), '-o', join(dir, 'no-such-dir', 'out.img')], { PIIMG_CACHE_DIR: cache });
    expect(applied.code, applied.stderr).toBe(5);
    expect(existsSync(cache) ? readdirSync(cache) : []).toEqual([]);
    // A file where the directory should be: a usage error (it used to be an internal error).
    const notDirectory = await cpTo(join(hostFile, 'out.img'));
    expect(notDirectory.code, notDirectory.stderr).toBe(1);
    expect(notDirectory.stderr).toMatch(/ENOTDIR.*\[E_BAD_OUTPUT\]/);
    await using image = await openImage(base, { cacheDir: testCacheDir });
    await expect(image.save(join(hostFile, 'out.img'))).rejects.toMatchObject({ code: 'E_BAD_OUTPUT' });
    expect(partials(dir)).toEqual([]);
  });

  it('refuses a FIFO, a socket and a directory with exit 1 and leaves them as they were', async () => {
    const fifo = join(dir, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const directory = join(dir, 'a-directory');
    mkdirSync(directory);
    const socketPath = join(dir, 'socket');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      for (const [path, kind] of [
        [fifo, 'a FIFO'],
        [socketPath, 'a socket'],
        [directory, 'a directory'],
      ] as const) {
        const result = await cpTo(path);
        expect(result.code, result.stderr).toBe(1);
        expect(result.stderr).toContain(`it is ${kind}`);
        expect(result.stderr).toContain('[E_BAD_OUTPUT]');
      }
      expect(statSync(fifo).isFIFO()).toBe(true);
      expect(statSync(socketPath).isSocket()).toBe(true);
      expect(readdirSync(directory)).toEqual([]);
      expect(partials(dir)).toEqual([]);
    } finally {
      server.close();
    }
  });

  it.skipIf(!isRoot)('refuses a character device and a block device node (made with mknod, never the real /dev/null)', async () => {
    const nullCopy = join(dir, 'null-copy');
    const loopNode = join(dir, 'loop-node');
    expect(spawnSync('mknod', [nullCopy, 'c', '1', '3']).status).toBe(0);
    expect(spawnSync('mknod', [loopNode, 'b', '7', '200']).status).toBe(0);
    const chr = await cpTo(nullCopy);
    expect(chr.code).toBe(1);
    expect(chr.stderr).toContain('it is a character device');
    expect(statSync(nullCopy).isCharacterDevice()).toBe(true);
    const blk = await cpTo(loopNode);
    expect(blk.code).toBe(1);
    expect(blk.stderr).toContain('--to-device');
    expect(statSync(loopNode).isBlockDevice()).toBe(true);
    // --to-device takes block devices only.
    const wrong = await cpTo(nullCopy, '--to-device');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('not a block device');
  });

  it('--to-device writes every byte in place over old data, reads it back, and says so', async () => {
    // A regular file takes the same path as a device: filled with old data that must not survive.
    const device = join(dir, 'card.img');
    const size = statSync(base).size;
    const fd = openSync(device, 'w');
    const junk = Buffer.alloc(1 << 20, 0xa5);
    for (let at = 0; at < size + (8 << 20); at += junk.length) writeSync(fd, junk, 0, junk.length, at);
    closeSync(fd);
    // Both images must get the same timestamps; the library's clock reads process.env.
    const epoch = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1735689600';
    try {
      const result = await cpTo(device, '--to-device');
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/wrote 164\.0 MiB onto the device, flushed, read back and compared \(sha256 [0-9a-f]{64}\)/);
      const normal = join(dir, 'normal.img');
      expect((await cpTo(normal)).code).toBe(0);
      const written = readFileSync(device);
      expect(createHash('sha256').update(written.subarray(0, size)).digest('hex')).toBe(sha256(normal));
      // Beyond the image, the device is left alone.
      expect(written[size]).toBe(0xa5);
      expect(result.stdout).toContain(createHash('sha256').update(written.subarray(0, size)).digest('hex'));
    } finally {
      if (epoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = epoch;
    }
  });

  it('--to-device refuses a device smaller than the image (ENOSPC, exit 6)', async () => {
    const small = join(dir, 'small.img');
    writeFileSync(small, Buffer.alloc(1 << 20, 1));
    const result = await cpTo(small, '--to-device');
    expect(result.code).toBe(6);
    expect(result.stderr).toContain('[ENOSPC]');
  });

  it.skipIf(!isRoot || spawnSync('losetup', ['--version']).status !== 0)('--to-device writes a loop device', async () => {
    const backing = join(dir, 'loop-backing.img');
    writeFileSync(backing, Buffer.alloc(0));
    spawnSync('truncate', ['-s', '200M', backing]);
    const attach = spawnSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' });
    if (attach.status !== 0) {
      console.warn(`\n*** SKIPPED: no loop device here (${attach.stderr.trim()}) ***\n`);
      return;
    }
    const loop = attach.stdout.trim();
    try {
      const result = await cpTo(loop, '--to-device');
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain('read back and compared');
      expect(result.stdout).toContain(createHash('sha256').update(readFileSync(backing).subarray(0, statSync(base).size)).digest('hex'));
      // A device in use (mounted) is refused, and left as it was.
      const mountPoint = join(dir, 'mnt');
      mkdirSync(mountPoint, { recursive: true });
      spawnSync('mke2fs', ['-q', '-F', '-t', 'ext4', loop], { env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
      const mounted = spawnSync('mount', ['-o', 'ro', loop, mountPoint], { encoding: 'utf8' });
      if (mounted.status !== 0) {
        if (process.env.CI) throw new Error(`cannot mount ${loop} on CI: ${mounted.stderr}`);
        console.warn(`\n*** SKIPPED: cannot mount ${loop} here (${mounted.stderr.trim()}); the busy-device check was not run ***\n`);
      } else {
        try {
          const before = createHash('sha256').update(readFileSync(backing)).digest('hex');
          const busy = await cpTo(loop, '--to-device');
          expect(busy.code).toBe(6);
          expect(busy.stderr).toContain('[EBUSY]');
          expect(createHash('sha256').update(readFileSync(backing)).digest('hex')).toBe(before);
        } finally {
          spawnSync('umount', [mountPoint]);
        }
      }
    } finally {
      spawnSync('losetup', ['-d', loop]);
    }
  });
});

describe.skipIf(!built)('interrupted saves', () => {
  let big = '';
  beforeAll(async () => {
    // A base with 384 MiB of data past its partitions, so a save takes long enough to be interrupted.
    big = await rawFixture('pi-bookworm', join(dir, 'big'));
    const fd = openSync(big, 'a');
    const block = Buffer.alloc(4 << 20);
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0 || 1, i);
    for (let i = 0; i < 96; i++) writeSync(fd, block);
    closeSync(fd);
    writeFileSync(join(dir, 'big', 'hello.txt'), 'hello\n');
  }, 120_000);

  /** Starts `piimg cp` into a new image in `out`, sends `signal` once its partial file appears. */
  async function interrupt(outDir: string, signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; sawPartial: boolean }> {
    mkdirSync(outDir, { recursive: true });
    const child = spawn(process.execPath, [bin, 'cp', big, join(dir, 'big', 'hello.txt'), 'boot:/hello.txt', '-o', join(outDir, 'out.img')], {
      env: { ...process.env, PIIMG_CACHE_DIR: join(dir, 'cache') },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    let sawPartial = false;
    const poll = setInterval(() => {
      if (!sawPartial && partials(outDir).length > 0) {
        sawPartial = true;
        child.kill(signal);
      }
    }, 5);
    const [code, gotSignal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    clearInterval(poll);
    return { code, signal: gotSignal, stderr, sawPartial };
  }

  it('SIGINT and SIGTERM stop the save, remove the temporary file and exit 130 and 143', async () => {
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      const outDir = join(dir, `out-${signal}`);
      const result = await interrupt(outDir, signal);
      expect(result.sawPartial).toBe(true);
      expect(result.code, result.stderr).toBe(code);
      expect(result.stderr).toContain(`interrupted by ${signal}`);
      expect(readdirSync(outDir)).toEqual([]);
    }
  }, 120_000);

  it('keeps the previous complete output when interrupted', async () => {
    const outDir = join(dir, 'out-previous');
    mkdirSync(outDir);
    writeFileSync(join(outDir, 'out.img'), 'the previous output\n');
    const result = await interrupt(outDir, 'SIGTERM');
    expect(result.code).toBe(143);
    expect(readdirSync(outDir)).toEqual(['out.img']);
    expect(readFileSync(join(outDir, 'out.img'), 'utf8')).toBe('the previous output\n');
  }, 120_000);

  it('after kill -9, the next run in that directory removes the partial file of the dead process', async () => {
    const outDir = join(dir, 'out-kill');
    const result = await interrupt(outDir, 'SIGKILL');
    expect(result.signal).toBe('SIGKILL');
    const left = partials(outDir);
    expect(left.length).toBe(1);
    expect(existsSync(join(outDir, 'out.img'))).toBe(false);
    // Younger than the grace period: kept (its owner might be a process in another PID namespace).
    const other = join(outDir, '.other.img.1-00000000-00000000.piimg-partial');
    writeFileSync(other, 'not of this host');
    const next = await piimg(['cp', big, join(dir, 'big', 'hello.txt'), 'boot:/hello.txt', '-o', join(outDir, 'second.img')], { PIIMG_CACHE_DIR: join(dir, 'cache') });
    expect(next.code).toBe(0);
    expect(partials(outDir).sort()).toEqual([left[0], '.other.img.1-00000000-00000000.piimg-partial'].sort());
    const old = new Date(Date.now() - 5 * 60_000);
    utimesSync(join(outDir, left[0]!), old, old);
    utimesSync(other, old, old);
    const third = await piimg(['cp', big, join(dir, 'big', 'hello.txt'), 'boot:/hello.txt', '-o', join(outDir, 'second.img')], { PIIMG_CACHE_DIR: join(dir, 'cache') });
    expect(third.code).toBe(0);
    // Another host's file stays, whatever its age.
    expect(partials(outDir)).toEqual(['.other.img.1-00000000-00000000.piimg-partial']);
  }, 180_000);
});

describe('inject --source-root', () => {
  it('refuses a files[].source outside the root with exit 3 and writes nothing', async () => {
    const work = join(dir, 'source-root');
    mkdirSync(join(work, 'configs'), { recursive: true });
    writeFileSync(join(work, 'secret.txt'), 'not for the image\n');
    writeFileSync(join(work, 'configs', 'ok.txt'), 'fine\n');
    const config = join(work, 'configs', 'device.yaml');
    writeFileSync(config, 'hostname: dev-1\nfiles:\n  - { source: ../secret.txt, target: /etc/secret.txt }\n');
    const out = join(work, 'out.img');
    const base = join(repoRoot, 'fixtures', 'images', 'pi-bookworm.img.xz');
    const refused = await piimg(['inject', base, '-o', out, '--config', config, '--source-root', join(work, 'configs')], env);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('files[0].source');
    expect(refused.stderr).toContain('outside the source root');
    expect(existsSync(out)).toBe(false);
    // Without --source-root the same config is the user's own choice.
    writeFileSync(config, 'hostname: dev-1\nfiles:\n  - { source: ./ok.txt, target: /etc/ok.txt }\n');
    const allowed = await piimg(['inject', base, '-o', out, '--config', config, '--source-root', join(work, 'configs'), '--no-verify'], env);
    expect(allowed.code, allowed.stderr).toBe(0);
  });
});
