import { realpathSync, statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { defaultCacheDir, formatFromPath, parseOutputFormat, sniffFile } from './format.js';
import { SaveJob, type SaveOptions } from './save.js';

/** Options of `startSave`. */
export interface StartSaveOptions {
  /** The output format, as `--format` names it (img, raw, xz, gz, zst); default from `outPath`. Only a raw output starts early. */
  format?: string;
  /** Stops the copy: its temporary file is removed. */
  signal?: AbortSignal;
  /** Where the base's data map is cached, for the JavaScript copy (default as openImage). */
  cacheDir?: string;
  /** As SaveOptions.copier; a save with another copier does not take this copy over. */
  copier?: SaveOptions['copier'];
  /** As SaveOptions.cpPath. */
  cpPath?: string;
}

/** Image.prepareSave's options: a save's, and a copy started before the image was opened. */
export interface PrepareSaveOptions extends SaveOptions {
  /**
   * A copy of the base started by `startSave` before the image was opened:
   * taken over when it is of this image's raw file, unchanged, to this
   * output, with the same copier and no onProgress; otherwise it is
   * cancelled and the save copies the base itself.
   */
  started?: StartedSave;
}

/** What is compared before a started copy is used: the same file, unchanged since. */
function identity(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}

/** Whether two paths name the same file (symlinks resolved); by path when one does not exist. */
export function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/**
 * The copy of a raw base image into a save's temporary file, started by
 * `startSave` before the image is opened; `Image.prepareSave(out, { started })`
 * takes it over. Not taken over, it is cancelled by `cancel()` or at the end
 * of an `await using` block: cp is killed and the temporary file removed.
 */
export class StartedSave implements AsyncDisposable {
  private job: SaveJob | undefined;

  /** @internal made by startSave. */
  constructor(
    job: SaveJob,
    /** The base as it was when the copy started: device, inode, size, modification time. */
    private readonly baseIdentity: string,
  ) {
    this.job = job;
  }

  /** The output path, resolved. */
  get outPath(): string | undefined {
    return this.job?.outPath;
  }

  /**
   * @internal The save, for `rawPath` (the opened image's raw file, `size`
   * bytes) to `outPath` with `options`, when this copy is of that file as it
   * is now and to that output; it is then no longer this object's to cancel.
   * Undefined otherwise (the caller starts a save of its own).
   */
  take(rawPath: string, size: number, outPath: string, options: SaveOptions): SaveJob | undefined {
    const job = this.job;
    if (!job || job.outPath !== outPath || job.size !== size || !job.canAdopt(options)) return undefined;
    const stats = statSync(rawPath, { throwIfNoEntry: false });
    if (!stats || identity(stats) !== this.baseIdentity || !sameFile(rawPath, job.basePath)) return undefined;
    this.job = undefined;
    job.adopt(options);
    return job;
  }

  /** Kills the copy and removes its temporary file, unless a save took it over. */
  async cancel(): Promise<void> {
    const job = this.job;
    this.job = undefined;
    await job?.cancel();
  }

  /** cancel(), at the end of an `await using` block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.cancel();
  }
}

/**
 * Starts copying the raw base image `basePath` into a temporary file next to
 * `outPath`, before anything else is loaded or read: the first step of a save
 * that `Image.prepareSave(outPath, { started })` finishes. The copy is the one
 * prepareSave starts (reflink clone, cp's kernel copy, or the JavaScript
 * copy); starting it here, in a program that has not loaded the rest of
 * @piimg/core yet, lets it run while the modules load: the piimg command
 * gains the ~60-90 ms of its start-up that it otherwise spent before the
 * copy (bench/inject.bench.mjs). A service that opens its image at once has
 * nothing to gain from it.
 *
 * Returns undefined, having started nothing, where prepareSave would not copy
 * early either or the inputs are wrong: a compressed or unreadable base, an
 * output that is not raw, not a regular file or new path (E_BAD_OUTPUT), or
 * the base itself. Those errors are the normal path's to report.
 */
export function startSave(basePath: string, outPath: string, options: StartSaveOptions = {}): StartedSave | undefined {
  try {
    if (options.signal?.aborted) return undefined;
    const format = options.format !== undefined ? parseOutputFormat(options.format) : formatFromPath(outPath);
    if (format !== 'img') return undefined;
    const base = resolve(basePath);
    const target = resolve(outPath);
    if (sameFile(base, target)) return undefined;
    const stats = statSync(base);
    if (!stats.isFile()) return undefined;
    // A compressed base is decompressed into the cache first: its copy is of another file.
    if (sniffFile(base)) return undefined;
    const job = new SaveJob(base, stats.size, target, options.cacheDir ?? defaultCacheDir(), {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.copier ? { copier: options.copier } : {}),
      ...(options.cpPath !== undefined ? { cpPath: options.cpPath } : {}),
    });
    return new StartedSave(job, identity(stats));
  } catch {
    return undefined;
  }
}
