import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { PiimgError } from '../errors.js';
import { normalizePath } from '../fs/path.js';
import { confineSource } from '../config/load.js';
import type { FileEntry } from '../config/schema.js';
import { readAccounts, resolveOwner } from './accounts.js';
import type { VolumeName } from './context.js';
import { disableUnit, enableUnit, maskUnit } from './systemd.js';
import type { RecipeContext } from './types.js';

const MAX_TREE_ENTRIES = 100_000;
const MAX_TREE_DEPTH = 64;
/** Host files up to this size are read into the reused buffer of a SourceReader. */
const POOLED_MAX = 8 << 20;

/**
 * Reads the host files of one applyFiles call into one buffer, reused from
 * file to file: volumes copy a file's bytes before writeFile settles. A new
 * Buffer per file (20 MiB for an agent of 200 files) made the garbage
 * collector run about one more full collection per image, for external
 * memory pressure. Larger files get a buffer of their own.
 */
class SourceReader {
  private pool = Buffer.allocUnsafe(0);

  /** The bytes of `path`, valid until the next call. */
  read(path: string): Uint8Array {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size <= POOLED_MAX) {
        // One byte more than the size: a file that grew since is read whole below, as readFileSync reads it.
        if (this.pool.length < size + 1) this.pool = Buffer.allocUnsafe(Math.max(64 << 10, 2 ** Math.ceil(Math.log2(size + 1))));
        let length = 0;
        for (let count = 1; length < size + 1 && count > 0; length += count) count = readSync(fd, this.pool, length, size + 1 - length, null);
        if (length <= size) return new Uint8Array(this.pool.buffer, this.pool.byteOffset, length);
      }
    } finally {
      closeSync(fd);
    }
    // A view of the Buffer, not a copy: new Uint8Array(buffer) copies element by element.
    const buffer = readFileSync(path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
}

/** Paths under the boot mount point (/boot/firmware on Bookworm) belong to the boot partition. */
export function routeTarget(target: string, bootMount: string): { volume: VolumeName; path: string } {
  const path = normalizePath(target);
  if (path === bootMount || path.startsWith(bootMount + '/')) {
    return { volume: 'boot', path: path.slice(bootMount.length) || '/' };
  }
  return { volume: 'root', path };
}

function parseMode(mode: string | undefined): number | undefined {
  return mode === undefined ? undefined : Number.parseInt(mode, 8);
}

/**
 * Files and directory trees. A tree is laid over the target: files present
 * in the image but not in the source stay. Host modes are not portable
 * (Windows has none), so modes come from the config: `mode` for files
 * (default 0755 for host executables, else 0644), `dirMode` for directories.
 * Host files are read with synchronous calls: the image side is synchronous
 * anyway, and with the asynchronous ones an agent tree of 200 files took
 * 280 ms instead of 150-170 ms, mostly idle thread-pool round trips.
 */
export async function applyFiles(ctx: RecipeContext): Promise<void> {
  const files = ctx.config.files;
  if (!files || files.length === 0) return;
  const accounts = await readAccounts(ctx.editor);
  const reader = new SourceReader();
  for (const [index, entry] of files.entries()) {
    const owner = resolveOwner(accounts, entry.owner, `files[${index}].owner`);
    const { volume, path } = routeTarget(entry.target, ctx.release.bootMount);
    const mode = parseMode(entry.mode);
    if (entry.source === undefined) {
      const bytes = entry.content !== undefined ? entry.content : new Uint8Array(Buffer.from(entry.contentBase64 ?? '', 'base64'));
      // Inline content may be a token or key: reports never show content.
      await ctx.editor.ensureFile(volume, path, bytes, { mode: mode ?? 0o644, ...owner, summary: `${bytes.length} bytes (content not shown)` });
      continue;
    }
    let source = resolve(ctx.baseDir, entry.source);
    // With a source root, the real path is read: a symlink swapped in later cannot lead out.
    if (ctx.sourceRoot) source = confineSource(source, ctx.sourceRoot.real, `files[${index}].source`, ctx.sourceRoot.given);
    let stats: Stats;
    try {
      // The named source itself is followed, like `cp -r link/`; links inside a tree are copied as links.
      stats = statSync(source);
    } catch (error) {
      throw new PiimgError('E_CONFIG', `files[${index}].source: ${entry.source} does not exist`, { path: entry.source }, { cause: error });
    }
    if (stats.isDirectory()) {
      await ctx.editor.ensureDir(volume, path, { mode: parseMode(entry.dirMode) ?? 0o755, ...owner });
      await copyTree(ctx, entry, source, volume, path, owner, { entries: 0, reader }, 0, `files[${index}].source`);
    } else {
      await copyFile(ctx, entry, source, stats, volume, path, owner, reader);
    }
  }
}

