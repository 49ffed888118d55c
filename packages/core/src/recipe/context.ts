import { randomBytes } from 'node:crypto';
import { deriveBytes } from '../crypto/derive.js';
import { PiimgError } from '../errors.js';
import { parentAndName, splitPath } from '../fs/path.js';
import type { Stats, Volume } from '../fs/volume.js';

/** The two volumes recipes edit: the FAT boot partition and the ext4 root. */
export type VolumeName = 'boot' | 'root';
/** What a recipe did to a path. */
export type ChangeAction = 'create' | 'update' | 'delete' | 'symlink' | 'mkdir' | 'rename';

/** One change `applyConfig` made (never the content written). */
export interface Change {
  volume: VolumeName;
  path: string;
  action: ChangeAction;
  /** What changed, never the content; secrets are redacted. */
  summary: string;
}

/** What `applyConfig` changed, warned about and generated (public values only). */
export interface ApplyReport {
  changes: Change[];
  warnings: string[];
  outputs: { wireguardPublicKey?: string; diskId?: string };
}

export interface FileOptions {
  /** Permission bits; new files get 0o644 when absent, existing files keep theirs. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** Replaces the default summary ("N bytes"). */
  summary?: string;
}

export interface DirOptions {
  mode?: number;
  uid?: number;
  gid?: number;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function octal(mode: number): string {
  return '0' + (mode & 0o7777).toString(8).padStart(3, '0');
}

/**
 * The edits a recipe may make. Every operation compares with what the image
 * already holds and writes only on a difference, which is what makes applying
 * a configuration twice a no-op the second time.
 */
export class Editor {
  readonly report: ApplyReport = { changes: [], warnings: [], outputs: {} };
  private readonly now: (() => Date) | undefined;
  private readonly random: ((byteLength: number) => Uint8Array) | undefined;
  private readonly seed: Uint8Array | undefined;
  private readonly epoch: number | undefined;

  constructor(
    readonly boot: Volume,
    readonly root: Volume,
    options: { now?: () => Date; random?: (byteLength: number) => Uint8Array; seed?: Uint8Array; epoch?: number } = {},
  ) {
    this.now = options.now;
    this.random = options.random;
    this.seed = options.seed;
    this.epoch = options.epoch;
  }

  /**
   * Bytes that must stay secret (generated keys) or be unique (random disk
   * ids): derived from the user's seed for `purpose` when there is one, so
   * equal inputs and seed give equal images; random otherwise.
   */
  secretBytes(purpose: string, byteLength: number): Uint8Array {
    if (this.random) return this.random(byteLength);
    if (this.seed) return deriveBytes(this.seed, `secret\0${purpose}`, byteLength);
    return new Uint8Array(randomBytes(byteLength));
  }

  /**
   * Bytes for a password salt. A salt need not be secret, only unlikely to
   * repeat, so with SOURCE_DATE_EPOCH set it is derived from public inputs
   * (`purpose` names the user and host, never the password: a salt computed
   * from the password would let anyone test guesses with one fast hash instead
   * of sha512-crypt's 5000 rounds). With a seed it is keyed by the seed too.
   */
  saltBytes(purpose: string, byteLength: number): Uint8Array {
    if (this.random) return this.random(byteLength);
    if (this.seed) return deriveBytes(this.seed, `salt\0${purpose}`, byteLength);
    if (this.epoch !== undefined) return deriveBytes(new TextEncoder().encode(`SOURCE_DATE_EPOCH=${this.epoch}`), `salt\0${purpose}`, byteLength);
    return new Uint8Array(randomBytes(byteLength));
  }

  volume(name: VolumeName): Volume {
    return name === 'boot' ? this.boot : this.root;
  }

  warn(message: string): void {
    if (!this.report.warnings.includes(message)) this.report.warnings.push(message);
  }

  private record(volume: VolumeName, path: string, action: ChangeAction, summary: string): void {
    this.report.changes.push({ volume, path, action, summary });
  }

  private timestamps(): { mtime?: Date } {
    return this.now ? { mtime: this.now() } : {};
  }

