import { createHash } from 'node:crypto';
import { closeSync, constants, copyFileSync, openSync, readFileSync, realpathSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { chmod, open, rename, stat, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Overlay } from '../device/overlay.js';
import { kindOf } from '../device/file.js';
import { PiimgError } from '../errors.js';
import { throwIfAborted } from './abort.js';
import { copyRanges } from './copy.js';
import { cpCopy, findCpSync, type Killable } from './cp.js';
import { cachedDataMap, rememberDataMap } from './datamap.js';
import { partialName, removeStalePartials } from './partial.js';
import type { FreeSpace, OutputFormat, OutputStats } from './output.js';
import type { Progress } from './source.js';

/** Async, unlike device/file.ts writeFully: a large overlay must not block the event loop. */
async function writeFullyAt(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done);
    done += bytesWritten;
  }
}

/** Contiguous changed chunks go out in one writev of at most this many buffers and bytes. */
const RUN_BUFFERS = 64;
const RUN_BYTES = 8 << 20;

/**
 * Writes the changed chunks at their offsets: runs of contiguous chunks (file
 * data, mostly) with one writev each rather than a write per 64 KiB chunk.
 * Returns the bytes written.
 */
export async function writeChunks(handle: FileHandle, chunks: Iterable<{ byteOffset: number; data: Uint8Array }>, beforeEach: () => void): Promise<number> {
  let run: Buffer[] = [];
  let runStart = 0;
  let runBytes = 0;
  let total = 0;
  const flush = async () => {
    if (run.length === 0) return;
    beforeEach();
    const { bytesWritten } = await handle.writev(run, runStart);
    if (bytesWritten < runBytes) {
      // A short write: the rest, buffer by buffer.
      let at = 0;
      for (const buffer of run) {
        const end = at + buffer.length;
        if (end > bytesWritten) {
          const from = Math.max(0, bytesWritten - at);
          await writeFullyAt(handle, buffer.subarray(from), buffer.length - from, runStart + at + from);
        }
        at = end;
      }
    }
    total += runBytes;
    run = [];
    runBytes = 0;
  };
  for (const chunk of chunks) {
    const buffer = Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.length);
    if (run.length > 0 && (runStart + runBytes !== chunk.byteOffset || run.length >= RUN_BUFFERS || runBytes >= RUN_BYTES)) await flush();
    if (run.length === 0) runStart = chunk.byteOffset;
    run.push(buffer);
    runBytes += buffer.length;
  }
  await flush();
  return total;
}

/** Options of `Image.save`. */
export interface SaveOptions {
  /**
   * fsync the output before it is renamed into place. Default false for a new
   * file: the rename alone already guarantees that a crash of the process never
   * leaves a half-written output; sync adds durability across a power loss.
   * Default true for an in-place save, which changes the base itself.
   */
  sync?: boolean;
  /** Called as the output is written. */
  onProgress?: (progress: Progress) => void;
  /**
   * Stops the save: the temporary file is removed and the call rejects with
   * E_ABORTED (the signal's reason when it is a PiimgError). The output path
   * is left as it was: absent, or the previous complete file.
   */
  signal?: AbortSignal;
  /**
   * The output is a block device (an SD card, a USB stick) to be written in
   * place: every byte of the image is written (holes as zeros, since the device
   * may hold old data there), then flushed, read back and compared by SHA-256.
   * Without it, an output that is anything but a regular file is refused.
   */
  toDevice?: boolean;
  /** Output format; default from the file name (`.img.xz` xz, `.img.gz` gzip, `.img.zst` zstd, else raw). */
  format?: OutputFormat;
  /** Compression level (xz 0-9, gzip 1-9; default 6; zstd 1-19, default 3). */
  level?: number;
  /** Compressing threads (default: one per core). */
  threads?: number;
  /** Free space as zeros ('zero', default for compressed formats) or as it is ('keep', default for raw). See FreeSpace. */
  freeSpace?: FreeSpace;
  /** Reuse and store the base's compressed Blocks in the cache (default true). */
  blockCache?: boolean;
  /** Called when a compressed output is complete, with how its Blocks were made. */
  onStats?: (stats: OutputStats) => void;
  /**
   * Copy the base with worker threads only from this many bytes on (default
   * PARALLEL_COPY_MIN). A caller already on a worker thread of its own passes
   * Infinity: copying on that thread saves starting two more per save.
   */
  parallelCopyMin?: number;
  /**
   * How the base is copied where it cannot be cloned: 'auto' (default) runs
   * the system's GNU cp (/usr/bin/cp or /bin/cp), whose copy runs in the
   * kernel, and falls back to the JavaScript copy where there is none (macOS,
   * Windows, busybox); 'cp' insists on cp (E_UNSUPPORTED without one); 'js'
   * always copies in JavaScript. The environment variable PIIMG_COPY=js|cp
   * sets the default for a process.
   */
  copier?: 'auto' | 'cp' | 'js';
  /** The cp to run instead of /usr/bin/cp or /bin/cp; it must be GNU coreutils' (checked with --version). */
  cpPath?: string;
}

