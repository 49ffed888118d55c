import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { checkOutputPath, formatFromPath, isPiimgError, parseOutputFormat, PiimgError, type Image, type OutputFormat, type PreparedSave, type SaveOptions, type SaveResult, type StartedSave } from '@piimg/core';
import { type CliIo, UsageError } from './io.js';

export { outputOptions } from './output-options.js';

export const outputUsage = `  --format FORMAT       img, xz, gz or zst (default: from OUT's name: .img.xz xz, .img.gz gz,
                        .img.zst zst, anything else img; '-o -' writes img unless --format says otherwise)
  --level N             compression level, xz 0-9, gz 1-9 (default 6, as xz and gzip),
                        zst 1-19 (default 3, as zstd)
  --threads N           compressing threads (default: one per core)
  --keep-free-space     .xz/.gz/.zst: keep the bytes of filesystem free space (default: written
                        as zeros, like zerofree; the filesystems are the same)`;

export interface OutputSpec {
  /** A path, or '-' for standard output. */
  path: string;
  format: OutputFormat;
  level?: number;
  threads?: number;
  /** True with --keep-free-space. */
  keepFreeSpace?: boolean;
}

function integer(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${name} takes a whole number, not '${text}'`);
  return Number(text);
}

/** Reads -o and the format options; unknown formats and levels out of range are usage errors. */
export function outputSpec(path: string, values: { format?: string; level?: string; threads?: string; 'keep-free-space'?: boolean }): OutputSpec {
  let format: OutputFormat;
  try {
    format = values.format !== undefined ? parseOutputFormat(values.format) : path === '-' ? 'img' : formatFromPath(path);
  } catch (error) {
    if (isPiimgError(error, 'E_UNSUPPORTED_FORMAT')) throw new UsageError(error.message);
    throw error;
  }
  const level = integer(values.level, '--level');
  const threads = integer(values.threads, '--threads');
  if (format === 'img' && level !== undefined) throw new UsageError('--level needs a compressed format (--format xz, gz or zst, or OUT ending in .xz, .gz or .zst)');
  if (level !== undefined) {
    const [min, max] = format === 'xz' ? [0, 9] : format === 'zstd' ? [1, 19] : [1, 9];
    if (level < min || level > max) throw new UsageError(`--level for ${format} is ${min}-${max}, not ${level}`);
  }
  if (threads !== undefined && (threads < 1 || threads > 64)) throw new UsageError(`--threads is 1-64, not ${threads}`);
  return { path, format, ...(level !== undefined ? { level } : {}), ...(threads !== undefined ? { threads } : {}), ...(values['keep-free-space'] ? { keepFreeSpace: true } : {}) };
}

/** Standard output is refused when it is a terminal: a disk image there helps nobody. */
export function checkStdout(spec: OutputSpec, io: CliIo): void {
  if (spec.path === '-' && io.stdout.isTTY) throw new UsageError('refusing to write a disk image to a terminal: redirect standard output, e.g. -o - > device.img.xz');
}

/**
 * An output file, checked before the work: the path must be a regular file or new
 * (checkOutputPath: a device node, FIFO, socket or directory is E_BAD_OUTPUT), and
 * its directory must exist and take new files, found now rather than when the output
 * is written (after a compressed base was decompressed, the recipes applied and the
 * filesystems checked). Missing: ENOENT (exit 5); a file in the way: E_BAD_OUTPUT
 * (exit 1); not writable (permissions, a read-only filesystem): EACCES.
 */
export function checkOutputFile(path: string): void {
  checkOutputPath(path);
  const directory = dirname(resolve(path));
  const stats = statSync(directory, { throwIfNoEntry: false });
  if (!stats) throw new PiimgError('ENOENT', `cannot write ${path}: the directory ${directory} does not exist`, { path, directory });
  if (!stats.isDirectory()) throw new PiimgError('E_BAD_OUTPUT', `cannot write ${path}: ${directory} is not a directory`, { path, directory });
  try {
    accessSync(directory, constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EACCES';
    throw new PiimgError('EACCES', `cannot write ${path}: no new files can be made in ${directory} (${code})`, { path, directory });
  }
}

/**
 * Checks -o before any work: with --to-device it must be the raw format; otherwise a
 * path (not '-') must be an output file that can be made (checkOutputFile).
 */
export function checkOutput(spec: OutputSpec, toDevice: boolean, io: CliIo): void {
  checkStdout(spec, io);
  if (toDevice) {
    if (spec.path === '-') throw new UsageError('--to-device needs a device path, not -');
    if (spec.format !== 'img') throw new UsageError(`--to-device writes the raw image; --format ${spec.format} does not apply`);
    return;
  }
  if (spec.path !== '-') checkOutputFile(spec.path);
}

type WriteOptions = { sync?: boolean; toDevice?: boolean; onProgress?: (p: { phase: 'hash' | 'decompress' | 'save'; bytesDone: number; bytesTotal?: number }) => void };

function saveOptions(spec: OutputSpec, io: CliIo, options: WriteOptions): SaveOptions {
  return {
    format: spec.format,
    sync: options.sync ?? false,
    ...(options.toDevice ? { toDevice: true } : {}),
    ...(spec.level !== undefined ? { level: spec.level } : {}),
    ...(spec.threads !== undefined ? { threads: spec.threads } : {}),
    ...(spec.keepFreeSpace ? { freeSpace: 'keep' as const } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(io.signal ? { signal: io.signal } : {}),
  };
}

/**
 * Starts the save to a file before the image is changed (Image.prepareSave),
 * so the copy of the base runs while the command works; undefined for
 * standard output. Pass the result to writeImage; `await using` removes its
 * temporary file when the command fails first. `started` is the copy the
 * command started before the image was opened (see inject-start.ts).
 */
export function prepareImage(image: Image, spec: OutputSpec, io: CliIo, options: WriteOptions = {}, started?: StartedSave): PreparedSave | undefined {
  if (spec.path === '-') return undefined;
  // A raw file's base copy runs behind the other steps: its progress would only
  // interleave with theirs. Compressed formats and devices do their work at finish.
  const { onProgress, ...quiet } = options;
  const early = spec.format === 'img' && !options.toDevice;
  return image.prepareSave(spec.path, { ...saveOptions(spec, io, early ? quiet : options), ...(started ? { started } : {}) });
}

/** Saves the image to a file (atomically) or streams it to standard output; `prepared` from prepareImage finishes its save. */
export async function writeImage(image: Image, spec: OutputSpec, io: CliIo, options: WriteOptions = {}, prepared?: PreparedSave): Promise<SaveResult> {
  if (prepared) return prepared.finish();
  const compress = {
    ...(spec.level !== undefined ? { level: spec.level } : {}),
    ...(spec.threads !== undefined ? { threads: spec.threads } : {}),
    ...(spec.keepFreeSpace ? { freeSpace: 'keep' as const } : {}),
  };
  if (spec.path !== '-') return image.save(spec.path, saveOptions(spec, io, options));
  const changedBytes = image.changes.memoryBytes + image.changes.spilledBytes;
  // Standard output stays open: the process may still write to it, and closing a shared stream is not ours to do.
  await pipeline(image.createReadStream({ format: spec.format, ...compress }), io.stdout, { end: false });
  return { path: '-', changedBytes, reflinked: false, format: spec.format };
}
