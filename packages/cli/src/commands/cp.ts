import { closeSync, constants, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, posix, resolve, sep } from 'node:path';
import {
  decodeNameBytes,
  encodeNameBytes,
  escapeName,
  hasEscapedBytes,
  openImage,
  partialName,
  PiimgError,
  readHostFile,
  resolveImageOwner,
  throwIfAborted,
  walk,
  type BadEntryName,
  type Image,
  type Volume,
} from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { mountFor, parseImagePath, type ImagePath } from '../image-path.js';
import { BAD_NAME_TEXT, deviceLine, EXIT, UsageError, warn, writeJson, type CliIo } from '../io.js';
import { checkOutput, outputOptions, outputSpec, outputUsage, writeImage, type OutputSpec } from '../output.js';

const usage = `Usage: piimg cp IMAGE SRC DST [-r] [--mode MODE] [--owner UID:GID] (-o OUT [--format F] [--to-device] | --in-place)
       piimg cp IMAGE PART:/path HOSTPATH [-r]

Copies files into or out of an image. One of SRC and DST is PART:/path (PART: a
partition number, 'boot' or 'root'), the other a path on this machine.
Copying into an image writes a new image with -o OUT (the base is left as it
is; .img.xz, .img.gz and .img.zst are written compressed, '-o -' streams to
standard output), or changes IMAGE itself with --in-place.

Options:
  -r, --recursive   copy directories and their contents
  --mode MODE       octal permission bits of copied files (default: 0644, or 0755 when executable)
  --owner OWNER     owner of copied files and directories: UID:GID, or USER[:GROUP]
                    resolved through the image's own /etc/passwd and /etc/group (default 0:0)
  -o, --output OUT  write the changed image to OUT (a regular file or a new path), or -
                    for standard output
  --to-device       OUT is a block device: write the image onto it in place, every
                    byte, then flush, read it back and compare
  --in-place        change IMAGE itself (raw images only)
${outputUsage}
  --json            print what was copied as JSON
  -h, --help        this help`;

function parseMode(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^0?[0-7]{3,4}$/.test(text)) throw new UsageError(`--mode takes octal permission bits such as 0644, not '${text}'`);
  return parseInt(text, 8);
}

/** Numeric owners as they are; names through the image's own /etc/passwd and /etc/group. */
async function resolveOwnerOption(image: Image, text: string | undefined): Promise<{ uid: number; gid: number }> {
  if (text === undefined) return { uid: 0, gid: 0 };
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/.test(text)) {
    throw new UsageError(`--owner takes UID:GID or USER[:GROUP], not '${text}'`);
  }
  // Numeric ids need no account files (no mount); out of range, the image's resolver reports it.
  const numeric = /^(\d+):(\d+)$/.exec(text)?.slice(1).map(Number);
  if (numeric && numeric.every((id) => id <= 0xffffffff)) return { uid: numeric[0]!, gid: numeric[1]! };
  const root = await image.mount('root', { readOnly: true });
  try {
    return await resolveImageOwner(root, text);
  } catch (error) {
    if (error instanceof PiimgError && error.code === 'E_CONFIG') throw new UsageError(error.message);
    throw error;
  } finally {
    await root.close();
  }
}

/** A host file name must be one component on this platform too (Windows also splits at "\\" and ":"). */
function hostNameProblem(name: string): string | undefined {
  if (process.platform === 'win32') {
    if (/[\\:]/.test(name)) return 'holds "\\" or ":"';
    if (hasEscapedBytes(name)) return 'is not valid UTF-8';
  }
  return undefined;
}

/**
 * The host path of `components` below `root`. Names that are not valid UTF-8
 * are written as their raw bytes (a Buffer path), as the image holds them.
 */
function hostPath(root: string, components: string[]): string | Buffer {
  const text = join(root, ...components);
  // Every component was checked to be one name; this is a second line of defence.
  if (components.length > 0 && !resolve(text).startsWith(root.endsWith(sep) ? root : root + sep)) {
    throw new PiimgError('E_UNSAFE_PATH', `refusing to write outside ${root}: ${escapeName(text)}`, { path: escapeName(text) });
  }
  if (!components.some(hasEscapedBytes)) return text;
  const parts: Buffer[] = [Buffer.from(root)];
  for (const component of components) parts.push(Buffer.from(sep), Buffer.from(encodeNameBytes(component)));
  return Buffer.concat(parts);
}

