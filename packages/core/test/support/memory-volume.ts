import { PiimgError } from '../../src/errors.js';
import { splitPath } from '../../src/fs/path.js';
import type {
  DirEntry,
  FileData,
  FileType,
  MkdirOptions,
  OwnerOptions,
  RmOptions,
  Stats,
  Volume,
  WriteFileOptions,
} from '../../src/fs/volume.js';

/**
 * An in-memory Volume with POSIX semantics (modes, owners, symlinks, hard
 * links, times, errno codes), used to test recipes without an image.
 * With `kind: 'fat'` it behaves like the FAT volume: chmod/chown are ignored
 * and symlinks fail with ENOTSUP.
 */
interface Inode {
  ino: number;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
  data: Uint8Array;
  target: string;
  entries: Map<string, Inode>;
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const MAX_SYMLINK_DEPTH = 40;

function fail(code: string, message: string, path: string): never {
  throw new PiimgError(code, `${code}: ${message}, '${path}'`, { path });
}

async function collect(data: FileData): Promise<Uint8Array> {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data.slice();
  const chunks: Uint8Array[] = [];
  if (Symbol.asyncIterator in (data as object)) {
    for await (const chunk of data as AsyncIterable<Uint8Array>) chunks.push(chunk);
  } else {
    for (const chunk of data as Iterable<Uint8Array>) chunks.push(chunk);
  }
  const total = chunks.reduce((sum, c) => sum + c.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

export interface MemoryVolumeOptions {
  kind?: 'fat' | 'ext4';
  readOnly?: boolean;
  now?: () => Date;
}

export class MemoryVolume implements Volume {
  readonly kind: 'fat' | 'ext4';
  readonly readOnly: boolean;
  private readonly now: () => Date;
  private nextIno = 2;
  private readonly root: Inode;
  private closed = false;

  constructor(options: MemoryVolumeOptions = {}) {
    this.kind = options.kind ?? 'ext4';
    this.readOnly = options.readOnly ?? false;
    this.now = options.now ?? (() => new Date(Date.UTC(2024, 0, 1)));
    this.root = this.newInode('directory', 0o755, 0, 0);
    this.root.nlink = 2;
  }

  private newInode(type: Inode['type'], mode: number, uid: number, gid: number): Inode {
    const time = this.now();
    return {
      ino: this.nextIno++,
      type,
      mode: mode & 0o7777,
      uid,
      gid,
      nlink: 1,
      atime: time,
      mtime: time,
      ctime: time,
      data: new Uint8Array(0),
      target: '',
      entries: new Map(),
    };
  }

  private checkOpen(): void {
    if (this.closed) throw new PiimgError('EINVAL', 'volume is closed', {});
  }

  private checkWritable(path: string): void {
    this.checkOpen();
    if (this.readOnly) fail('EROFS', 'read-only volume', path);
  }

  /** Resolves a path; `followLast` follows a symlink in the final component. */
  private resolve(path: string, followLast: boolean, depth = 0): Inode {
    const { inode } = this.walk(path, followLast, depth);
    if (!inode) fail('ENOENT', 'no such file or directory', path);
    return inode;
  }

  /** Walks to the parent of the last component; returns the parent and the (maybe missing) child. */
  private walk(path: string, followLast: boolean, depth = 0): { parent: Inode; name: string; inode: Inode | undefined } {
    this.checkOpen();
    if (depth > MAX_SYMLINK_DEPTH) fail('ELOOP', 'too many symbolic links', path);
    const parts = splitPath(path);
    let dir = this.root;
    let prefix: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i]!;
      if (name.length > 255) fail('ENAMETOOLONG', 'name too long', path);
      if (dir.type !== 'directory') fail('ENOTDIR', 'not a directory', path);
      let child = this.lookup(dir, name);
      const last = i === parts.length - 1;
      if (child && child.type === 'symlink' && (!last || followLast)) {
        const base = child.target.startsWith('/') ? child.target : '/' + [...prefix, child.target].join('/');
        const rest = parts.slice(i + 1);
        const next = rest.length > 0 ? `${base}/${rest.join('/')}` : base;
        return this.walk(next, followLast, depth + 1);
      }
      if (last) return { parent: dir, name, inode: child };
      if (!child) fail('ENOENT', 'no such file or directory', path);
      dir = child;
      prefix = [...prefix, name];
    }
    return { parent: this.root, name: '', inode: this.root };
  }

  private lookup(dir: Inode, name: string): Inode | undefined {
    if (this.kind !== 'fat') return dir.entries.get(name);
    const lower = name.toLowerCase();
    for (const [key, value] of dir.entries) if (key.toLowerCase() === lower) return value;
    return undefined;
  }

  private entryName(dir: Inode, name: string): string {
    if (this.kind !== 'fat') return name;
    const lower = name.toLowerCase();
    for (const key of dir.entries.keys()) if (key.toLowerCase() === lower) return key;
    return name;
  }

  private touch(inode: Inode): void {
    const time = this.now();
    inode.mtime = time;
    inode.ctime = time;
  }

  async readFile(path: string): Promise<Uint8Array> {
    const inode = this.resolve(path, true);
    if (inode.type === 'directory') fail('EISDIR', 'illegal operation on a directory', path);
    return inode.data.slice();
  }

  async writeFile(path: string, data: FileData, options: WriteFileOptions = {}): Promise<void> {
    this.checkWritable(path);
    const bytes = await collect(data);
    const { parent, name, inode } = this.walk(path, true);
    if (name === '') fail('EISDIR', 'illegal operation on a directory', path);
    if (parent.type !== 'directory') fail('ENOTDIR', 'not a directory', path);
    let file = inode;
    if (file && file.type === 'directory') fail('EISDIR', 'illegal operation on a directory', path);
    if (!file) {
      file = this.newInode('file', options.mode ?? 0o644, options.uid ?? 0, options.gid ?? 0);
      parent.entries.set(name, file);
      this.touch(parent);
    } else {
      if (options.mode !== undefined && this.kind !== 'fat') file.mode = options.mode & 0o7777;
      if (this.kind !== 'fat') {
        if (options.uid !== undefined) file.uid = options.uid;
        if (options.gid !== undefined) file.gid = options.gid;
      }
    }
    if (this.kind === 'fat') {
      file.mode = 0o755;
      file.uid = 0;
      file.gid = 0;
    }
    file.data = bytes;
    this.touch(file);
    if (options.mtime) file.mtime = options.mtime;
    if (options.atime) file.atime = options.atime;
  }

  async mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    this.checkWritable(path);
    if (options.recursive) {
      const parts = splitPath(path);
      for (let i = 1; i <= parts.length; i++) {
        const sub = '/' + parts.slice(0, i).join('/');
        const { inode } = this.walk(sub, true);
        if (inode) {
          if (inode.type !== 'directory') fail('ENOTDIR', 'not a directory', sub);
          continue;
        }
        await this.mkdir(sub, { ...options, recursive: false });
      }
      return;
    }
    const { parent, name, inode } = this.walk(path, false);
    if (inode) fail('EEXIST', 'file already exists', path);
    const dir = this.newInode('directory', options.mode ?? 0o755, options.uid ?? 0, options.gid ?? 0);
    if (this.kind === 'fat') dir.mode = 0o755;
    dir.nlink = 2;
    parent.entries.set(name, dir);
    parent.nlink++;
    this.touch(parent);
  }

