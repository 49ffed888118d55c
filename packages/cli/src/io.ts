import { PiimgError, type BadNameReason } from '@piimg/core';
import { type CliIo, EXIT, SIGNAL_EXIT, UsageError } from './base.js';

export { type CliIo, defaultIo, EXIT, isClosedPipe, SIGNAL_EXIT, UsageError } from './base.js';

const IMAGE_CODES = /^E_(NO_PARTITION_TABLE|BAD_|DELTA_|EBR_LOOP|PARTITION_|TRUNCATED|LIMIT|UNSUPPORTED|EXT4_|FAT_|NO_PARTITION|OUT_OF_RANGE)/;

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (error instanceof PiimgError) {
    if (error.code === 'E_ABORTED') return SIGNAL_EXIT[String(error.data.signal)] ?? EXIT.failed;
    // An output that is a device node, FIFO, socket or directory: the command line names the wrong thing.
    if (error.code === 'E_BAD_OUTPUT') return EXIT.usage;
    if (error.code === 'E_CONFIG') return EXIT.badConfig;
    if (error.code === 'E_VERIFY_FAILED') return EXIT.verifyFailed;
    if (error.code === 'E_NOT_FOUND' || error.code === 'ENOENT') return EXIT.notFound;
    if (IMAGE_CODES.test(error.code)) return EXIT.badImage;
    return EXIT.failed;
  }
  return EXIT.internal;
}

/**
 * Colors on a terminal unless NO_COLOR is set and not empty (no-color.org);
 * FORCE_COLOR forces them on (any value but 0 or false) or off (0, false)
 * whatever the stream is, and wins over NO_COLOR, as in Node itself.
 */
export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
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

/**
 * Version of the `--json` outputs, written first in each as `schemaVersion`;
 * their JSON Schemas are schema/NAME.schema.json in this package. Raised
 * when a field is removed or changes meaning, not when one is added.
 */
export const JSON_SCHEMA_VERSION = 1;

export function writeJson(io: CliIo, value: object): void {
  io.stdout.write(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, ...value }, null, 2) + '\n');
}

/** A progress callback for @piimg/core with a way to take its line off the terminal. */
export type ProgressReporter = ((p: { phase: string; bytesDone: number; bytesTotal?: number }) => void) & { clear(): void };

let shown: ProgressReporter | undefined;

/** Takes the progress line off the terminal, if one is shown (before an error message, say). */
export function clearProgress(): void {
  shown?.clear();
}

/**
 * A one-line progress display, only on a terminal. A phase without a known
 * total (decompressing .xz) never reaches 100%: the line is cleared when the
 * phase changes and by `clear()`, which commands call once the step is done.
 */
export function progressReporter(io: CliIo, enabled: boolean): ProgressReporter | undefined {
  if (!enabled || !io.stderr.isTTY) return undefined;
  let last = 0;
  let drawn = false;
  let phase = '';
  const clearLine = () => {
    if (drawn) io.stderr.write('\r\u001b[2K');
    drawn = false;
  };
  const report = ((p) => {
    if (p.phase !== phase) {
      clearLine();
      phase = p.phase;
    }
    const finished = p.bytesTotal !== undefined && p.bytesDone >= p.bytesTotal;
    const now = Date.now();
    if (now - last < 100 && !finished) return;
    last = now;
    if (finished) {
      clearLine();
      return;
    }
    const percent = p.bytesTotal ? ` ${((100 * p.bytesDone) / p.bytesTotal).toFixed(0)}%` : '';
    io.stderr.write(`\r\u001b[2K${p.phase}: ${formatBytes(p.bytesDone)}${percent}`);
    drawn = true;
  }) as ProgressReporter;
  report.clear = clearLine;
  shown = report;
  return report;
}

/** A warning on stderr; output on stdout stays clean for pipes and --json. */
export function warn(io: CliIo, command: string, text: string): void {
  io.stderr.write(`piimg ${command}: warning: ${text}\n`);
}

export const BAD_NAME_TEXT: Record<BadNameReason, string> = {
  empty: 'the image holds an entry with an empty name',
  dot: 'the image holds an entry named "." or ".."',
  slash: 'the name holds "/", so it is not one file name',
  nul: 'the name holds a NUL byte',
};

export function deviceLine(path: string, device: { bytesWritten: number; sha256: string }): string {
  return `${path}: wrote ${formatBytes(device.bytesWritten)} onto the device, flushed, read back and compared (sha256 ${device.sha256})`;
}

/** Adds the command's abort signal (SIGINT/SIGTERM) to library options. */
export function withSignal<T extends object>(io: CliIo, options: T): T & { signal?: AbortSignal } {
  return io.signal ? { ...options, signal: io.signal } : options;
}
