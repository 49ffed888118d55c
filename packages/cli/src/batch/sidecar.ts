import { createHash, randomBytes, scrypt } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { DeviceConfig } from '@piimg/core';

/**
 * Re-running a batch skips devices whose output is up to date. Next to each
 * output OUT, `OUT.piimg.json` records a key of everything the output was
 * made from (piimg's version, the base file's identity, the resolved device
 * configuration, the content of every file source, SOURCE_DATE_EPOCH and
 * PIIMG_SEED) and the output's size and modification time. The configuration holds secrets
 * (passwords, keys), so the key is scrypt over those inputs with a random
 * salt kept in the sidecar: guessing a password from the sidecar costs an
 * scrypt per guess, and nothing in it is a secret in clear.
 */
export const SIDECAR_SUFFIX = '.piimg.json';
const FORMAT = 2;
// Ref: RFC 7914 §2; N = 2^12, r = 8: 4 MiB and ~12 ms per key, on the thread pool, off the event loop.
// A sidecar is only of use beside its image, which holds the same secrets less guarded
// (sha512-crypt's 5000 rounds in /etc/shadow, the Wi-Fi key in a root-only file): a costlier
// key would slow every device of a batch and protect nothing more.
const SCRYPT = { N: 1 << 12, r: 8, p: 1, maxmem: 64 << 20 };

export interface Sidecar {
  format: number;
  salt: string;
  key: string;
  output: { size: number; mtimeMs: number };
  /** Public facts of the output, reported again when it is skipped. */
  wireguardPublicKey?: string;
  diskId?: string;
}

const fileDigests = new Map<string, string>();

/** The stats of `path`, or undefined when it cannot be had (missing, a loop of links, no permission). */
function statOrNot(how: (path: string) => Stats, path: string): Stats | undefined {
  try {
    return how(path);
  } catch {
    return undefined;
  }
}

/**
 * Hashes a file source (a file, or a directory tree: names, types, modes and
 * contents). Synchronous calls, as the recipes read sources: an agent of 200
 * files took ~7 ms per device in the thread pool's round trips, for stats.
 */
function hashSource(path: string, hash: ReturnType<typeof createHash>, depth = 0): void {
  // Bounded: a symlink cycle in a source tree must not recurse forever.
  if (depth > 64) return void hash.update('deep\0');
  // Sources follow symlinks (as the recipes do): hash what they lead to.
  const target = statOrNot(statSync, path);
  if (!target) return void hash.update(statOrNot(lstatSync, path) ? 'dangling\0' : 'missing\0');
  hash.update(`${target.isDirectory() ? 'd' : 'f'}${target.mode & 0o7777}\0`);
  if (target.isDirectory()) {
    for (const name of readdirSync(path).sort()) {
      hash.update(`${name}\0`);
      hashSource(join(path, name), hash, depth + 1);
    }
  } else {
    // Every device of a batch has the same sources: each file is read once per
    // run, unless it changes (its size, time or inode).
    const key = `${path}\0${target.ino}\0${target.size}\0${target.mtimeMs}`;
    let digest = fileDigests.get(key);
    if (digest === undefined) {
      digest = createHash('sha256').update(readFileSync(path)).digest('hex');
      fileDigests.set(key, digest);
    }
    hash.update(digest);
  }
}

/** The inputs of one device's output, as one digest (secrets included, so it is only ever stored through scrypt). */
export async function inputDigest(inputs: { version: string; baseIdentity: string; config: DeviceConfig; baseDir: string; env: NodeJS.ProcessEnv }): Promise<Buffer> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ format: FORMAT, version: inputs.version, base: inputs.baseIdentity, config: inputs.config, epoch: inputs.env.SOURCE_DATE_EPOCH ?? null, seed: inputs.env.PIIMG_SEED ?? null }));
  for (const entry of inputs.config.files ?? []) {
    if (entry.source === undefined) continue;
    hash.update(`\0source ${entry.target}\0`);
    hashSource(resolve(inputs.baseDir, entry.source), hash);
  }
  return hash.digest();
}

function scryptKey(digest: Buffer, salt: Buffer): Promise<string> {
  return new Promise((done, fail) => scrypt(digest, salt, 32, SCRYPT, (error, key) => (error ? fail(error) : done(key.toString('hex')))));
}

async function readSidecar(outPath: string): Promise<Sidecar | undefined> {
  try {
    const value = JSON.parse(await readFile(outPath + SIDECAR_SUFFIX, 'utf8')) as Sidecar;
    return value.format === FORMAT && typeof value.salt === 'string' && typeof value.key === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The sidecar of `outPath` when the output exists as it was written and was made from the same inputs. */
export async function upToDate(outPath: string, digest: Buffer): Promise<Sidecar | undefined> {
  const sidecar = await readSidecar(outPath);
  if (!sidecar) return undefined;
  const output = await stat(outPath).catch(() => undefined);
  if (!output || output.size !== sidecar.output.size || output.mtimeMs !== sidecar.output.mtimeMs) return undefined;
  return (await scryptKey(digest, Buffer.from(sidecar.salt, 'hex'))) === sidecar.key ? sidecar : undefined;
}

/** Records the inputs of a freshly written output (atomically: a partial file renamed into place). */
export async function writeSidecar(outPath: string, digest: Buffer, facts: { wireguardPublicKey?: string; diskId?: string }): Promise<void> {
  const salt = randomBytes(16);
  const output = await stat(outPath);
  const sidecar: Sidecar = {
    format: FORMAT,
    salt: salt.toString('hex'),
    key: await scryptKey(digest, salt),
    output: { size: output.size, mtimeMs: output.mtimeMs },
    ...facts,
  };
  const partial = `${outPath}${SIDECAR_SUFFIX}.${randomBytes(6).toString('hex')}.partial`;
  await writeFile(partial, JSON.stringify(sidecar, null, 2) + '\n', { mode: 0o644 });
  await rename(partial, outPath + SIDECAR_SUFFIX);
}
