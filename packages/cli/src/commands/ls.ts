import { encodeNameBytes, escapeName, hasEscapedBytes, openImage, type Stats } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { mountFor, requireImagePath } from '../image-path.js';
import { BAD_NAME_TEXT, EXIT, warn, writeJson, type CliIo, withSignal } from '../io.js';

const usage = `Usage: piimg ls IMAGE PART:/path [-l] [--json]

Lists a directory (or shows one file) inside an image. PART is a partition
number, 'boot' (the first FAT partition) or 'root' (the first ext partition).

Names are printed escaped: a byte that is not valid UTF-8 as \\xNN, control
characters as \\xNN, a backslash as \\\\. With --json, an entry whose name is not
valid UTF-8 also has "nameBase64", the name's bytes. Entries whose name is
not one file name (holding "/" or NUL, "." or "..") are left out with a warning.

Options:
  -l, --long    mode, owner, size, modification time, link targets
  --json        machine-readable output
  -h, --help    this help`;

const TYPE_CHARS: Record<string, string> = { file: '-', directory: 'd', symlink: 'l', char: 'c', block: 'b', fifo: 'p', socket: 's', unknown: '?' };

export function modeString(stats: Stats): string {
  const bits = 'rwxrwxrwx';
  let out = TYPE_CHARS[stats.type] ?? '?';
  for (let i = 0; i < 9; i++) out += stats.mode & (0o400 >> i) ? bits[i] : '-';
  return out;
}

export const ls: Command = {
  name: 'ls',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(argv, { long: { type: 'boolean', short: 'l' }, json: { type: 'boolean' } }, usage);
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 2, usage);
    const at = requireImagePath(positionals[1]!, usage);
    await using image = await openImage(positionals[0]!, withSignal(io, {}));
    const volume = await mountFor(image, at, true);
    const stats = await volume.lstat(at.path);
    const onBadName = (bad: { dir: string; name: string; reason: keyof typeof BAD_NAME_TEXT }) =>
      warn(io, 'ls', `skipped an entry of ${escapeName(bad.dir)} named ${JSON.stringify(bad.name)}: ${BAD_NAME_TEXT[bad.reason]}`);
    const names = stats.type === 'directory' ? (await volume.readdir(at.path, { onBadName })).map((e) => e.name).sort() : [null];
    const rows = [];
    for (const name of names) {
      const path = name === null ? at.path : at.path.replace(/\/+$/, '') + '/' + name;
      const st = name === null ? stats : await volume.lstat(path);
      const target = st.type === 'symlink' ? await volume.readlink(path) : undefined;
      const raw = name !== null && hasEscapedBytes(name) ? { nameBase64: Buffer.from(encodeNameBytes(name)).toString('base64') } : {};
      rows.push({ name: escapeName(name ?? at.path), ...raw, path: escapeName(path), type: st.type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, mtime: st.mtime.toISOString(), ...(target !== undefined ? { target: escapeName(target) } : {}), st });
    }
    if (values.json) {
      writeJson(io, { image: positionals[0]!, path: positionals[1]!, entries: rows.map(({ st: _st, ...row }) => row) });
    } else if (values.long) {
      for (const row of rows) {
        const link = row.target !== undefined ? ` -> ${row.target}` : '';
        io.stdout.write(`${modeString(row.st)} ${String(row.uid).padStart(5)} ${String(row.gid).padStart(5)} ${String(row.size).padStart(10)} ${row.mtime} ${row.name}${link}\n`);
      }
    } else {
      for (const row of rows) io.stdout.write(`${row.name}${row.type === 'directory' ? '/' : ''}\n`);
    }
    return EXIT.ok;
  },
};
