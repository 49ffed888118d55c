import { PiimgError } from '@piimg/core';

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

/**
 * Exit codes, documented in the README and `piimg --help`.
 */
export const EXIT = {
  ok: 0,
  usage: 1,
  badImage: 2,
  badConfig: 3,
  verifyFailed: 4,
  /** piimg diff: the images differ. */
  differ: 10,
  /** piimg batch: some devices failed; the others were written. */
  someFailed: 7,
  notFound: 5,
  failed: 6,
  internal: 70,
} as const;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const IMAGE_CODES = /^E_(NO_PARTITION_TABLE|BAD_|EBR_LOOP|PARTITION_|TRUNCATED|LIMIT|UNSUPPORTED|EXT4_|FAT_|NO_PARTITION|OUT_OF_RANGE)/;

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof PiimgError) {
    if (error.code === 'E_CONFIG') return EXIT.badConfig;
    if (error.code === 'E_VERIFY_FAILED') return EXIT.verifyFailed;
    if (error.code === 'E_NOT_FOUND' || error.code === 'ENOENT') return EXIT.notFound;
    if (IMAGE_CODES.test(error.code)) return EXIT.badImage;
    return EXIT.failed;
  }
  return EXIT.internal;
}

export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return Boolean(stream.isTTY) && env.NO_COLOR === undefined && env.TERM !== 'dumb';
}

export function paint(enabled: boolean, code: number, text: string): string {
  return enabled ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function writeJson(io: CliIo, value: unknown): void {
  io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** A one-line progress display, only on a terminal. */
export function progressReporter(io: CliIo, enabled: boolean): ((p: { phase: string; bytesDone: number; bytesTotal?: number }) => void) | undefined {
  if (!enabled || !io.stderr.isTTY) return undefined;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 100 && p.bytesDone !== p.bytesTotal) return;
    last = now;
    const percent = p.bytesTotal ? ` ${((100 * p.bytesDone) / p.bytesTotal).toFixed(0)}%` : '';
    io.stderr.write(`\r\u001b[2K${p.phase}: ${formatBytes(p.bytesDone)}${percent}`);
    if (p.bytesTotal !== undefined && p.bytesDone >= p.bytesTotal) io.stderr.write('\r\u001b[2K');
  };
}
