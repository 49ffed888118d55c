// What every invocation needs, --version and --help included: nothing here may import
// @piimg/core, so that those two start as fast as Node itself.

/** Where a command writes; tests pass their own. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
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
  /** piimg diff: the images differ. */
  differ: 10,
  internal: 70,
} as const;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}