/** What `Image.save` wrote. */
export interface SaveResult {
  path: string;
  /** Bytes of changed chunks written over the copy of the base. */
  changedBytes: number;
  /** True when the base was cloned by reflink (copy-on-write filesystems: btrfs, XFS, APFS via clonefile). */
  reflinked: boolean;
  /** How the base got into the output (raw saves to a file). */
  baseCopy?: BaseCopy;
  /** With toDevice: bytes written, and the SHA-256 that the device read back matched. */
  device?: { bytesWritten: number; sha256: string; readBack: true };
  /** The format written (default 'img'). */
  format?: OutputFormat;
  /** For compressed formats: Blocks in all, reused (from the cache), compressed now. */
  blocks?: OutputStats;
}

/**
 * An output path must be a new path or a regular file: renaming a temporary
 * file over a device node, FIFO or socket would silently replace it (as root,
 * even /dev/null) and report success. Symlinks are judged by what they point at.
 */
export function checkOutputPath(outPath: string): void {
  let stats: Stats | undefined;
  try {
    stats = statSync(outPath, { throwIfNoEntry: false });
  } catch (error) {
    // A file where a directory of the path should be (ENOTDIR), a symlink loop, a name too
    // long, a directory that may not be searched: no output can be made there.
    const code = (error as NodeJS.ErrnoException).code ?? 'E_IO';
    throw new PiimgError(code === 'EACCES' ? 'EACCES' : 'E_BAD_OUTPUT', `refusing to write the output to ${outPath}: ${(error as Error).message}`, { path: outPath, kind: code });
  }
  if (stats === undefined || stats.isFile()) return;
  const hint = stats.isBlockDevice() ? ' (to write the image onto the device itself, ask for it: toDevice / --to-device)' : '';
  throw new PiimgError('E_BAD_OUTPUT', `refusing to write the output to ${outPath}: it is ${kindOf(stats)}${hint}`, { path: outPath, kind: kindOf(stats) });
}

/** How the base got into the output: cloned (reflink), copied by cp in the kernel, or copied by JavaScript. */
export type BaseCopy = 'reflink' | 'cp' | 'js';

/** Saves under way: an exiting process (a second Ctrl-C, process.exit) kills their cp and removes their temporary files. */
const live = new Set<SaveJob>();
let exitHooked = false;

function track(job: SaveJob): void {
  live.add(job);
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const job of live) job.abandon();
  });
}

/** PIIMG_COPY=js forces the JavaScript copy for a whole process (tests, or a cp that misbehaves). */
function defaultCopier(): NonNullable<SaveOptions['copier']> {
  const value = process.env.PIIMG_COPY;
  return value === 'js' || value === 'cp' ? value : 'auto';
}