async function copyFile(
  ctx: RecipeContext,
  entry: FileEntry,
  source: string,
  stats: Stats,
  volume: VolumeName,
  path: string,
  owner: { uid: number; gid: number },
  reader: SourceReader,
): Promise<void> {
  const executable = process.platform !== 'win32' && (stats.mode & 0o111) !== 0;
  const mode = parseMode(entry.mode) ?? (executable ? 0o755 : 0o644);
  const bytes = reader.read(source);
  const summary = entry.secret ? `${bytes.length} bytes (secret)` : `${bytes.length} bytes`;
  await ctx.editor.ensureFile(volume, path, bytes, { mode, ...owner, summary });
}

async function copyTree(
  ctx: RecipeContext,
  entry: FileEntry,
  source: string,
  volume: VolumeName,
  path: string,
  owner: { uid: number; gid: number },
  walk: { entries: number; reader: SourceReader },
  depth: number,
  what: string,
): Promise<void> {
  if (depth > MAX_TREE_DEPTH) throw new PiimgError('E_LIMIT', `${source} is nested deeper than ${MAX_TREE_DEPTH} levels`, { path: source });
  // Sorted, so the order of writes (and inode numbers) does not depend on the host.
  const names = readdirSync(source).sort();
  for (const name of names) {
    if (++walk.entries > MAX_TREE_ENTRIES) throw new PiimgError('E_LIMIT', `${entry.source} has more than ${MAX_TREE_ENTRIES} entries`, {});
    let from = join(source, name);
    const to = `${path === '/' ? '' : path}/${name}`;
    const stats = lstatSync(from);
    // Symlinks inside a tree are copied as links (their text), never read through.
    if (ctx.sourceRoot && !stats.isSymbolicLink()) from = confineSource(from, ctx.sourceRoot.real, `${what} (${from})`, ctx.sourceRoot.given);
    if (stats.isDirectory()) {
      await ctx.editor.ensureDir(volume, to, { mode: parseMode(entry.dirMode) ?? 0o755, ...owner });
      await copyTree(ctx, entry, from, volume, to, owner, walk, depth + 1, what);
    } else if (stats.isSymbolicLink()) {
      if (volume === 'boot') {
        ctx.editor.warn(`${from} is a symlink; the FAT boot partition cannot hold it, skipped`);
        continue;
      }
      await ctx.editor.ensureSymlink(volume, to, readlinkSync(from), owner);
    } else if (stats.isFile()) {
      await copyFile(ctx, entry, from, stats, volume, to, owner, walk.reader);
    } else {
      ctx.editor.warn(`${from} is not a regular file, directory or symlink; skipped`);
    }
  }
}

/** services.enable / disable / mask, in that order, as systemctl would do them. */
export async function applyServices(ctx: RecipeContext): Promise<void> {
  const services = ctx.config.services;
  if (!services) return;
  for (const unit of services.enable) await enableUnit(ctx.editor, unit);
  for (const unit of services.disable) await disableUnit(ctx.editor, unit);
  for (const unit of services.mask) await maskUnit(ctx.editor, unit);
}

/**
 * systemd applies unit presets at first boot (machine-id "uninitialized", or
 * missing: machine-id(5) "First Boot Semantics") in enable-only mode, so a
 * unit disabled offline that a preset enables would be enabled again. Debian
 * ships no catch-all "disable *" preset, so every unit with an [Install]
 * section is such a unit there. A `disable` line in a preset file that sorts
 * first keeps it off: preset files are read in lexical order of their names
 * across /etc, /run and /usr/lib, and the first matching line wins
 * (systemd.preset(5)). Masked units need no line; a unit enabled here loses a
 * line an earlier run wrote.
 */
export const PRESET_FILE = '/etc/systemd/system-preset/00-piimg.preset';

export async function applyPresets(ctx: RecipeContext): Promise<void> {
  const { config, editor } = ctx;
  const disable = [...(config.services?.disable ?? [])];
  const enable = [...(config.services?.enable ?? [])];
  if (config.ssh) (config.ssh.enabled ? enable : disable).push('ssh.service');
  const current = await editor.readText('root', PRESET_FILE);
  if (current === undefined && disable.length === 0) return;
  const lines = (current ?? '# Written by piimg: units disabled offline stay disabled at first boot (systemd.preset(5)).\n')
    .replace(/\n$/, '')
    .split('\n')
    .filter((line) => !enable.some((unit) => line.trim() === `disable ${unit}`));
  for (const unit of disable) if (!lines.includes(`disable ${unit}`)) lines.push(`disable ${unit}`);
  await editor.ensureFile('root', PRESET_FILE, lines.join('\n') + '\n', { mode: 0o644, uid: 0, gid: 0, summary: `preset: disable ${disable.join(' ') || '(none)'}` });
}