function show(path: string | Buffer): string {
  return typeof path === 'string' ? escapeName(path) : escapeName(decodeNameBytes(path));
}

/** Creates a directory, or accepts an existing one; never one reached through a symlink. */
function makeHostDirectory(path: string | Buffer): void {
  try {
    mkdirSync(path, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const existing = lstatSync(path);
    if (existing.isSymbolicLink()) throw new PiimgError('ELOOP', `refusing to write through the symbolic link ${show(path)}`, { path: show(path) });
    if (!existing.isDirectory()) throw new PiimgError('ENOTDIR', `${show(path)} exists and is not a directory`, { path: show(path) });
  }
}

const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

/** The directory holding `path`: names are single components, so the last separator splits it. */
function parentOf(path: string | Buffer): string | Buffer {
  return typeof path === 'string' ? dirname(path) : path.subarray(0, path.lastIndexOf(sep.charCodeAt(0)));
}

/**
 * Writes a new file next to `path` (O_EXCL, never following a link) and
 * renames it over `path`: an existing symlink or hard link at `path` is
 * replaced, never written through.
 */
function writeHostFile(path: string | Buffer, data: Uint8Array, mode: number): void {
  const parent = parentOf(path);
  const name = partialName(typeof path === 'string' ? basename(path) : 'file');
  const temporary = typeof parent === 'string' ? join(parent, name) : Buffer.concat([parent, Buffer.from(sep + name)]);
  const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW, mode);
  try {
    try {
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

async function copyOut(
  volume: Volume,
  from: string,
  to: string,
  recursive: boolean,
  copied: string[],
  warn: (text: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const top = await volume.lstat(from);
  if (top.type === 'directory' && !recursive) throw new UsageError(`${from} is a directory: use -r`);
  if (top.type !== 'directory') {
    if (top.type !== 'file') return;
    // Into an existing directory, as cp does; the name is the one the user gave.
    const into = lstatSync(to, { throwIfNoEntry: false })?.isDirectory() ? join(to, posix.basename(from)) : to;
    writeHostFile(resolve(into), await volume.readFile(from), top.mode & 0o777);
    copied.push(from);
    return;
  }
  // The destination itself is the user's choice (it may be a symlink); below it, nothing is followed.
  mkdirSync(to, { recursive: true });
  const root = realpathSync(to);
  if (!lstatSync(root).isDirectory()) throw new PiimgError('ENOTDIR', `${to} is not a directory`, { path: to });
  const skipped: string[] = [];
  const onBadName = (bad: BadEntryName) => warn(`skipped ${bad.dir === '/' ? '' : escapeName(bad.dir)}/${bad.name}: ${BAD_NAME_TEXT[bad.reason]}`);
  for await (const entry of walk(volume, from, { onBadName })) {
    throwIfAborted(signal, 'cp');
    const relative = posix.relative(from, entry.path);
    const components = relative === '' ? [] : relative.split('/');
    if (skipped.some((prefix) => relative === prefix || relative.startsWith(prefix + '/'))) continue;
    const problem = components.map(hostNameProblem).find((text) => text !== undefined);
    if (problem !== undefined) {
      warn(`skipped ${escapeName(entry.path)}: its name ${problem}, which this system cannot hold as one file name`);
      skipped.push(relative);
      continue;
    }
    const target = hostPath(root, components);
    if (entry.stats.type === 'directory') {
      if (components.length > 0) makeHostDirectory(target);
    } else if (entry.stats.type === 'file') writeHostFile(target, await volume.readFile(entry.path), entry.stats.mode & 0o777);
    else continue; // Links and device nodes are not recreated on the host.
    copied.push(entry.path);
  }
}

async function copyIn(
  volume: Volume,
  from: string,
  to: string,
  options: { recursive: boolean; mode?: number; uid: number; gid: number },
  copied: string[],
): Promise<void> {
  const stats = lstatSync(from);
  if (stats.isDirectory()) {
    if (!options.recursive) throw new UsageError(`${from} is a directory: use -r`);
    await volume.mkdir(to, { recursive: true, mode: 0o755, uid: options.uid, gid: options.gid });
    copied.push(to);
    for (const name of readdirSync(from).sort()) {
      await copyIn(volume, join(from, name), posix.join(to, name), options, copied);
    }
  } else if (stats.isSymbolicLink()) {
    await volume.symlink(readlinkSync(from), to, { uid: options.uid, gid: options.gid });
    copied.push(to);
  } else if (stats.isFile()) {
    const mode = options.mode ?? (stats.mode & 0o111 ? 0o755 : 0o644);
    await volume.writeFile(to, readHostFile(from), { mode, uid: options.uid, gid: options.gid });
    copied.push(to);
  }
}

export const cp: Command = {
  name: 'cp',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(
      argv,
      {
        recursive: { type: 'boolean', short: 'r' },
        mode: { type: 'string' },
        owner: { type: 'string' },
        output: { type: 'string', short: 'o' },
        'in-place': { type: 'boolean' },
        'to-device': { type: 'boolean' },
        json: { type: 'boolean' },
        ...outputOptions,
      },
      usage,
    );
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 3, usage);
    const [imagePath, src, dst] = positionals as [string, string, string];
    const from = parseImagePath(src);
    const to = parseImagePath(dst);
    if ((from === undefined) === (to === undefined)) {
      throw new UsageError(`exactly one of SRC and DST must be PART:/path\n\n${usage}`);
    }
    const copied: string[] = [];
    let device: { bytesWritten: number; sha256: string } | undefined;
    let output: OutputSpec | undefined;
    if (from) {
      await using image = await openImage(imagePath, io.signal ? { signal: io.signal } : {});
      await copyOut(await mountFor(image, from, true), from.path, resolve(io.cwd, dst), values.recursive ?? false, copied, (text) => warn(io, 'cp', text), io.signal);
    } else {
      const target = to as ImagePath;
      if (!values.output === !values['in-place']) throw new UsageError(`copying into an image needs either -o OUT or --in-place\n\n${usage}`);
      output = values.output === undefined ? undefined : outputSpec(values.output, values);
      const mode = parseMode(values.mode);
      const toDevice = values['to-device'] ?? false;
      if (toDevice && !values.output) throw new UsageError(`--to-device needs -o DEVICE\n\n${usage}`);
      // A wrong output is refused before any work is done.
      if (output) checkOutput(output, toDevice, io);
      await using image = await openImage(imagePath, { inPlace: values['in-place'] ?? false, ...(io.signal ? { signal: io.signal } : {}) });
      const owner = await resolveOwnerOption(image, values.owner);
      const volume = await mountFor(image, target, false);
      let destination = target.path;
      if (await volume.exists(destination)) {
        const st = await volume.stat(destination);
        if (st.type === 'directory') destination = posix.join(destination, src.split(/[\\/]/).filter(Boolean).pop() ?? '');
      }
      await copyIn(volume, src, destination, { recursive: values.recursive ?? false, ...(mode !== undefined ? { mode } : {}), ...owner }, copied);
      await volume.close();
      // Nothing copied (every source skipped): a failure, so no output is written.
      if (copied.length === 0) throw new PiimgError('E_NOT_FOUND', `nothing was copied from ${src}`, { path: src });
      if (values['in-place']) await image.save();
      else {
        const saved = await writeImage(image, output!, io, { toDevice: values['to-device'] ?? false });
        if (saved.device && !values.json) io.stdout.write(deviceLine(saved.path, saved.device) + '\n');
        if (saved.device) device = saved.device;
      }
    }
    if (copied.length === 0) throw new PiimgError('E_NOT_FOUND', `nothing was copied from ${src}`, { path: src });
    // With the image on standard output, the report goes to standard error.
    if (values.json) writeJson(output?.path === '-' ? { ...io, stdout: io.stderr } : io, { copied: copied.map(escapeName), ...(device ? { device } : {}) });
    return EXIT.ok;
  },
};