  async symlink(target: string, path: string, options: OwnerOptions = {}): Promise<void> {
    this.checkWritable(path);
    if (this.kind === 'fat') fail('ENOTSUP', 'FAT has no symbolic links', path);
    const { parent, name, inode } = this.walk(path, false);
    if (inode) fail('EEXIST', 'file already exists', path);
    const link = this.newInode('symlink', 0o777, options.uid ?? 0, options.gid ?? 0);
    link.target = target;
    link.data = new TextEncoder().encode(target);
    parent.entries.set(name, link);
    this.touch(parent);
  }

  async readlink(path: string): Promise<string> {
    const inode = this.resolve(path, false);
    if (inode.type !== 'symlink') fail('EINVAL', 'not a symbolic link', path);
    return inode.target;
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    this.checkWritable(newPath);
    if (this.kind === 'fat') fail('ENOTSUP', 'FAT has no hard links', newPath);
    const existing = this.resolve(existingPath, false);
    if (existing.type === 'directory') fail('EPERM', 'hard link to a directory', existingPath);
    const { parent, name, inode } = this.walk(newPath, false);
    if (inode) fail('EEXIST', 'file already exists', newPath);
    parent.entries.set(name, existing);
    existing.nlink++;
    existing.ctime = this.now();
  }

  async chmod(path: string, mode: number): Promise<void> {
    this.checkWritable(path);
    const inode = this.resolve(path, true);
    if (this.kind === 'fat') return;
    inode.mode = mode & 0o7777;
    inode.ctime = this.now();
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    this.checkWritable(path);
    const inode = this.resolve(path, true);
    if (this.kind === 'fat') return;
    inode.uid = uid;
    inode.gid = gid;
    inode.ctime = this.now();
  }

  async utimes(path: string, atime: Date, mtime: Date): Promise<void> {
    this.checkWritable(path);
    const inode = this.resolve(path, true);
    inode.atime = atime;
    inode.mtime = mtime;
    inode.ctime = this.now();
  }

  async rm(path: string, options: RmOptions = {}): Promise<void> {
    this.checkWritable(path);
    let found: ReturnType<MemoryVolume['walk']>;
    try {
      found = this.walk(path, false);
    } catch (error) {
      if (options.force && error instanceof PiimgError && error.code === 'ENOENT') return;
      throw error;
    }
    const { parent, name, inode } = found;
    if (name === '') fail('EPERM', 'cannot remove the root directory', path);
    if (!inode) {
      if (options.force) return;
      fail('ENOENT', 'no such file or directory', path);
    }
    if (inode.type === 'directory') {
      if (!options.recursive && inode.entries.size > 0) fail('ENOTEMPTY', 'directory not empty', path);
      parent.nlink--;
    }
    parent.entries.delete(this.entryName(parent, name));
    inode.nlink--;
    this.touch(parent);
  }

