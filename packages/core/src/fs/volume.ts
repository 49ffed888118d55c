import type { ReaddirOptions } from './path.js';

/**
 * The filesystem interface shared by the FAT and ext4 volumes, shaped like
 * node:fs/promises so it reads familiar. Paths are absolute POSIX paths
 * inside the volume ("/etc/hostname"); ".." never climbs above "/".
 * Errors are PiimgError with errno-style codes (ENOENT, EEXIST, ENOTDIR,
 * EISDIR, ENOTEMPTY, ENOSPC, ENAMETOOLONG, ENOTSUP, EROFS, EINVAL) and the path
 * in `data.path`.
 */
export type FileType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket' | 'unknown';

/** What `stat` and `lstat` return, as node:fs names it. */
export interface Stats {
  type: FileType;
  /** Full st_mode: file type bits and permission bits (0o100644 for a regular file). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  ino: number;
  nlink: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
  /** Creation time where the filesystem records one. */
  birthtime?: Date;
}

/** One entry of `readdir` (without '.' and '..'). */
export interface DirEntry {
  name: string;
  type: FileType;
}

/** File content: bytes, a UTF-8 string, or chunks for large files. */
export type FileData = Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Owner of a new file, directory or link (0:0 when absent). */
export interface OwnerOptions {
  uid?: number;
  gid?: number;
}

/** Options of `writeFile`. */
export interface WriteFileOptions extends OwnerOptions {
  /** Permission bits (0o644 by default for new files; existing files keep theirs unless given). */
  mode?: number;
  /** Modification time; the volume's clock when absent. */
  mtime?: Date;
  atime?: Date;
}

/** Options of `mkdir`. */
export interface MkdirOptions extends OwnerOptions {
  recursive?: boolean;
  /** Permission bits, 0o755 by default. */
  mode?: number;
}

/** Options of `rm`. */
export interface RmOptions {
  recursive?: boolean;
  /** No error when the path does not exist. */
  force?: boolean;
}

/**
 * A mounted filesystem: the FAT volume or the ext4 volume, with the calls of
 * node:fs/promises. Errors are PiimgError with errno-style codes and the path.
 */
export interface Volume {
  /** 'fat' or 'ext4' (ext2/ext3 are served by the ext4 volume). */
  readonly kind: 'fat' | 'ext4';
  /** Mounted read-only: every change fails with EROFS. */
  readonly readOnly: boolean;
  /** The whole content of a file (symlinks followed). */
  readFile(path: string): Promise<Uint8Array>;
  /**
   * Creates or replaces a file; its parent directory must exist. `data` is the
   * caller's again once the promise settles (the recipes reuse one read buffer
   * for host files): an implementation copies what it keeps.
   */
  writeFile(path: string, data: FileData, options?: WriteFileOptions): Promise<void>;
  /** Creates a directory (and its parents with `recursive`). */
  mkdir(path: string, options?: MkdirOptions): Promise<void>;
  /** Creates a symbolic link at `path` pointing to `target` (ENOTSUP on FAT). */
  symlink(target: string, path: string, options?: OwnerOptions): Promise<void>;
  /** The target of a symbolic link. */
  readlink(path: string): Promise<string>;
  /** Creates a hard link (ENOTSUP on FAT). */
  link(existingPath: string, newPath: string): Promise<void>;
  /** Sets the permission bits (accepted and ignored on FAT). */
  chmod(path: string, mode: number): Promise<void>;
  /** Sets the owner (accepted and ignored on FAT). */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** Sets the access and modification times. */
  utimes(path: string, atime: Date, mtime: Date): Promise<void>;
  /** Removes a file, a link or (empty, or with `recursive`) a directory. */
  rm(path: string, options?: RmOptions): Promise<void>;
  /** Moves `from` to `to`, replacing an existing file at `to` atomically. */
  rename(from: string, to: string): Promise<void>;
  /**
   * The entries of a directory, without "." and "..". Names that are not a
   * single path component are left out and reported to `options.onBadName`;
   * ext4 names that are not valid UTF-8 hold U+DC80..U+DCFF per byte
   * (see decodeNameBytes) and work as they are in every other call.
   */
  readdir(path: string, options?: ReaddirOptions): Promise<DirEntry[]>;
  /** Facts about a file, following symbolic links. */
  stat(path: string): Promise<Stats>;
  /** Facts about a file; a symbolic link is described itself. */
  lstat(path: string): Promise<Stats>;
  /** True when the path names something (a dangling link counts). */
  exists(path: string): Promise<boolean>;
  /**
   * Like lstat, but undefined where lstat fails with ENOENT or ENOTDIR,
   * without building an error (cheaper for "create unless present").
   * Optional: callers fall back to lstat.
   */
  lstatIfPresent?(path: string): Promise<Stats | undefined>;
  /** Writes every pending change to the device. */
  flush(): Promise<void>;
  /** Flushes and releases the volume; further calls fail. */
  close(): Promise<void>;
}

/** Options every volume accepts when mounted. */
export interface MountOptions {
  readOnly?: boolean;
  /**
   * Clock for timestamps of new and changed files. Defaults to
   * SOURCE_DATE_EPOCH (seconds) when that variable is set, else the wall clock.
   */
  now?: () => Date;
}

/** SOURCE_DATE_EPOCH in seconds, when set to a number (Ref: reproducible-builds.org/specs/source-date-epoch). */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const epoch = env.SOURCE_DATE_EPOCH;
  return epoch !== undefined && /^\d+$/.test(epoch) ? Number(epoch) : undefined;
}

/** The default clock: SOURCE_DATE_EPOCH when set, so equal inputs give equal images. */
export function defaultClock(env: NodeJS.ProcessEnv = process.env): () => Date {
  const epoch = sourceDateEpoch(env);
  if (epoch !== undefined) {
    const fixed = new Date(epoch * 1000);
    return () => new Date(fixed.getTime());
  }
  return () => new Date();
}
