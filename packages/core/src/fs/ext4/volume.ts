import { CHUNK_BYTES as STAGE_BYTES, loadExt2fs, type Ext2Filesystem, type InodeStat, type Time } from '@piimg/wasm';
import type { BlockDevice, BlockReader } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import { decodeNameBytes, encodeNameBytes, filterEntryNames, splitPath, type ReaddirOptions } from '../path.js';
import {
  defaultClock,
  type DirEntry,
  type FileData,
  type FileType,
  type MkdirOptions,
  type MountOptions,
  type OwnerOptions,
  type RmOptions,
  type Stats,
  type Volume,
  type WriteFileOptions,
} from '../volume.js';
import { toPiimgError } from './errors.js';
import {
  featureNames,
  incompatFeatures,
  READ_ONLY_RO_COMPAT,
  READABLE_INCOMPAT,
  roCompatFeatures,
  WRITABLE_INCOMPAT,
  WRITABLE_RO_COMPAT,
} from './layout.js';
import { readSuperblockWords } from './probe.js';

export interface Ext4MountOptions extends MountOptions {}

/** Linux limits. Ref: include/uapi/linux/limits.h, ext4 EXT4_NAME_LEN. */
const NAME_MAX_BYTES = 255;
const MAX_SYMLINK_DEPTH_DIRS = 4096;
/** readFile returns one array; anything larger must be streamed. */
const MAX_READFILE_BYTES = 2 ** 31 - 1;

const S_IFMT = 0o170000;
/** i_flags bits. Ref: ext2_fs.h. */
const EXT4_ENCRYPT_FL = 0x800;
const EXT4_CASEFOLD_FL = 0x40000000;
const typesByMode: Record<number, FileType> = {
  0o100000: 'file',
  0o040000: 'directory',
  0o120000: 'symlink',
  0o020000: 'char',
  0o060000: 'block',
  0o010000: 'fifo',
  0o140000: 'socket',
};
/** EXT2_FT_* directory entry types. Ref: ext2_fs.h. */
const typesByFileType: FileType[] = ['unknown', 'file', 'directory', 'char', 'block', 'fifo', 'socket', 'symlink'];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function typeOfMode(mode: number): FileType {
  return typesByMode[mode & S_IFMT] ?? 'unknown';
}

function toTime(date: Date): Time {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new PiimgError('EINVAL', 'invalid date', { date: String(date) });
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: (ms - sec * 1000) * 1_000_000 };
}

function toDate(time: Time): Date {
  return new Date(time.sec * 1000 + Math.floor(time.nsec / 1_000_000));
}

function encodeName(name: string, path: string): Uint8Array {
  const bytes = encodeNameBytes(name, path);
  if (bytes.length > NAME_MAX_BYTES) throw new PiimgError('ENAMETOOLONG', `name longer than ${NAME_MAX_BYTES} bytes: ${path}`, { path });
  return bytes;
}

function isDevice(device: BlockDevice | BlockReader): device is BlockDevice {
  return typeof (device as BlockDevice).write === 'function' && typeof (device as BlockDevice).flush === 'function';
}

function checkId(value: number, what: string, path: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new PiimgError('EINVAL', `${what} must be a 32-bit unsigned integer`, { path, value });
  return value;
}

function checkMode(mode: number, path: string): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new PiimgError('EINVAL', 'mode must be permission bits 0..0o7777', { path, mode });
  return mode;
}

/**
 * Mounts an ext2/3/4 filesystem. Writable when the device can be written
 * and `readOnly` is not set; a read-only mount never writes to the device.
 * Refuses to write filesystems with features libext2fs cannot handle.
 */
