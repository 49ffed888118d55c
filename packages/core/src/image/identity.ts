import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';

/**
 * A key for "this file as it is now": path, device, inode, size and
 * modification time in ns. Anything that rewrites the file changes it, so
 * facts derived from the content (its hash, its data map) can be cached under it.
 */
export function fileIdentityKey(path: string): string {
  const st = statSync(path, { bigint: true });
  const identity = [realpathSync(path), st.dev, st.ino, st.size, st.mtimeNs].join('\0');
  return createHash('sha256').update(identity).digest('hex');
}

/** Parses a JSON file; undefined when it is missing or not JSON. */
export function readJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Writes a JSON file atomically (a partial file renamed into place). */
export function writeJsonFile(path: string, value: unknown): void {
  // Per thread too: worker threads of one process may store the same fact at once.
  const partial = `${path}.${process.pid}.${threadId}.partial`;
  writeFileSync(partial, JSON.stringify(value));
  renameSync(partial, path);
}

/** Reads a cached fact about a file (a small JSON file under `cacheDir/kind/`). */
export function readFileFact(cacheDir: string, kind: string, key: string): unknown {
  return readJsonFile(join(cacheDir, kind, `${key}.json`));
}

/** Stores a fact atomically; a cache that cannot be written only costs recomputing it. */
export function writeFileFact(cacheDir: string, kind: string, key: string, value: unknown): void {
  try {
    const dir = join(cacheDir, kind);
    mkdirSync(dir, { recursive: true });
    writeJsonFile(join(dir, `${key}.json`), value);
  } catch {
    // Read-only or full cache directory.
  }
}

/**
 * SHA-256 of a file's content, remembered under `cacheDir/raw-sha256/` for
 * the file as it is now (fileIdentityKey), so a base is hashed once.
 */
export async function rawSha256(path: string, cacheDir: string): Promise<string> {
  const key = fileIdentityKey(path);
  const known = readFileFact(cacheDir, 'raw-sha256', key);
  if (typeof known === 'string' && /^[0-9a-f]{64}$/.test(known)) return known;
  const hash = createHash('sha256');
  const { createReadStream } = await import('node:fs');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  const digest = hash.digest('hex');
  writeFileFact(cacheDir, 'raw-sha256', key, digest);
  return digest;
}
