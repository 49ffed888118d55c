import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/**
 * Temporary files that become outputs (and cache entries) by rename are named
 * `.<name>.<pid>-<host>-<random>.piimg-partial`: the owning process and a tag
 * of its host are in the name, so a later run can tell a file left by a
 * killed process (kill -9, power loss) from one still being written.
 */
const PARTIAL = /^\..*\.(\d{1,10})-([0-9a-f]{8})-[0-9a-f]{8}\.piimg-partial$/;

/** Files younger than this are never removed: their owner may be a process in another PID namespace. */
export const DEFAULT_PARTIAL_GRACE_MS = 60_000;

let hostTagValue: string | undefined;
function hostTag(): string {
  hostTagValue ??= createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
  return hostTagValue;
}

/** A temporary name for a file that will be renamed to `name` (a base name, no directory). */
export function partialName(name: string): string {
  return `.${name}.${process.pid}-${hostTag()}-${randomBytes(4).toString('hex')}.piimg-partial`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Options of `removeStalePartials`. */
export interface StalePartialOptions {
  /** Minimum age (by modification time) of a file to remove. */
  graceMs?: number;
}

/**
 * Removes partial files in `dir` left by processes of this host that are
 * gone. Only names of our own pattern are considered; a file whose owner
 * still runs, of another host, or younger than the grace period stays.
 * Returns the removed names. Never throws: cleaning up is best effort.
 */
export function removeStalePartials(dir: string, options: StalePartialOptions = {}): string[] {
  const graceMs = options.graceMs ?? DEFAULT_PARTIAL_GRACE_MS;
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  const now = Date.now();
  for (const name of names) {
    const match = PARTIAL.exec(name);
    if (!match || match[2] !== hostTag()) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || alive(pid)) continue;
    const path = join(dir, name);
    try {
      const stats = statSync(path, { throwIfNoEntry: false });
      if (!stats?.isFile() || now - stats.mtimeMs < graceMs) continue;
      rmSync(path, { force: true });
      removed.push(name);
    } catch {
      // Another run removed it first, or it is not ours to remove.
    }
  }
  return removed;
}