/** A failure of a save as the one typed error callers know: ENOSPC, or E_IO naming the output. */
function saveError(error: unknown, outPath: string): PiimgError {
  if (error instanceof PiimgError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  return new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${outPath}: ${(error as Error).message}`, { path: outPath }, { cause: error });
}

/**
 * One save to a new file, in two halves: the constructor starts copying the
 * base into a temporary file in the output's directory at once (reflink clone
 * where the filesystem offers one, else cp's kernel copy, else the JavaScript
 * copy), since the base does not depend on the changes; `finish` waits for it,
 * writes the changed chunks over it and renames it into place. A failure or
 * `cancel` anywhere removes the temporary file: no output is left behind.
 */
export class SaveJob {
  readonly outPath: string;
  private readonly temporary: string;
  private readonly controller = new AbortController();
  private readonly copied: Promise<{ reflinked: boolean; baseCopy: BaseCopy }>;
  private readonly unlinkSignals: (() => void)[] = [];
  private child: Killable | undefined;
  private state: 'copying' | 'finishing' | 'done' | 'cancelled' = 'copying';

  constructor(
    readonly basePath: string,
    readonly size: number,
    outPath: string,
    /** Where the base's data map is cached, for the JavaScript copy. */
    private readonly cacheDir: string,
    private options: SaveOptions = {},
  ) {
    checkOutputPath(outPath);
    throwIfAborted(options.signal, `saving ${outPath}`);
    this.outPath = outPath;
    // Partial files of runs that were killed (kill -9, power loss) go first.
    removeStalePartials(dirname(outPath));
    this.temporary = join(dirname(outPath), partialName(basename(outPath)));
    this.follow(options.signal);
    track(this);
    this.copied = this.copyBase();
    // Awaited by finish(); until then a failure must not count as unhandled.
    this.copied.catch(() => undefined);
  }

  private get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Stops this save when `outer` aborts. */
  private follow(outer: AbortSignal | undefined): void {
    if (!outer) return;
    if (outer.aborted) {
      this.controller.abort(outer.reason);
      return;
    }
    const forward = () => this.controller.abort(outer.reason);
    outer.addEventListener('abort', forward, { once: true });
    this.unlinkSignals.push(() => outer.removeEventListener('abort', forward));
  }

  /**
   * Whether a save started with other options can be finished with `options`:
   * the copy under way was chosen by copier and cpPath, and reports no
   * progress (so a caller that asks for progress gets a save of its own).
   */
  canAdopt(options: SaveOptions): boolean {
    return (
      this.state === 'copying' &&
      !this.controller.signal.aborted &&
      options.onProgress === undefined &&
      (options.copier ?? defaultCopier()) === (this.options.copier ?? defaultCopier()) &&
      options.cpPath === this.options.cpPath &&
      options.parallelCopyMin === this.options.parallelCopyMin
    );
  }

  /** Takes `options` (sync, signal) for the rest of this save; see canAdopt. */
  adopt(options: SaveOptions): void {
    this.follow(options.signal);
    this.options = { ...options };
  }

  /**
   * Synchronous up to the start of the copy (the clone, the temporary file, cp
   * started): callers go on with synchronous work right after prepareSave()
   * (recipes, WebAssembly, checks), which would otherwise hold each awaited
   * step, and so the copy, until they yield. Measured with a main thread busy
   * for 250 ms after prepareSave(): a 1 GiB base copy took 700-810 ms instead
   * of 470-540 ms.
   */
  private async copyBase(): Promise<{ reflinked: boolean; baseCopy: BaseCopy }> {
    const { basePath, temporary, options, signal } = this;
    const copier = options.copier ?? defaultCopier();
    try {
      try {
        copyFileSync(basePath, temporary, constants.COPYFILE_FICLONE_FORCE);
        return { reflinked: true, baseCopy: 'reflink' };
      } catch {
        // No reflink here (ext4, tmpfs, NTFS...): copy the data ranges.
        try {
          unlinkSync(temporary);
        } catch {
          // Not made.
        }
      }
      // Made here, exclusively, as soon as the clone failed: a process killed from now
      // on leaves a partial file that the next run in this directory removes.
      closeSync(openSync(temporary, 'wx', 0o644));
      throwIfAborted(signal, `saving ${this.outPath}`);
      const tool = copier === 'js' ? undefined : findCpSync(options.cpPath);
      if (copier === 'cp' && !tool) {
        throw new PiimgError('E_UNSUPPORTED', `no GNU cp ${options.cpPath ?? 'in /usr/bin or /bin'} to copy ${basePath} with`, { path: options.cpPath ?? null });
      }
      if (tool) {
        try {
          // cp replaces that empty file with a new one (--remove-destination): ext4
          // flushes a file truncated to zero and rewritten at close (auto_da_alloc),
          // which made a copy into the existing file 1.3-1.7x slower.
          await cpCopy(tool, basePath, temporary, {
            signal,
            onChild: (child) => (this.child = child),
            ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          });
          // cp gave it the base's mode (read-only, perhaps): the mode of a new file, as the JavaScript copy makes.
          await chmod(temporary, 0o644 & ~process.umask());
          if ((await stat(temporary)).size !== this.size) await truncate(temporary, this.size);
          return { reflinked: false, baseCopy: 'cp' };
        } catch (error) {
          // cp could not be started (removed since it was found): JavaScript copies instead.
          if (!(error as { spawnFailed?: boolean }).spawnFailed || copier === 'cp') throw error;
        }
      }
      const handle = await open(temporary, 'r+');
      try {
        // Without a map of the base yet, the copy finds one on the way.
        const slot = cachedDataMap(basePath, this.cacheDir);
        const found = await copyRanges(basePath, handle, this.size, slot.map, {
          signal,
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          ...(options.parallelCopyMin !== undefined ? { parallelMin: options.parallelCopyMin } : {}),
        });
        if (!slot.map) rememberDataMap(this.cacheDir, slot, found);
        return { reflinked: false, baseCopy: 'js' };
      } finally {
        await handle.close().catch(() => undefined);
      }
    } catch (error) {
      // Not left on disk while the caller is still computing the changes.
      await unlink(temporary).catch(() => undefined);
      throw saveError(error, this.outPath);
    }
  }

  /** Waits for the copy of the base, writes the changed chunks of `overlay` over it and renames it into place. */
  async finish(overlay: Overlay): Promise<SaveResult> {
    if (this.state !== 'copying') {
      throw new PiimgError('EINVAL', `the save of ${this.outPath} was already ${this.state === 'cancelled' ? 'cancelled' : 'finished'}`, { path: this.outPath });
    }
    this.state = 'finishing';
    let handle: FileHandle | undefined;
    try {
      const { reflinked, baseCopy } = await this.copied;
      handle = await open(this.temporary, 'r+');
      const changedBytes = await writeChunks(handle, overlay.changedChunks(), () => throwIfAborted(this.signal, `saving ${this.outPath}`));
      if (this.options.sync ?? false) await handle.sync();
      await handle.close();
      handle = undefined;
      throwIfAborted(this.signal, `saving ${this.outPath}`);
      await rename(this.temporary, this.outPath);
      this.state = 'done';
      return { path: this.outPath, changedBytes, reflinked, baseCopy };
    } catch (error) {
      await handle?.close().catch(() => undefined);
      await unlink(this.temporary).catch(() => undefined);
      this.state = 'cancelled';
      throw saveError(error, this.outPath);
    } finally {
      this.release();
    }
  }

  /** Stops the copy (cp is killed) and removes the temporary file; nothing once finished. */
  async cancel(): Promise<void> {
    if (this.state === 'done' || this.state === 'cancelled') return;
    this.state = 'cancelled';
    this.controller.abort(new PiimgError('E_ABORTED', `the save of ${this.outPath} was cancelled`, { path: this.outPath }));
    await this.copied.catch(() => undefined);
    await unlink(this.temporary).catch(() => undefined);
    this.release();
  }

  /** At process exit, synchronously: kills cp and removes the temporary file. */
  abandon(): void {
    this.child?.kill('SIGKILL');
    try {
      unlinkSync(this.temporary);
    } catch {
      // Not there (yet, or any more).
    }
  }

  private release(): void {
    live.delete(this);
    for (const unlink of this.unlinkSignals.splice(0)) unlink();
  }
}

/**
 * Writes base + overlay to `outPath` atomically: a temporary file in the same
 * directory is filled (reflink clone of the base where the filesystem offers
 * one, cp's kernel copy or a sparse JavaScript copy otherwise), the changed
 * chunks are written over it, and only then is it renamed into place. A
 * failure leaves no output behind.
 */
export async function saveOverlay(
  basePath: string,
  overlay: Overlay,
  outPath: string,
  /** Where the base's data map is cached: read when there is no reflink; one found while copying is stored there. */
  cacheDir: string,
  options: SaveOptions = {},
): Promise<SaveResult> {
  return new SaveJob(basePath, overlay.size, outPath, cacheDir, options).finish(overlay);
}

/**
 * A save started ahead of the changes (`Image.prepareSave`): the base is
 * being copied into a temporary file while the caller edits the image.
 * `finish()` writes the changes and puts the output in place; `cancel()` (or
 * leaving an `await using` block without finish) removes everything.
 */
export class PreparedSave implements AsyncDisposable {
  private settled = false;

  /** @internal made by Image.prepareSave. */
  constructor(
    /** The output path, resolved. */
    readonly path: string,
    private readonly finishSave: () => Promise<SaveResult>,
    private readonly cancelSave: () => Promise<void>,
  ) {}

  /** Waits for the base copy, writes the image's changes over it and renames it to `path`. Once. */
  async finish(): Promise<SaveResult> {
    if (this.settled) throw new PiimgError('EINVAL', `the save of ${this.path} was already finished or cancelled`, { path: this.path });
    this.settled = true;
    return this.finishSave();
  }

  /** Stops the copy and removes the temporary file; nothing after finish(). */
  async cancel(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    await this.cancelSave();
  }

  /** Same as `cancel()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.cancel();
  }
}

