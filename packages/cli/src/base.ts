// What every invocation needs, --version and --help included: nothing here may import
// @piimg/core, so that those two start as fast as Node itself.

/** Where a command writes; tests pass their own. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Aborted on SIGINT/SIGTERM by the piimg command (see process.ts); long steps stop and clean up. */
  signal?: AbortSignal;
}

export function defaultIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}

/** Exit codes, documented in the README and `piimg --help`, in numeric order. */
export const EXIT = {
  ok: 0,
  usage: 1,
  badImage: 2,
  badConfig: 3,
  verifyFailed: 4,
  notFound: 5,
  failed: 6,
  /** piimg batch: some devices failed; the others were written. */
  someFailed: 7,
  /** piimg diff: the images differ. */
  differ: 10,
  internal: 70,
} as const;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Exit status 128 + signal number, as shells report a process ended by a signal. */
export const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

/** A write to a stdout whose reader has gone (`piimg ... | head`). */
export function isClosedPipe(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED';
}