  async lstat(volume: VolumeName, path: string): Promise<Stats | undefined> {
    const vol = this.volume(volume);
    if (vol.lstatIfPresent) return vol.lstatIfPresent(path);
    try {
      return await vol.lstat(path);
    } catch (error) {
      if (error instanceof PiimgError && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return undefined;
      throw error;
    }
  }

  async exists(volume: VolumeName, path: string): Promise<boolean> {
    return this.volume(volume).exists(path);
  }

  /** The file as UTF-8, or undefined when it does not exist. */
  async readText(volume: VolumeName, path: string): Promise<string | undefined> {
    const stats = await this.lstat(volume, path);
    if (!stats) return undefined;
    if (stats.type === 'directory') throw new PiimgError('EISDIR', `${path} is a directory, expected a file`, { path, volume });
    if (stats.type === 'symlink' && !(await this.exists(volume, path))) return undefined;
    return decoder.decode(await this.volume(volume).readFile(path));
  }

  /** Creates missing directories of `path` (0755, root) and the directory itself with the given mode/owner. */
  async ensureDir(volume: VolumeName, path: string, options: DirOptions = {}): Promise<void> {
    const parts = splitPath(path);
    for (let i = 1; i <= parts.length; i++) {
      const sub = '/' + parts.slice(0, i).join('/');
      const own = i === parts.length ? options : {};
      const stats = await this.lstat(volume, sub);
      const vol = this.volume(volume);
      if (!stats) {
        const mode = own.mode ?? 0o755;
        await vol.mkdir(sub, { mode, uid: own.uid ?? 0, gid: own.gid ?? 0 });
        this.record(volume, sub, 'mkdir', volume === 'boot' ? 'directory' : `directory, mode ${octal(mode)}, owner ${own.uid ?? 0}:${own.gid ?? 0}`);
        continue;
      }
      if (stats.type === 'symlink') {
        // Follow it (for example /lib -> usr/lib on merged-/usr images); it must lead to a directory.
        const target = await vol.stat(sub).catch(() => undefined);
        if (target?.type !== 'directory') throw new PiimgError('ENOTDIR', `${sub} is not a directory`, { path: sub, volume });
        continue;
      }
      if (stats.type !== 'directory') throw new PiimgError('ENOTDIR', `${sub} exists and is not a directory`, { path: sub, volume });
      if (i === parts.length) await this.ensureMeta(volume, sub, stats, own);
    }
  }

  private async ensureMeta(volume: VolumeName, path: string, stats: Stats, options: DirOptions): Promise<boolean> {
    if (this.volume(volume).kind === 'fat') return false;
    const vol = this.volume(volume);
    const notes: string[] = [];
    if (options.mode !== undefined && (stats.mode & 0o7777) !== (options.mode & 0o7777)) {
      await vol.chmod(path, options.mode);
      notes.push(`mode ${octal(options.mode)}`);
    }
    const uid = options.uid ?? stats.uid;
    const gid = options.gid ?? stats.gid;
    if (uid !== stats.uid || gid !== stats.gid) {
      await vol.chown(path, uid, gid);
      notes.push(`owner ${uid}:${gid}`);
    }
    if (notes.length > 0) this.record(volume, path, 'update', notes.join(', '));
    return notes.length > 0;
  }

  /** Writes a file when its content, mode or owner differ from the wanted ones. */
  async ensureFile(volume: VolumeName, path: string, content: string | Uint8Array, options: FileOptions = {}): Promise<void> {
    const bytes = typeof content === 'string' ? encoder.encode(content) : content;
    const vol = this.volume(volume);
    const fat = vol.kind === 'fat';
    const stats = await this.lstat(volume, path);
    const summary = options.summary ?? `${bytes.length} bytes`;
    if (stats && stats.type === 'directory') throw new PiimgError('EISDIR', `${path} is a directory, expected a file`, { path, volume });
    if (stats && stats.type === 'file') {
      const current = await vol.readFile(path);
      if (sameBytes(current, bytes)) {
        await this.ensureMeta(volume, path, stats, options);
        return;
      }
      const owner = fat ? {} : { mode: options.mode, uid: options.uid, gid: options.gid };
      await vol.writeFile(path, bytes, { ...owner, ...this.timestamps() });
      // writeFile keeps the existing mode and owner unless given; make sure they are the wanted ones.
      if (!fat) {
        const after = await vol.lstat(path);
        if (options.mode !== undefined && (after.mode & 0o7777) !== (options.mode & 0o7777)) await vol.chmod(path, options.mode);
        if ((options.uid !== undefined && after.uid !== options.uid) || (options.gid !== undefined && after.gid !== options.gid)) {
          await vol.chown(path, options.uid ?? after.uid, options.gid ?? after.gid);
        }
      }
      this.record(volume, path, 'update', summary + this.metaNote(volume, options));
      return;
    }
    if (stats) {
      // A symlink or special file stands where a regular file belongs: replace it.
      await vol.rm(path);
    } else {
      await this.ensureDir(volume, parentAndName(path).parent);
    }
    const mode = options.mode ?? 0o644;
    await vol.writeFile(path, bytes, fat ? this.timestamps() : { mode, uid: options.uid ?? 0, gid: options.gid ?? 0, ...this.timestamps() });
    this.record(volume, path, 'create', summary + this.metaNote(volume, { ...options, mode }));
  }

  private metaNote(volume: VolumeName, options: FileOptions): string {
    if (this.volume(volume).kind === 'fat') return '';
    const parts: string[] = [];
    if (options.mode !== undefined) parts.push(`mode ${octal(options.mode)}`);
    if (options.uid !== undefined || options.gid !== undefined) parts.push(`owner ${options.uid ?? 0}:${options.gid ?? 0}`);
    return parts.length > 0 ? `, ${parts.join(', ')}` : '';
  }

  /** Makes `path` a symlink to `target`, replacing a different link or file. */
  async ensureSymlink(volume: VolumeName, path: string, target: string, options: { uid?: number; gid?: number } = {}): Promise<void> {
    const vol = this.volume(volume);
    const stats = await this.lstat(volume, path);
    if (stats?.type === 'symlink' && (await vol.readlink(path)) === target) return;
    if (stats?.type === 'directory') throw new PiimgError('EISDIR', `${path} is a directory, expected a symlink`, { path, volume });
    if (stats) await vol.rm(path);
    else await this.ensureDir(volume, parentAndName(path).parent);
    await vol.symlink(target, path, { uid: options.uid ?? 0, gid: options.gid ?? 0 });
    this.record(volume, path, 'symlink', `-> ${target}`);
  }

  /** Moves `from` to `to` (same volume) when `from` exists and `to` does not. */
  async ensureMoved(volume: VolumeName, from: string, to: string, summary: string): Promise<boolean> {
    if (!(await this.lstat(volume, from)) || (await this.lstat(volume, to))) return false;
    await this.ensureDir(volume, parentAndName(to).parent);
    await this.volume(volume).rename(from, to);
    this.record(volume, to, 'rename', summary);
    return true;
  }

  /** Removes a file or symlink when present. */
  async ensureAbsent(volume: VolumeName, path: string, summary = 'removed'): Promise<void> {
    const stats = await this.lstat(volume, path);
    if (!stats) return;
    await this.volume(volume).rm(path, { recursive: stats.type === 'directory' });
    this.record(volume, path, 'delete', summary);
  }

  /** Replaces every secret in summaries and warnings, a last guard behind recipes that never print them. */
  redact(secrets: Iterable<string>): ApplyReport {
    const list = [...new Set([...secrets].filter((s) => s.length >= 4))].sort((a, b) => b.length - a.length);
    const scrub = (text: string): string => list.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
    return {
      changes: this.report.changes.map((change) => ({ ...change, path: scrub(change.path), summary: scrub(change.summary) })),
      warnings: this.report.warnings.map(scrub),
      outputs: { ...this.report.outputs },
    };
  }
}