/** Each step of a device write: large enough for a card's erase blocks, small enough to stay responsive. */
const DEVICE_CHUNK = 4 << 20;

/** Linux: the mounted filesystems' sources, to refuse writing over a mounted disk or its partitions. */
function refuseMounted(devicePath: string): void {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return; // Not Linux: opening the device is the check left.
  }
  const device = realpathSync(devicePath);
  for (const line of mounts.split('\n')) {
    const source = line.split(' ')[0] ?? '';
    if (!source.startsWith('/')) continue;
    let real = source;
    try {
      real = realpathSync(source);
    } catch {
      // A source that is gone cannot be ours.
    }
    // Partitions: sda -> sda1, but mmcblk0 / loop1 / nvme0n1 -> mmcblk0p1 (loop1 -> loop10 is another disk).
    const partition = /\d$/.test(device) ? /^p\d+$/ : /^\d+$/;
    if (real === device || (real.startsWith(device) && partition.test(real.slice(device.length)))) {
      throw new PiimgError('EBUSY', `refusing to write to ${devicePath}: ${real} is mounted`, { path: devicePath, mounted: real });
    }
  }
}

async function readFullyAt(handle: FileHandle, buffer: Buffer, length: number, position: number, path: string): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new PiimgError('E_TRUNCATED', `${path} ended at ${position + done} while reading it back`, { path });
    done += bytesRead;
  }
}