  async rename(from: string, to: string): Promise<void> {
    this.checkWritable(to);
    const source = this.walk(from, false);
    if (!source.inode) fail('ENOENT', 'no such file or directory', from);
    const dest = this.walk(to, false);
    if (dest.inode === source.inode) return;
    if (dest.inode) {
      if (dest.inode.type === 'directory') {
        if (source.inode.type !== 'directory') fail('EISDIR', 'illegal operation on a directory', to);
        if (dest.inode.entries.size > 0) fail('ENOTEMPTY', 'directory not empty', to);
      } else if (source.inode.type === 'directory') {
        fail('ENOTDIR', 'not a directory', to);
      }
    }
    if (source.inode.type === 'directory') {
      // Refuse moving a directory into itself.
      const fromParts = splitPath(from);
      const toParts = splitPath(to);
      if (toParts.length > fromParts.length && fromParts.every((p, i) => toParts[i] === p)) {
        fail('EINVAL', 'cannot move a directory into itself', to);
      }
    }
    source.parent.entries.delete(this.entryName(source.parent, source.name));
    if (dest.inode) dest.parent.entries.delete(this.entryName(dest.parent, dest.name));
    dest.parent.entries.set(dest.name, source.inode);
    this.touch(source.parent);
    this.touch(dest.parent);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const inode = this.resolve(path, true);
    if (inode.type !== 'directory') fail('ENOTDIR', 'not a directory', path);
    return [...inode.entries].map(([name, child]) => ({ name, type: child.type as FileType }));
  }

  private toStats(inode: Inode): Stats {
    const typeBits = inode.type === 'file' ? S_IFREG : inode.type === 'directory' ? S_IFDIR : S_IFLNK;
    return {
      type: inode.type,
      mode: typeBits | inode.mode,
      uid: inode.uid,
      gid: inode.gid,
      size: inode.type === 'directory' ? 4096 : inode.data.length,
      ino: inode.ino,
      nlink: inode.nlink,
      atime: new Date(inode.atime),
      mtime: new Date(inode.mtime),
      ctime: new Date(inode.ctime),
    };
  }

  async stat(path: string): Promise<Stats> {
    return this.toStats(this.resolve(path, true));
  }

  async lstat(path: string): Promise<Stats> {
    return this.toStats(this.resolve(path, false));
  }

  async exists(path: string): Promise<boolean> {
    try {
      this.resolve(path, true);
      return true;
    } catch (error) {
      if (error instanceof PiimgError && ['ENOENT', 'ENOTDIR', 'ELOOP'].includes(error.code)) return false;
      throw error;
    }
  }

  async flush(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /**
   * A deterministic description of the whole tree (types, modes, owners,
   * link targets, content hashes and mtimes), to compare two states.
   */
  snapshot(): string {
    const lines: string[] = [];
    const visit = (dir: Inode, prefix: string): void => {
      for (const name of [...dir.entries.keys()].sort()) {
        const inode = dir.entries.get(name)!;
        const path = `${prefix}/${name}`;
        let detail = '';
        if (inode.type === 'file') detail = Buffer.from(inode.data).toString('base64');
        if (inode.type === 'symlink') detail = `-> ${inode.target}`;
        lines.push(
          `${path} ${inode.type} ${inode.mode.toString(8)} ${inode.uid}:${inode.gid} ino=${inode.ino} n=${inode.nlink} m=${inode.mtime.toISOString()} ${detail}`,
        );
        if (inode.type === 'directory') visit(inode, path);
      }
    };
    visit(this.root, '');
    return lines.join('\n');
  }

  /** Test helper: writes many files at once, creating parents. */
  async populate(files: Record<string, string | { content?: string; mode?: number; uid?: number; gid?: number; symlink?: string; dir?: boolean }>): Promise<void> {
    for (const [path, spec] of Object.entries(files)) {
      const parent = path.slice(0, path.lastIndexOf('/')) || '/';
      await this.mkdir(parent, { recursive: true });
      if (typeof spec === 'string') {
        await this.writeFile(path, spec);
      } else if (spec.symlink !== undefined) {
        await this.symlink(spec.symlink, path, { uid: spec.uid, gid: spec.gid });
      } else if (spec.dir) {
        await this.mkdir(path, { recursive: true, mode: spec.mode, uid: spec.uid, gid: spec.gid });
      } else {
        await this.writeFile(path, spec.content ?? '', { mode: spec.mode, uid: spec.uid, gid: spec.gid });
      }
    }
  }

  /** Test helper: reads a file as UTF-8. */
  async text(path: string): Promise<string> {
    return new TextDecoder().decode(await this.readFile(path));
  }
}
