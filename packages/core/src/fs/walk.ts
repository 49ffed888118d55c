import type { BadEntryName } from './path.js';
import type { Stats, Volume } from './volume.js';

/** One file, directory or link that `walk` visits. */
export interface WalkEntry {
  /** Absolute path inside the volume. */
  path: string;
  stats: Stats;
}

/** Options of `walk`. */
export interface WalkOptions {
  /** Entries whose name is not a single path component are skipped and reported here. */
  onBadName?: (bad: BadEntryName) => void;
}

/** Bound on directory depth: a directory cycle in a damaged filesystem must not recurse forever. */
const MAX_DEPTH = 256;

/**
 * Yields `root` and everything below it, depth first, directories before
 * their contents, names sorted. Symlinks are reported, never followed.
 * Every yielded path is built from names that readdir checked to be single
 * path components.
 */
export async function* walk(volume: Volume, root = '/', options: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  const seen = new Set<number>();
  const readdirOptions = options.onBadName ? { onBadName: options.onBadName } : {};
  async function* visit(path: string, depth: number): AsyncGenerator<WalkEntry> {
    const stats = await volume.lstat(path);
    yield { path, stats };
    if (stats.type !== 'directory' || depth >= MAX_DEPTH) return;
    // FAT has no inode numbers worth trusting for cycles; ext4 does.
    if (volume.kind === 'ext4') {
      if (seen.has(stats.ino)) return;
      seen.add(stats.ino);
    }
    const entries = (await volume.readdir(path, readdirOptions)).map((e) => e.name).sort();
    for (const name of entries) {
      yield* visit(path === '/' ? `/${name}` : `${path}/${name}`, depth + 1);
    }
  }
  yield* visit(root, 0);
}