/**
 * Writes the image onto a block device in place (or an existing regular
 * file, which takes the same path). Every byte is written: a hole of the
 * base is only known to read as zeros in a sparse file, while a device
 * holds whatever was there before, and a filesystem may read those blocks
 * (ext4 inode tables without uninit_bg, for one). Node offers no way to learn
 * whether a device reads back zeros after a discard (BLKDISCARDZEROES), so
 * nothing is skipped. Then fsync, and the whole range is read back and its
 * SHA-256 compared with what was written. The read goes through the OS:
 * after fsync it may be served from the page cache, so it proves what the
 * kernel holds for the device, not the card's flash.
 */
export async function writeToDevice(overlay: Overlay, devicePath: string, options: SaveOptions = {}): Promise<SaveResult> {
  const stats = statSync(devicePath, { throwIfNoEntry: false });
  if (stats === undefined) throw new PiimgError('E_NOT_FOUND', `no such device: ${devicePath}`, { path: devicePath });
  if (!stats.isBlockDevice() && !stats.isFile()) {
    throw new PiimgError('E_BAD_OUTPUT', `refusing to write the image to ${devicePath}: it is ${kindOf(stats)}, not a block device`, { path: devicePath, kind: kindOf(stats) });
  }
  if (stats.isBlockDevice()) refuseMounted(devicePath);
  throwIfAborted(options.signal, `writing ${devicePath}`);
  // On Linux, O_EXCL on a block device is an exclusive open: EBUSY while mounted or in use.
  const exclusive = stats.isBlockDevice() && process.platform === 'linux' ? constants.O_EXCL : 0;
  let handle: FileHandle;
  try {
    handle = await open(devicePath, constants.O_RDWR | exclusive);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'EBUSY' ? 'EBUSY' : code === 'EACCES' || code === 'EPERM' ? 'EACCES' : 'E_IO', `cannot open ${devicePath}: ${(error as Error).message}`, { path: devicePath }, { cause: error });
  }
  const size = overlay.size;
  const buffer = Buffer.allocUnsafe(DEVICE_CHUNK);
  try {
    // Block devices report size 0 in stat: the last byte of the image must be readable.
    if (size > 0) {
      const { bytesRead } = await handle.read(buffer, 0, 1, size - 1);
      if (bytesRead !== 1) throw new PiimgError('ENOSPC', `${devicePath} is smaller than the image (${size} bytes)`, { path: devicePath, size });
    }
    const written = createHash('sha256');
    for (let position = 0; position < size; position += DEVICE_CHUNK) {
      throwIfAborted(options.signal, `writing ${devicePath}`);
      const length = Math.min(DEVICE_CHUNK, size - position);
      const data = overlay.read(position, length);
      written.update(data);
      await writeFullyAt(handle, Buffer.from(data.buffer, data.byteOffset, data.length), length, position);
      options.onProgress?.({ phase: 'save', bytesDone: position + length, bytesTotal: size });
    }
    await handle.sync();
    const readBack = createHash('sha256');
    for (let position = 0; position < size; position += DEVICE_CHUNK) {
      throwIfAborted(options.signal, `reading back ${devicePath}`);
      const length = Math.min(DEVICE_CHUNK, size - position);
      await readFullyAt(handle, buffer, length, position, devicePath);
      readBack.update(buffer.subarray(0, length));
    }
    const sha256 = written.digest('hex');
    if (readBack.digest('hex') !== sha256) {
      throw new PiimgError('E_READBACK', `${devicePath} does not read back what was written: the device may be failing or fake-capacity`, { path: devicePath });
    }
    let changedBytes = 0;
    for (const chunk of overlay.changedChunks()) changedBytes += chunk.data.length;
    return { path: devicePath, changedBytes, reflinked: false, device: { bytesWritten: size, sha256, readBack: true } };
  } catch (error) {
    if (error instanceof PiimgError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${devicePath}: ${(error as Error).message}`, { path: devicePath }, { cause: error });
  } finally {
    await handle.close().catch(() => undefined);
  }
}