export async function mountExt4(device: BlockDevice | BlockReader, options: Ext4MountOptions = {}): Promise<Ext4Volume> {
  const words = readSuperblockWords(device);
  if (words === undefined) throw new PiimgError('E_EXT4_BAD_SUPERBLOCK', 'no ext2/3/4 superblock found', {});
  const writable = options.readOnly !== true && isDevice(device);

  const unreadable = (words.incompat & ~READABLE_INCOMPAT) >>> 0;
  if (unreadable !== 0) {
    const features = featureNames(unreadable, incompatFeatures, 'I');
    throw new PiimgError('E_EXT4_UNSUPPORTED_FEATURE', `filesystem uses features piimg cannot read: ${features.join(', ')}`, { features });
  }
  if (writable) {
    const badIncompat = (words.incompat & ~WRITABLE_INCOMPAT) >>> 0;
    const badRoCompat = ((words.roCompat & ~WRITABLE_RO_COMPAT) | (words.roCompat & READ_ONLY_RO_COMPAT)) >>> 0;
    if (badIncompat !== 0 || badRoCompat !== 0) {
      const features = [...featureNames(badIncompat, incompatFeatures, 'I'), ...featureNames(badRoCompat, roCompatFeatures, 'R')];
      throw new PiimgError(
        'E_EXT4_UNSUPPORTED_FEATURE',
        `refusing to write a filesystem with features libext2fs does not support: ${features.join(', ')} (mount with readOnly: true to read it)`,
        { features },
      );
    }
    // A journal that needs replaying holds changes the filesystem does not show yet.
    if (words.incompat & 0x0004) {
      throw new PiimgError('E_EXT4_NEEDS_RECOVERY', 'the journal needs recovery (filesystem was not cleanly unmounted); run e2fsck first', {
        features: ['needs_recovery'],
      });
    }
  }
  const lib = loadExt2fs();
  let fs: Ext2Filesystem;
  try {
    fs = lib.open(device, { writable });
  } catch (error) {
    throw toPiimgError(error, {});
  }
  return new Ext4Volume(fs, writable, options.now ?? defaultClock());
}

/** An ext2/3/4 filesystem served by libext2fs in WebAssembly. */
export class Ext4Volume implements Volume {
  readonly kind = 'ext4' as const;
  readonly readOnly: boolean;
  private closed = false;
  private readonly names: NameIndex;
  /** Operations run one at a time: libext2fs state must not interleave across awaits. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly fs: Ext2Filesystem,
    writable: boolean,
    private readonly clock: () => Date,
  ) {
    this.readOnly = !writable;
    this.names = new NameIndex(fs);
  }

  /** Block size, block and inode counts of the filesystem. */
  info(): { blockSize: number; blocksCount: number; freeBlocksCount: number; inodesCount: number; freeInodesCount: number } {
    return this.fs.info();
  }

