import { lstatSync, mkdirSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { openImage, PiimgError, readHostFile, resolveImageOwner, walk, type Image, type Volume } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { mountFor, parseImagePath, type ImagePath } from '../image-path.js';
import { EXIT, UsageError, writeJson, type CliIo } from '../io.js';
import { checkStdout, outputOptions, outputSpec, outputUsage, writeImage, type OutputSpec } from '../output.js';

const usage = `Usage: piimg cp IMAGE SRC DST [-r] [--mode MODE] [--owner UID:GID] (-o OUT [--format F] | --in-place)
       piimg cp IMAGE PART:/path HOSTPATH [-r]

Copies files into or out of an image. One of SRC and DST is PART:/path (PART: a
partition number, 'boot' or 'root'), the other a path on this machine.
Copying into an image writes a new image with -o OUT (the base is left as it
is; .img.xz and .img.gz are written compressed, '-o -' streams to standard
output), or changes IMAGE itself with --in-place.

Options:
  -r, --recursive   copy directories and their contents
  --mode MODE       octal permission bits of copied files (default: 0644, or 0755 when executable)
  --owner OWNER     owner of copied files and directories: UID:GID, or USER[:GROUP]
                    resolved through the image's own /etc/passwd and /etc/group (default 0:0)
  -o, --output OUT  write the changed image to OUT (or - for standard output)
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

async function copyOut(volume: Volume, from: string, to: string, recursive: boolean, copied: string[]): Promise<void> {
  const top = await volume.lstat(from);
  if (top.type === 'directory' && !recursive) throw new UsageError(`${from} is a directory: use -r`);
  for await (const entry of walk(volume, from)) {
    const relative = posix.relative(from, entry.path);
    const target = relative === '' ? to : join(to, ...relative.split('/'));
    if (entry.stats.type === 'directory') mkdirSync(target, { recursive: true });
    else if (entry.stats.type === 'file') writeFileSync(target, await volume.readFile(entry.path), { mode: entry.stats.mode & 0o777 });
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
  summary: 'copy files into or out of an image',
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
    let output: OutputSpec | undefined;
    if (from) {
      await using image = await openImage(imagePath);
      await copyOut(await mountFor(image, from, true), from.path, dst, values.recursive ?? false, copied);
    } else {
      const target = to as ImagePath;
      if (!values.output === !values['in-place']) throw new UsageError(`copying into an image needs either -o OUT or --in-place\n\n${usage}`);
      output = values.output === undefined ? undefined : outputSpec(values.output, values);
      if (output) checkStdout(output, io);
      const mode = parseMode(values.mode);
      await using image = await openImage(imagePath, { inPlace: values['in-place'] ?? false });
      const owner = await resolveOwnerOption(image, values.owner);
      const volume = await mountFor(image, target, false);
      let destination = target.path;
      if (await volume.exists(destination)) {
        const st = await volume.stat(destination);
        if (st.type === 'directory') destination = posix.join(destination, src.split(/[\\/]/).filter(Boolean).pop() ?? '');
      }
      await copyIn(volume, src, destination, { recursive: values.recursive ?? false, ...(mode !== undefined ? { mode } : {}), ...owner }, copied);
      await volume.close();
      if (values['in-place']) await image.save();
      else await writeImage(image, output!, io);
    }
    if (copied.length === 0) throw new PiimgError('E_NOT_FOUND', `nothing was copied from ${src}`, { path: src });
    // With the image on standard output, the report goes to standard error.
    if (values.json) writeJson(output?.path === '-' ? { ...io, stdout: io.stderr } : io, { copied });
    return EXIT.ok;
  },
};
