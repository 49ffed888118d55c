import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { piimg } from './support/cli.js';
import { fixturePath, rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';

const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
const isRoot = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'piimg-process-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
if (!built) console.warn('\n*** SKIPPED: closed-pipe tests run the built piimg command; `npm test` builds it first ***\n');
if (!isRoot) console.warn('\n*** SKIPPED: the full-cache test mounts a tmpfs and needs root; CI runs as root ***\n');

/** Runs the built command with a stdout pipe that the reader closes at once, as `| head -0` would. */
async function withClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, PIIMG_CACHE_DIR: testCacheDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stderr };
}

describe.skipIf(!built)('a closed stdout', () => {
  let changed = '';
  beforeAll(async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'pipe'));
    writeFileSync(join(dir, 'pipe', 'x.txt'), 'x\n'.repeat(100_000));
    changed = join(dir, 'pipe', 'changed.img');
    const result = await piimg(['cp', base, join(dir, 'pipe', 'x.txt'), 'boot:/x.txt', '-o', changed], { PIIMG_CACHE_DIR: testCacheDir });
    expect(result.code).toBe(0);
  });

  it('ends the output quietly: no EPIPE stack trace, exit status as without the pipe', async () => {
    for (const [args, code] of [
      [['ls', changed, 'boot:/', '-l'], 0],
      [['cat', changed, 'boot:/x.txt'], 0],
      [['info', changed, '--json'], 0],
      [['diff', fixturePath('pi-bookworm'), changed], 10],
    ] as const) {
      const result = await withClosedStdout([...args]);
      expect(result.stderr, args.join(' ')).toBe('');
      expect(result.code, args.join(' ')).toBe(code);
    }
  }, 120_000);
});

describe.skipIf(!isRoot || !built)('a full cache disk', () => {
  it('is ENOSPC (exit 6) naming the cache directory and PIIMG_CACHE_DIR, not a corrupt .xz', async () => {
    const cache = join(dir, 'tiny-cache');
    mkdirSync(cache);
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', cache], { encoding: 'utf8' });
    if (mount.status !== 0) {
      if (process.env.CI) throw new Error(`mount -t tmpfs failed on CI: ${mount.stderr}`);
      console.warn(`\n*** SKIPPED: cannot mount a tmpfs here (${mount.stderr.trim()}) ***\n`);
      return;
    }
    try {
      // The built command: the cache directory comes from the process environment.
      const result = spawnSync(process.execPath, [bin, 'info', fixturePath('pi-bookworm')], { env: { ...process.env, PIIMG_CACHE_DIR: cache }, encoding: 'utf8' });
      expect(result.status, result.stderr).toBe(6);
      expect(result.stderr).toContain('[ENOSPC]');
      expect(result.stderr).toContain(cache);
      expect(result.stderr).toContain('PIIMG_CACHE_DIR');
      expect(readdirSync(cache).filter((name) => name.endsWith('.piimg-partial'))).toEqual([]);
    } finally {
      spawnSync('umount', [cache]);
    }
  });
});