  private run<T>(path: string, write: boolean, body: () => T | Promise<T>): Promise<T> {
    const next = this.queue.then(async () => {
      if (this.closed) throw new PiimgError('E_CLOSED', 'volume is closed', { path });
      if (write && this.readOnly) throw new PiimgError('EROFS', `volume is read-only: ${path}`, { path });
      if (write) this.fs.setNow(toTime(this.clock()));
      try {
        return await body();
      } catch (error) {
        throw toPiimgError(error, { path });
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Throws ENOSPC unless `byteCount` more bytes fit with room to spare for
   * extent tree blocks. libext2fs does not undo a write that runs out of
   * blocks half way (the extent tree can be left inconsistent), so running
   * out must be detected before libext2fs allocates anything.
   */
  private reserve(byteCount: number, path: string, alreadyAllocatedBytes = 0, freedBytes = 0): void {
    if (byteCount === 0) return;
    const info = this.fs.info();
    const freeBlocks = info.freeBlocksCount + Math.floor(freedBytes / info.blockSize);
    // Staged bytes are allocated in 1 MiB steps: count from the last step.
    const allocated = Math.floor(alreadyAllocatedBytes / STAGE_BYTES) * STAGE_BYTES;
    const dataBlocks = Math.ceil(byteCount / info.blockSize) - Math.floor(allocated / info.blockSize);
    // One extent leaf block holds (blockSize - 12) / 12 extents; assume the
    // worst case of one extent per 16 blocks, plus index blocks.
    const treeBlocks = 4 + Math.ceil(dataBlocks / 16 / Math.floor((info.blockSize - 12) / 12));
    if (dataBlocks + treeBlocks > freeBlocks) {
      throw new PiimgError('ENOSPC', `no space left on the filesystem for ${byteCount} bytes: ${path}`, {
        path,
        freeBlocks: info.freeBlocksCount,
        blockSize: info.blockSize,
      });
    }
  }

  private nowTime(): Time {
    return toTime(this.clock());
  }

  // ---- path resolution ----

  private pathBytes(parts: string[], path: string): Uint8Array {
    const names = parts.map((part) => encodeName(part, path));
    const out = new Uint8Array(names.reduce((sum, name) => sum + 1 + name.length, 0) || 1);
    out[0] = 0x2f;
    let at = 0;
    for (const name of names) {
      out[at] = 0x2f;
      out.set(name, at + 1);
      at += 1 + name.length;
    }
    return out;
  }

  /**
   * The inode at `path`; errors name `reportPath` (the path the caller asked about).
   * Paths made only of directories (and a last component that needs no
   * following) are walked from the longest prefix this volume has resolved
   * before; anything else (a missing component, a symlink on the way, a file
   * in the middle) goes to libext2fs's namei, which also makes its errors.
   */
  private resolve(path: string, follow: boolean, reportPath = path): number {
    const parts = splitPath(path);
    let found = 0;
    try {
      found = this.walkDirectories(parts, follow, reportPath);
    } catch {
      // namei below meets the same trouble and reports it its own way.
    }
    if (found > 0) return found;
    if (found === MISSING) {
      // What namei says for a missing component, without walking the path
      // again; a name that cannot be encoded is reported first, as namei's caller does.
      this.pathBytes(parts, reportPath);
      const error = this.fs.notFoundError('namei');
      if (error !== undefined) throw toPiimgError(error, { path: reportPath });
    }
    try {
      return this.fs.namei(this.pathBytes(parts, reportPath), follow);
    } catch (error) {
      throw toPiimgError(error, { path: reportPath });
    }
  }

  /**
   * The fast path of resolve(): 0 when it cannot answer, MISSING when a
   * component after real directories does not exist. Each directory found is
   * remembered under its path (see NameIndex.directoryOf).
   */
  private walkDirectories(parts: string[], follow: boolean, reportPath: string): number {
    let dir = ROOT_INO;
    let key = '';
    for (let i = 0; i < parts.length; i++) {
      key += '/' + parts[i]!;
      const known = this.names.directoryOf(key);
      if (known !== undefined) {
        dir = known;
        continue;
      }
      const ino = this.names.lookup(dir, encodeName(parts[i]!, reportPath));
      if (ino === 0) return MISSING;
      const type = typeOfMode(this.fs.stat(ino).mode);
      if (type === 'directory') {
        this.names.rememberDirectory(key, ino);
        dir = ino;
        continue;
      }
      // A last component that is not followed, or not a symlink, is the answer.
      if (i === parts.length - 1 && (!follow || type !== 'symlink')) return ino;
      return 0;
    }
    return dir;
  }

  /** The parent directory inode (symlinks followed) and the encoded last name. */
  private parentOf(path: string): { dir: number; name: Uint8Array; parts: string[] } {
    const parts = splitPath(path);
    const last = parts.pop();
    if (last === undefined) throw new PiimgError('EINVAL', 'the root directory has no parent', { path });
    const dir = this.resolve('/' + parts.join('/'), true, path);
    const stat = this.fs.stat(dir);
    if (typeOfMode(stat.mode) !== 'directory') throw new PiimgError('ENOTDIR', `not a directory: ${'/' + parts.join('/')}`, { path });
    this.assertNamesEditable(stat, '/' + parts.join('/'), path);
    return { dir, name: encodeName(last, path), parts: [...parts, last] };
  }

  /**
   * Names in encrypted directories are ciphertext, and casefolded ones
   * compare without case: libext2fs's lookup handles neither, so adding or
   * changing names there could create duplicates or garbage names.
   */
  private assertNamesEditable(dirStat: InodeStat, dirPath: string, path: string): void {
    if (dirStat.flags & (EXT4_ENCRYPT_FL | EXT4_CASEFOLD_FL)) {
      throw new PiimgError('ENOTSUP', `encrypted and case-insensitive directories are not supported: ${dirPath}`, { path });
    }
  }

  private toStats(ino: number, stat: InodeStat): Stats {
    const stats: Stats = {
      type: typeOfMode(stat.mode),
      mode: stat.mode,
      uid: stat.uid,
      gid: stat.gid,
      size: stat.size,
      ino,
      nlink: stat.links,
      atime: toDate(stat.atime),
      mtime: toDate(stat.mtime),
      ctime: toDate(stat.ctime),
    };
    if (stat.crtime) stats.birthtime = toDate(stat.crtime);
    return stats;
  }

  // ---- reading ----

  stat(path: string): Promise<Stats> {
    return this.run(path, false, () => {
      const ino = this.resolve(path, true);
      return this.toStats(ino, this.fs.stat(ino));
    });
  }

  lstat(path: string): Promise<Stats> {
    return this.run(path, false, () => {
      const ino = this.resolve(path, false);
      return this.toStats(ino, this.fs.stat(ino));
    });
  }

  async exists(path: string): Promise<boolean> {
    return (await this.lstatIfPresent(path)) !== undefined;
  }

  lstatIfPresent(path: string): Promise<Stats | undefined> {
    return this.run(path, false, () => {
      const parts = splitPath(path);
      let ino = 0;
      try {
        ino = this.walkDirectories(parts, false, path);
      } catch {
        // lstat below meets the same trouble and reports it.
      }
      if (ino === MISSING) {
        this.pathBytes(parts, path);
        return undefined;
      }
      if (ino === 0) {
        try {
          ino = this.resolve(path, false);
        } catch (error) {
          if (error instanceof PiimgError && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return undefined;
          throw error;
        }
      }
      return this.toStats(ino, this.fs.stat(ino));
    });
  }

  readFile(path: string): Promise<Uint8Array> {
    return this.run(path, false, () => {
      const ino = this.resolve(path, true);
      const stat = this.fs.stat(ino);
      const type = typeOfMode(stat.mode);
      if (type === 'directory') throw new PiimgError('EISDIR', `is a directory: ${path}`, { path });
      if (type !== 'file') throw new PiimgError('EINVAL', `not a regular file: ${path}`, { path });
      // A hostile i_size must not make us allocate gigabytes: no file readFile
      // returns can hold more than the filesystem itself.
      const info = this.fs.info();
      const limit = Math.min(MAX_READFILE_BYTES, info.blocksCount * info.blockSize);
      if (stat.size > limit) {
        throw new PiimgError('E_LIMIT', `file of ${stat.size} bytes is too large for readFile (limit ${limit}): ${path}`, { path, size: stat.size });
      }
      const out = new Uint8Array(stat.size);
      const got = this.fs.readInto(ino, 0, out);
      if (got !== stat.size) throw new PiimgError('E_EXT4_CORRUPT', `file ended at ${got} of ${stat.size} bytes: ${path}`, { path });
      return out;
    });
  }

  readlink(path: string): Promise<string> {
    return this.run(path, false, () => {
      const ino = this.resolve(path, false);
      if (typeOfMode(this.fs.stat(ino).mode) !== 'symlink') throw new PiimgError('EINVAL', `not a symbolic link: ${path}`, { path });
      return decoder.decode(this.fs.readlink(ino, this.fs.info().blockSize));
    });
  }

  readdir(path: string, options: ReaddirOptions = {}): Promise<DirEntry[]> {
    return this.run(path, false, () => {
      const ino = this.resolve(path, true);
      if (typeOfMode(this.fs.stat(ino).mode) !== 'directory') throw new PiimgError('ENOTDIR', `not a directory: ${path}`, { path });
      // Names are checked before anything else looks at them: a crafted
      // entry must not cost even a stat of its inode.
      const named = filterEntryNames(
        path,
        this.fs.readdir(ino).map((entry) => ({ name: decodeNameBytes(entry.name), entry })),
        options,
      );
      return named.map(({ name, entry }) => ({
        name,
        type: entry.fileType !== 0 ? (typesByFileType[entry.fileType] ?? 'unknown') : typeOfMode(this.fs.stat(entry.ino).mode),
      }));
    });
  }

  // ---- writing ----

  writeFile(path: string, data: FileData, options: WriteFileOptions = {}): Promise<void> {
    return this.run(path, true, async () => {
      if (options.mode !== undefined) checkMode(options.mode, path);
      const { dir, name } = this.parentOf(path);
      let ino = this.names.lookup(dir, name);
      let created = false;
      // Refuse up front what cannot fit, before anything is created or
      // truncated (the blocks of a file being replaced count as free).
      if (typeof data === 'string' || data instanceof Uint8Array) {
        const length = typeof data === 'string' ? encoder.encode(data).length : data.length;
        const existing = ino === 0 ? 0 : this.fs.stat(ino);
        const freedBytes = existing === 0 || typeOfMode(existing.mode) !== 'file' ? 0 : existing.size;
        this.reserve(length, path, 0, freedBytes);
      }
      if (ino !== 0) {
        let type = typeOfMode(this.fs.stat(ino).mode);
        if (type === 'symlink') {
          ino = this.resolve(path, true);
          type = typeOfMode(this.fs.stat(ino).mode);
        }
        if (type === 'directory') throw new PiimgError('EISDIR', `is a directory: ${path}`, { path });
        if (type !== 'file') throw new PiimgError('EINVAL', `not a regular file: ${path}`, { path });
      } else {
        ino = this.names.create(
          dir,
          name,
          options.mode ?? 0o644,
          checkId(options.uid ?? 0, 'uid', path),
          checkId(options.gid ?? 0, 'gid', path),
        );
        created = true;
      }
      try {
        if (!created) this.fs.truncate(ino, 0);
        const writer = this.fs.openWriter(ino);
        let failed = true;
        try {
          const put = (chunk: Uint8Array): void => {
            this.reserve(writer.position + chunk.length, path, writer.position);
            writer.write(chunk);
          };
          if (typeof data === 'string') put(encoder.encode(data));
          else if (data instanceof Uint8Array) put(data);
          else if (Symbol.asyncIterator in data) {
            for await (const chunk of data as AsyncIterable<Uint8Array>) put(toBytes(chunk, path));
          } else {
            for (const chunk of data as Iterable<Uint8Array>) put(toBytes(chunk, path));
          }
          failed = false;
        } finally {
          writer.close({ abort: failed });
        }
      } catch (error) {
        // A new file that could not be written completely is removed again,
        // so a failed call leaves no half-written file behind.
        if (created) {
          try {
            this.names.unlink(dir, name);
            this.fs.adjustLinks(ino, -1);
          } catch {
            // The original error says more than a failed cleanup.
          }
        }
        throw error;
      }
      const attr: Parameters<Ext2Filesystem['setattr']>[1] = { mtime: this.nowTime() };
      if (!created && options.mode !== undefined) attr.mode = options.mode;
      if (!created && options.uid !== undefined) attr.uid = checkId(options.uid, 'uid', path);
      if (!created && options.gid !== undefined) attr.gid = checkId(options.gid, 'gid', path);
      if (options.mtime) attr.mtime = toTime(options.mtime);
      if (options.atime) attr.atime = toTime(options.atime);
      this.fs.setattr(ino, attr);
    });
  }

  mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    return this.run(path, true, () => {
      const mode = checkMode(options.mode ?? 0o755, path);
      const uid = checkId(options.uid ?? 0, 'uid', path);
      const gid = checkId(options.gid ?? 0, 'gid', path);
      const parts = splitPath(path);
      if (parts.length === 0) {
        if (options.recursive) return;
        throw new PiimgError('EEXIST', 'the root directory exists', { path });
      }
      if (!options.recursive) {
        const { dir, name } = this.parentOf(path);
        if (this.names.lookup(dir, name) !== 0) throw new PiimgError('EEXIST', `file exists: ${path}`, { path });
        this.names.mkdir(dir, name, mode, uid, gid);
        return;
      }
      let dir = this.resolve('/', true);
      for (let i = 0; i < parts.length; i++) {
        const name = encodeName(parts[i]!, path);
        const here = '/' + parts.slice(0, i + 1).join('/');
        const existing = this.names.lookup(dir, name);
        if (existing === 0) {
          this.assertNamesEditable(this.fs.stat(dir), '/' + parts.slice(0, i).join('/'), path);
          dir = this.names.mkdir(dir, name, mode, uid, gid);
          continue;
        }
        // Existing components may be symlinks to directories, as with mkdir -p.
        const target = typeOfMode(this.fs.stat(existing).mode) === 'symlink' ? this.resolve(here, true) : existing;
        if (typeOfMode(this.fs.stat(target).mode) !== 'directory') {
          throw new PiimgError(i === parts.length - 1 ? 'EEXIST' : 'ENOTDIR', `not a directory: ${here}`, { path });
        }
        dir = target;
      }
    });
  }

  symlink(target: string, path: string, options: OwnerOptions = {}): Promise<void> {
    return this.run(path, true, () => {
      const targetBytes = encoder.encode(target);
      if (targetBytes.length === 0) throw new PiimgError('ENOENT', 'empty symlink target', { path });
      if (targetBytes.includes(0)) throw new PiimgError('EINVAL', 'symlink target contains a NUL byte', { path });
      if (targetBytes.length >= this.fs.info().blockSize) {
        throw new PiimgError('ENAMETOOLONG', `symlink target must be shorter than the block size: ${path}`, { path });
      }
      const { dir, name } = this.parentOf(path);
      if (this.names.lookup(dir, name) !== 0) throw new PiimgError('EEXIST', `file exists: ${path}`, { path });
      this.names.symlink(dir, name, targetBytes, checkId(options.uid ?? 0, 'uid', path), checkId(options.gid ?? 0, 'gid', path));
    });
  }

  link(existingPath: string, newPath: string): Promise<void> {
    return this.run(newPath, true, () => {
      const ino = this.resolve(existingPath, false);
      if (typeOfMode(this.fs.stat(ino).mode) === 'directory') {
        throw new PiimgError('EPERM', `hard links to directories are not allowed: ${existingPath}`, { path: existingPath });
      }
      const { dir, name } = this.parentOf(newPath);
      if (this.names.lookup(dir, name) !== 0) throw new PiimgError('EEXIST', `file exists: ${newPath}`, { path: newPath });
      this.fs.adjustLinks(ino, +1);
      try {
        this.names.link(dir, name, ino);
      } catch (error) {
        this.fs.adjustLinks(ino, -1);
        throw error;
      }
    });
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.run(path, true, () => {
      this.fs.setattr(this.resolve(path, true), { mode: checkMode(mode, path) });
    });
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.run(path, true, () => {
      this.fs.setattr(this.resolve(path, true), { uid: checkId(uid, 'uid', path), gid: checkId(gid, 'gid', path) });
    });
  }

  /** Like lchown: changes the owner of a symlink itself. */
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.run(path, true, () => {
      this.fs.setattr(this.resolve(path, false), { uid: checkId(uid, 'uid', path), gid: checkId(gid, 'gid', path) });
    });
  }

  utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    return this.run(path, true, () => {
      this.fs.setattr(this.resolve(path, true), { atime: toTime(atime), mtime: toTime(mtime) });
    });
  }

  rm(path: string, options: RmOptions = {}): Promise<void> {
    return this.run(path, true, () => {
      if (splitPath(path).length === 0) throw new PiimgError('EPERM', 'cannot remove the root directory', { path });
      const { dir, name } = this.parentOf(path);
      const ino = this.names.lookup(dir, name);
      if (ino === 0) {
        if (options.force) return;
        throw new PiimgError('ENOENT', `no such file or directory: ${path}`, { path });
      }
      if (typeOfMode(this.fs.stat(ino).mode) === 'directory') {
        if (!options.recursive && this.fs.readdir(ino).length > 0) {
          throw new PiimgError('ENOTEMPTY', `directory not empty: ${path}`, { path });
        }
        this.removeTree(dir, name, ino, path, 0);
      } else {
        this.names.unlink(dir, name);
        this.fs.adjustLinks(ino, -1);
      }
    });
  }

  /** Removes a directory and everything below it, children first. */
  private removeTree(parent: number, name: Uint8Array, ino: number, path: string, depth: number): void {
    if (depth > MAX_SYMLINK_DEPTH_DIRS) throw new PiimgError('E_LIMIT', `directory tree deeper than ${MAX_SYMLINK_DEPTH_DIRS}: ${path}`, { path });
    for (const entry of this.fs.readdir(ino)) {
      const childType = entry.fileType !== 0 ? typesByFileType[entry.fileType] : typeOfMode(this.fs.stat(entry.ino).mode);
      if (childType === 'directory') {
        this.removeTree(ino, entry.name, entry.ino, path, depth + 1);
      } else {
        this.names.unlink(ino, entry.name);
        this.fs.adjustLinks(entry.ino, -1);
      }
    }
    this.names.unlink(parent, name);
    this.names.release(ino);
    this.fs.adjustLinks(parent, -1);
  }

  rename(from: string, to: string): Promise<void> {
    return this.run(to, true, () => {
      const source = this.parentOf(from);
      const ino = this.names.lookup(source.dir, source.name);
      if (ino === 0) throw new PiimgError('ENOENT', `no such file or directory: ${from}`, { path: from });
      const target = this.parentOf(to);
      const isDir = typeOfMode(this.fs.stat(ino).mode) === 'directory';
      const existing = this.names.lookup(target.dir, target.name);
      if (existing === ino) return;

      if (isDir) {
        // A directory cannot move below itself: walk up from the new parent.
        let up = target.dir;
        for (let depth = 0; ; depth++) {
          if (up === ino) throw new PiimgError('EINVAL', `cannot move a directory into itself: ${from} -> ${to}`, { path: to });
          if (depth > MAX_SYMLINK_DEPTH_DIRS) throw new PiimgError('E_LIMIT', 'directory tree too deep', { path: to });
          const parent = this.names.lookup(up, encoder.encode('..'));
          if (parent === up || parent === 0) break;
          up = parent;
        }
      }

      let replacedDir = false;
      if (existing !== 0) {
        const existingIsDir = typeOfMode(this.fs.stat(existing).mode) === 'directory';
        if (isDir && !existingIsDir) throw new PiimgError('ENOTDIR', `not a directory: ${to}`, { path: to });
        if (!isDir && existingIsDir) throw new PiimgError('EISDIR', `is a directory: ${to}`, { path: to });
        if (existingIsDir && this.fs.readdir(existing).length > 0) {
          throw new PiimgError('ENOTEMPTY', `directory not empty: ${to}`, { path: to });
        }
        // One directory block write switches the name to the new inode.
        this.names.replaceEntry(target.dir, target.name, ino);
        if (existingIsDir) {
          this.names.release(existing);
          replacedDir = true;
        } else {
          this.fs.adjustLinks(existing, -1);
        }
      } else {
        this.names.link(target.dir, target.name, ino);
      }
      this.names.unlink(source.dir, source.name);
      // rename(2) updates the ctime of the moved inode.
      this.fs.setattr(ino, {});
      if (isDir && source.dir !== target.dir) {
        this.fs.setDotdot(ino, target.dir);
        this.fs.adjustLinks(source.dir, -1);
        if (!replacedDir) this.fs.adjustLinks(target.dir, +1);
      } else if (isDir && replacedDir) {
        // Same parent: it lost the replaced directory's "..".
        this.fs.adjustLinks(target.dir, -1);
      }
    });
  }

  flush(): Promise<void> {
    return this.run('/', false, () => {
      if (!this.readOnly) this.fs.flush();
    });
  }

  close(): Promise<void> {
    const next = this.queue.then(() => {
      if (this.closed) return;
      this.closed = true;
      try {
        this.fs.close();
      } catch (error) {
        throw toPiimgError(error, {});
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Directories of at least this many blocks get an in-memory name index:
 * ext2fs_lookup() scans every block, even of a hashed directory.
 */
const INDEX_DIRECTORY_BLOCKS = 2;
/** Bound on the remembered directory paths (a few hundred KiB at most). */
const MAX_REMEMBERED_DIRECTORIES = 4096;
/** walkDirectories(): a component is missing. */
const MISSING = -1;
/** The root directory's inode (ext4 disk layout: "Special inodes"). */
const ROOT_INO = 2;

function nameKey(name: Uint8Array): string {
  return String.fromCharCode(...name);
}

/**
 * Directory entry changes and lookups go through here. For large
 * directories it keeps a name -> inode map, built once from readdir and
 * kept up to date by every change this volume makes (it is the only writer
 * while mounted), so creating 20,000 files is not quadratic.
 */
class NameIndex {
  private readonly maps = new Map<number, Map<string, number>>();
  private readonly indexBytes: number;
  /**
   * Directories by the path of real directory entries that leads to them
   * (no symlink on the way). Adding entries never changes what such a path
   * names; any removal or replacement of an entry forgets them all.
   */
  private readonly directories = new Map<string, number>();

  constructor(private readonly fs: Ext2Filesystem) {
    this.indexBytes = INDEX_DIRECTORY_BLOCKS * fs.info().blockSize;
  }

  private mapOf(dir: number): Map<string, number> | undefined {
    let map = this.maps.get(dir);
    if (map === undefined && this.fs.stat(dir).size >= this.indexBytes) {
      map = new Map();
      for (const entry of this.fs.readdir(dir)) map.set(nameKey(entry.name), entry.ino);
      this.maps.set(dir, map);
    }
    return map;
  }

  lookup(dir: number, name: Uint8Array): number {
    // readdir leaves out "." and "..", so the map has neither; both sit in the first block.
    const dots = name.length > 0 && name.length <= 2 && name.every((byte) => byte === 0x2e);
    const map = dots ? undefined : this.mapOf(dir);
    if (map !== undefined) return map.get(nameKey(name)) ?? 0;
    return this.fs.lookup(dir, name);
  }

  directoryOf(path: string): number | undefined {
    return this.directories.get(path);
  }

  rememberDirectory(path: string, ino: number): void {
    if (this.directories.size >= MAX_REMEMBERED_DIRECTORIES) this.directories.clear();
    this.directories.set(path, ino);
  }

  private added(dir: number, name: Uint8Array, ino: number): number {
    this.maps.get(dir)?.set(nameKey(name), ino);
    return ino;
  }

  create(dir: number, name: Uint8Array, mode: number, uid: number, gid: number): number {
    return this.added(dir, name, this.fs.create(dir, name, mode, uid, gid));
  }
  mkdir(dir: number, name: Uint8Array, mode: number, uid: number, gid: number): number {
    return this.added(dir, name, this.fs.mkdir(dir, name, mode, uid, gid));
  }
  symlink(dir: number, name: Uint8Array, target: Uint8Array, uid: number, gid: number): number {
    return this.added(dir, name, this.fs.symlink(dir, name, target, uid, gid));
  }
  link(dir: number, name: Uint8Array, ino: number): void {
    this.fs.link(dir, name, ino);
    this.added(dir, name, ino);
  }
  replaceEntry(dir: number, name: Uint8Array, ino: number): void {
    this.directories.clear();
    this.fs.replaceEntry(dir, name, ino);
    this.added(dir, name, ino);
  }
  unlink(dir: number, name: Uint8Array): void {
    this.directories.clear();
    this.fs.unlink(dir, name);
    this.maps.get(dir)?.delete(nameKey(name));
  }
  release(ino: number): void {
    this.directories.clear();
    this.fs.release(ino);
    this.maps.delete(ino);
  }
}

function toBytes(chunk: unknown, path: string): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return encoder.encode(chunk);
  throw new PiimgError('EINVAL', 'file data chunks must be Uint8Array', { path });
}
