import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { throwIfAborted } from './abort.js';
import type { Progress } from './source.js';

/**
 * The base copy of a save through the platform's `cp`, where it is GNU
 * coreutils: `cp --reflink=auto` clones where the filesystem can (FICLONE),
 * and otherwise walks the data with SEEK_DATA/SEEK_HOLE and copies it with
 * copy_file_range(2), in the kernel, never through user space (coreutils >= 9;
 * older ones read and write in C). Node offers neither SEEK_DATA nor a ranged
 * copy_file_range without a native addon, so running cp is how piimg reaches
 * the kernel's copy. Ref: coreutils src/copy.c (sparse_copy, lseek_copy),
 * copy_file_range(2), lseek(2) SEEK_DATA.
 *
 * Only /usr/bin/cp or /bin/cp is used, never whatever PATH finds first: a
 * service must not run a program that its environment put in its way. macOS's
 * cp is not GNU: there `copyFile(..., COPYFILE_FICLONE_FORCE)` already clones
 * on APFS (clonefile), and the JavaScript copy is the fallback, as on Windows.
 */
const CP_PATHS = ['/usr/bin/cp', '/bin/cp'];

/** A cp found usable: its path and the coreutils version it reported. */
export interface CpTool {
  path: string;
  version: string;
}

/** One answer per path and process: asking costs a process start (~2 ms). */
const found = new Map<string, Promise<CpTool | undefined>>();

/** Messages of cp in English, whatever the caller's locale: they are matched below. */
const CP_ENV = { LC_ALL: 'C', PATH: '/usr/bin:/bin' };

function probe(path: string): Promise<CpTool | undefined> {
  return new Promise((resolve) => {
    try {
      if (!statSync(path, { throwIfNoEntry: false })?.isFile()) return resolve(undefined);
      execFile(path, ['--version'], { env: CP_ENV, timeout: 5000, maxBuffer: 64 << 10 }, (error, stdout) => {
        const match = /^cp \(GNU coreutils\) (\d+(?:\.\d+)*)/.exec(String(stdout));
        resolve(error || !match ? undefined : { path, version: match[1]! });
      });
    } catch {
      resolve(undefined);
    }
  });
}

/**
 * The GNU cp to copy bases with: at `path` when given (a test's stand-in, or
 * a system that keeps cp elsewhere), else /usr/bin/cp or /bin/cp on Linux.
 * Undefined when there is none; asked once per path and process.
 */
export async function findCp(path?: string): Promise<CpTool | undefined> {
  const candidates = path !== undefined ? [path] : process.platform === 'linux' ? CP_PATHS : [];
  for (const candidate of candidates) {
    let answer = found.get(candidate);
    if (!answer) {
      answer = probe(candidate);
      found.set(candidate, answer);
    }
    const tool = await answer;
    if (tool) return tool;
  }
  return undefined;
}

/** An error of cp: `code` is ENOSPC, ENOENT, EACCES or E_IO; `spawnFailed` when cp never ran. */
export type CpError = Error & { code: string; spawnFailed?: boolean };

function cpError(stderr: string, status: string): CpError {
  const message = stderr.trim().split('\n').slice(-3).join('; ') || `cp ${status}`;
  const code = /No space left on device|Disk quota exceeded/.test(stderr)
    ? 'ENOSPC'
    : /No such file or directory/.test(stderr)
      ? 'ENOENT'
      : /Permission denied/.test(stderr)
        ? 'EACCES'
        : 'E_IO';
  return Object.assign(new Error(message), { code });
}

/** Options of `cpCopy`. */
export interface CpCopyOptions {
  /** Kills cp: the call rejects with the signal's reason (E_ABORTED). */
  signal?: AbortSignal;
  /** Polled from the size of the blocks written, ten times a second. */
  onProgress?: (progress: Progress) => void;
  /** Set while cp runs, so an exiting process can kill it. */
  onChild?: (child: ChildProcess | undefined) => void;
}

/**
 * Copies `fromPath` to `toPath` with cp, which replaces whatever file is
 * there (--remove-destination) by a new one with the base's mode. A base with holes is copied with `--sparse=auto`: its holes
 * stay holes and its data goes through copy_file_range. A base without holes
 * (written by dd or a download) takes `--sparse=always`, where cp leaves its
 * zero blocks as holes, as the JavaScript copy does.
 */
export async function cpCopy(tool: CpTool, fromPath: string, toPath: string, options: CpCopyOptions = {}): Promise<void> {
  throwIfAborted(options.signal, `copying ${fromPath}`);
  const base = await stat(fromPath);
  const sparse = base.blocks * 512 < base.size ? 'auto' : 'always';
  const allocatedBytes = Math.min(base.size, base.blocks * 512);
  try {
    await runCp(tool, [`--sparse=${sparse}`, '--remove-destination'], fromPath, toPath, allocatedBytes, options);
  } catch (error) {
    // Aborted: cp was killed, whatever it said on the way out.
    throwIfAborted(options.signal, `copying ${fromPath}`);
    throw error;
  }
  throwIfAborted(options.signal, `copying ${fromPath}`);
}

function runCp(tool: CpTool, flags: string[], fromPath: string, toPath: string, allocatedBytes: number, options: CpCopyOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(tool.path, ['--reflink=auto', ...flags, '-T', '--', fromPath, toPath], { stdio: ['ignore', 'ignore', 'pipe'], env: CP_ENV });
    } catch (error) {
      reject(Object.assign(error as Error, { spawnFailed: true }));
      return;
    }
    options.onChild?.(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      if (stderr.length < 4096) stderr += text;
    });
    const kill = () => child.kill('SIGKILL');
    options.signal?.addEventListener('abort', kill, { once: true });
    const timer = options.onProgress
      ? setInterval(() => {
          stat(toPath).then(
            (now) => options.onProgress?.({ phase: 'save', bytesDone: Math.min(allocatedBytes, now.blocks * 512), bytesTotal: allocatedBytes }),
            () => undefined,
          );
        }, 100)
      : undefined;
    let settled = false;
    const done = (error?: Error) => {
      if (settled) return;
      settled = true;
      if (timer) clearInterval(timer);
      options.signal?.removeEventListener('abort', kill);
      options.onChild?.(undefined);
      if (error) reject(error);
      else resolve();
    };
    child.once('error', (error) => done(Object.assign(error, { spawnFailed: true })));
    child.once('close', (code, signal) => {
      if (code === 0) {
        options.onProgress?.({ phase: 'save', bytesDone: allocatedBytes, bytesTotal: allocatedBytes });
        done();
      } else done(cpError(stderr, signal ? `was killed by ${signal}` : `exited with status ${code}`));
    });
  });
}
