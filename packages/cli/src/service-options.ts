// Options shared by the long-running commands (serve, worker).
import { resolve } from 'node:path';
import { type CliIo, UsageError } from './base.js';

/** `--base NAME=PATH` values as a map of names to absolute paths; at least one is required. */
export function parseBases(list: string[] | undefined, io: CliIo, usage: string): Record<string, string> {
  const bases: Record<string, string> = {};
  for (const item of list ?? []) {
    const at = item.indexOf('=');
    if (at <= 0) throw new UsageError(`--base takes NAME=PATH, not '${item}'`);
    bases[item.slice(0, at)] = resolve(io.cwd, item.slice(at + 1));
  }
  if (Object.keys(bases).length === 0) throw new UsageError(`at least one --base NAME=PATH is required\n\n${usage}`);
  return bases;
}

/** An integer option from `min` (default 1) to `max`, or `fallback` when absent. */
export function integerOption(value: string | undefined, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(max === Number.MAX_SAFE_INTEGER ? `${name} takes an integer >= ${min}, not '${value}'` : `${name} takes an integer from ${min} to ${max}, not '${value}'`);
  }
  return n;
}

/** A JSON log line on stderr, with its time. */
export function jsonLog(io: CliIo): (entry: Record<string, unknown>) => void {
  return (entry) => io.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n');
}
