import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Readable, Writable } from 'node:stream';
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
const require = createRequire(import.meta.url);

/** A cp found usable: its path and the coreutils version it reported. */
export interface CpTool {
  path: string;
  version: string;
}

/** One answer per path and process: asking costs a process start (~2 ms). */
const found = new Map<string, CpTool | undefined>();

/** Messages of cp in English, whatever the caller's locale: they are matched below. */
const CP_ENV = { LC_ALL: 'C', PATH: '/usr/bin:/bin' };

function probe(path: string): CpTool | undefined {
  try {
    if (!statSync(path, { throwIfNoEntry: false })?.isFile()) return undefined;
    const stdout = execFileSync(path, ['--version'], { env: CP_ENV, timeout: 5000, maxBuffer: 64 << 10, stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /^cp \(GNU coreutils\) (\d+(?:\.\d+)*)/.exec(String(stdout));
    return match ? { path, version: match[1]! } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The GNU cp to copy bases with: at `path` when given (a test's stand-in, or
 * a system that keeps cp elsewhere), else /usr/bin/cp or /bin/cp on Linux.
 * Undefined when there is none; asked once per path and process, and
 * synchronously, so that a save starts its copy without waiting for the
 * event loop (see SaveJob).
 */
export function findCpSync(path?: string): CpTool | undefined {
  const candidates = path !== undefined ? [path] : process.platform === 'linux' ? CP_PATHS : [];
  for (const candidate of candidates) {
    if (!found.has(candidate)) found.set(candidate, probe(candidate));
    const tool = found.get(candidate);
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
  onChild?: (child: Killable | undefined) => void;
}

/** A running cp, as far as its caller needs it. */
export interface Killable {
  kill(signal: 'SIGKILL'): void;
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
  // Synchronous up to the start of cp: a caller that goes on with synchronous work
  // (WebAssembly, recipes) right after this call does not hold the copy back.
  const base = statSync(fromPath);
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

/** Starts a program and reports its stderr and end to `handlers`: from this process, or through the launcher. */
type Starter = (path: string, args: string[], env: Record<string, string>, handlers: LaunchHandlers) => Killable;

const startDirect: Starter = (path, args, env, handlers) => {
  const child = spawn(path, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', handlers.stderr);
  child.once('error', handlers.error);
  child.once('close', handlers.close);
  return child;
};

function runCp(tool: CpTool, flags: string[], fromPath: string, toPath: string, allocatedBytes: number, options: CpCopyOptions): Promise<void> {
  const args = ['--reflink=auto', ...flags, '-T', '--', fromPath, toPath];
  return new Promise<void>((resolve, reject) => {
    let stderr = '';
    let settled = false;
    let timer: ReturnType<typeof setInterval> | undefined;
    let kill = () => {};
    const done = (error?: Error) => {
      if (settled) return;
      settled = true;
      if (timer) clearInterval(timer);
      options.signal?.removeEventListener('abort', kill);
      options.onChild?.(undefined);
      if (error) reject(error);
      else resolve();
    };
    const handlers: LaunchHandlers = {
      stderr: (text) => {
        if (stderr.length < 4096) stderr += text;
      },
      error: (error) => done(Object.assign(error, { spawnFailed: true })),
      close: (code, signal) => {
        if (code === 0) {
          options.onProgress?.({ phase: 'save', bytesDone: allocatedBytes, bytesTotal: allocatedBytes });
          done();
        } else done(cpError(stderr, signal ? `was killed by ${signal}` : `exited with status ${code}`));
      },
    };
    const via = launcher();
    let child: Killable;
    try {
      child = via ? via.run(tool.path, args, CP_ENV, handlers) : startDirect(tool.path, args, CP_ENV, handlers);
    } catch (error) {
      reject(Object.assign(error as Error, { spawnFailed: true }));
      return;
    }
    options.onChild?.(child);
    kill = () => child.kill('SIGKILL');
    options.signal?.addEventListener('abort', kill, { once: true });
    if (options.onProgress) {
      timer = setInterval(() => {
        stat(toPath).then(
          (now) => options.onProgress?.({ phase: 'save', bytesDone: Math.min(allocatedBytes, now.blocks * 512), bytesTotal: allocatedBytes }),
          () => undefined,
        );
      }, 100);
    }
  });
}

/**
 * Starting a process from Node forks the whole process (libuv's uv_spawn on
 * Linux), and the fork copies its page tables: 2 ms at 48 MiB resident and
 * 26-61 ms at 753 MiB (bench/spawn.bench.mjs), on the calling thread, event
 * loop stopped. A service or a batch that saves many images is large, so from its
 * third cp on, cp is started by a small Node process made for that (the
 * launcher, started at the second): each start then costs a line on a pipe.
 * The launcher kills its cp processes and exits when the pipe closes (this
 * process or thread ended).
 */
const LAUNCHER_SOURCE = `
const { spawn } = require('node:child_process');
const running = new Map();
const send = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text) => {
  buffered += text;
  for (let end = buffered.indexOf('\\n'); end >= 0; end = buffered.indexOf('\\n')) {
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    const request = JSON.parse(line);
    if (request.kill !== undefined) {
      running.get(request.kill)?.kill('SIGKILL');
      continue;
    }
    let settled = false;
    const finish = (message) => {
      if (settled) return;
      settled = true;
      running.delete(request.id);
      send({ id: request.id, ...message });
    };
    let child;
    try {
      child = spawn(request.path, request.args, { stdio: ['ignore', 'ignore', 'pipe'], env: request.env });
    } catch (error) {
      finish({ error: String(error && error.message) });
      continue;
    }
    running.set(request.id, child);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (data) => send({ id: request.id, stderr: data.slice(0, 4096) }));
    child.once('error', (error) => finish({ error: String(error && error.message) }));
    child.once('close', (code, signal) => finish({ code, signal }));
  }
});
process.stdin.on('end', () => {
  for (const child of running.values()) child.kill('SIGKILL');
  process.exit(0);
});
`;

interface LaunchHandlers {
  stderr: (text: string) => void;
  close: (code: number | null, signal: string | null) => void;
  error: (error: Error) => void;
}

class Launcher {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, LaunchHandlers>();
  private nextId = 0;
  private broken = false;

  constructor() {
    this.child = spawn(process.execPath, ['-e', LAUNCHER_SOURCE], { stdio: ['pipe', 'pipe', 'ignore'], env: CP_ENV });
    this.child.once('error', () => this.fail(new Error('the cp launcher could not be started')));
    this.child.once('exit', () => this.fail(new Error('the cp launcher ended')));
    this.child.stdin!.on('error', () => this.fail(new Error('the cp launcher ended')));
    let buffered = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (text: string) => {
      buffered += text;
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        let message: { id: number; stderr?: string; error?: string; code?: number | null; signal?: string | null };
        try {
          message = JSON.parse(buffered.slice(0, end)) as typeof message;
        } catch {
          this.child.kill('SIGKILL');
          return this.fail(new Error('the cp launcher answered something else than its protocol'));
        }
        buffered = buffered.slice(end + 1);
        const handlers = this.pending.get(message.id);
        if (!handlers) continue;
        if (message.stderr !== undefined) handlers.stderr(message.stderr);
        else {
          this.pending.delete(message.id);
          this.hold();
          if (message.error !== undefined) handlers.error(new Error(message.error));
          else handlers.close(message.code ?? null, message.signal ?? null);
        }
      }
    });
    this.hold();
  }

  get usable(): boolean {
    return !this.broken;
  }

  /** Keeps this process alive while a cp runs, and only then. */
  private hold(): void {
    const streams = [this.child.stdin, this.child.stdout] as (Writable | Readable | null)[];
    for (const stream of streams) {
      const handle = stream as unknown as { ref?: () => void; unref?: () => void };
      if (this.pending.size > 0) handle.ref?.();
      else handle.unref?.();
    }
    if (this.pending.size > 0) this.child.ref();
    else this.child.unref();
  }

  private fail(error: Error): void {
    this.broken = true;
    for (const handlers of this.pending.values()) handlers.error(error);
    this.pending.clear();
    this.hold();
  }

  run(path: string, args: string[], env: Record<string, string>, handlers: LaunchHandlers): Killable {
    const id = this.nextId++;
    this.pending.set(id, handlers);
    this.hold();
    this.child.stdin!.write(JSON.stringify({ id, path, args, env }) + '\n');
    return {
      kill: () => {
        if (this.pending.has(id)) this.child.stdin!.write(JSON.stringify({ kill: id }) + '\n');
      },
    };
  }
}

let copies = 0;
let starts = 0;
let shared: Launcher | undefined;

/**
 * Whether process.execPath is Node itself, which runs `-e SOURCE`: not an
 * application packed with Node (a single executable application, Electron),
 * which would run itself instead.
 */
function plainNode(): boolean {
  if (process.release?.name !== 'node' || process.versions.electron !== undefined) return false;
  try {
    const sea = require('node:sea') as { isSea?: () => boolean };
    return !sea.isSea?.();
  } catch {
    return true; // Node without node:sea (before 20.12) has no single executable applications either
  }
}

/** The launcher from the third cp of this process (or thread) on (started at the second); undefined before, or when it cannot run. */
function launcher(): Launcher | undefined {
  copies++;
  if (shared?.usable) return shared;
  if (copies >= 2 && starts < 3 && plainNode()) {
    starts++;
    try {
      shared = new Launcher();
    } catch {
      shared = undefined;
    }
  }
  return undefined;
}
