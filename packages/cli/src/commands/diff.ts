import { escapeName, openImage, walk, type BadEntryName, type Image, type Stats, type Volume } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { BAD_NAME_TEXT, EXIT, warn, writeJson, type CliIo, withSignal } from '../io.js';

const usage = `Usage: piimg diff A B [--times] [--json]

Lists files added, removed and changed between two images, partition by
partition (matched by number): content, type, mode, owner and link target;
modification times only with --times.

Options:
  --times       also report changed modification times
  --json        {"added": [...], "removed": [...], "changed": [...]}, each entry
                naming the partition and path
  -h, --help    this help

Exit status: 0 when the images hold the same files, 10 when they differ.`;

export interface DiffEntry {
  partition: number;
  path: string;
  type: Stats['type'];
  /** For changed entries: what differs. */
  changes?: ('type' | 'content' | 'mode' | 'owner' | 'target' | 'mtime')[];
}

const MOUNTABLE = new Set(['fat12', 'fat16', 'fat32', 'ext2', 'ext3', 'ext4']);

async function index(volume: Volume, onBadName?: (bad: BadEntryName) => void): Promise<Map<string, Stats>> {
  const entries = new Map<string, Stats>();
  for await (const entry of walk(volume, '/', onBadName ? { onBadName } : {})) entries.set(entry.path, entry.stats);
  return entries;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

export async function diffImages(a: Image, b: Image, options: { times?: boolean; onBadName?: (bad: BadEntryName & { image: 'a' | 'b'; partition: number }) => void } = {}) {
  const result = { added: [] as DiffEntry[], removed: [] as DiffEntry[], changed: [] as DiffEntry[] };
  const numbers = new Set([...a.partitions, ...b.partitions].map((p) => p.number));
  for (const number of [...numbers].sort((x, y) => x - y)) {
    const pa = a.partitions.find((p) => p.number === number);
    const pb = b.partitions.find((p) => p.number === number);
    const va = pa && MOUNTABLE.has(pa.filesystem.type) ? await a.mount(pa, { readOnly: true }) : undefined;
    const vb = pb && MOUNTABLE.has(pb.filesystem.type) ? await b.mount(pb, { readOnly: true }) : undefined;
    const report = (image: 'a' | 'b') => (options.onBadName ? (bad: BadEntryName) => options.onBadName!({ ...bad, image, partition: number }) : undefined);
    const ia = va ? await index(va, report('a')) : new Map<string, Stats>();
    const ib = vb ? await index(vb, report('b')) : new Map<string, Stats>();
    for (const [path, sb] of ib) {
      const sa = ia.get(path);
      if (!sa) {
        result.added.push({ partition: number, path, type: sb.type });
        continue;
      }
      const changes: NonNullable<DiffEntry['changes']> = [];
      if (sa.type !== sb.type) changes.push('type');
      else if (sa.type === 'file') {
        if (sa.size !== sb.size || !sameBytes(await va!.readFile(path), await vb!.readFile(path))) changes.push('content');
      } else if (sa.type === 'symlink' && (await va!.readlink(path)) !== (await vb!.readlink(path))) changes.push('target');
      if ((sa.mode & 0o7777) !== (sb.mode & 0o7777)) changes.push('mode');
      if (sa.uid !== sb.uid || sa.gid !== sb.gid) changes.push('owner');
      if (options.times && sa.mtime.getTime() !== sb.mtime.getTime() && path !== '/') changes.push('mtime');
      if (changes.length) result.changed.push({ partition: number, path, type: sb.type, changes });
    }
    for (const [path, sa] of ia) if (!ib.has(path)) result.removed.push({ partition: number, path, type: sa.type });
    await va?.close();
    await vb?.close();
  }
  return result;
}

export const diff: Command = {
  name: 'diff',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(argv, { times: { type: 'boolean' }, json: { type: 'boolean' } }, usage);
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 2, usage);
    await using a = await openImage(positionals[0]!, withSignal(io, {}));
    await using b = await openImage(positionals[1]!, withSignal(io, {}));
    const result = await diffImages(a, b, {
      times: values.times ?? false,
      onBadName: (bad) =>
        warn(io, 'diff', `${positionals[bad.image === 'a' ? 0 : 1]}: skipped an entry of ${bad.partition}:${escapeName(bad.dir)} named ${JSON.stringify(bad.name)}: ${BAD_NAME_TEXT[bad.reason]}`),
    });
    // Paths are escaped as ls prints them (bytes that are not UTF-8 as \xNN).
    const shown = (list: DiffEntry[]) => list.map((e) => ({ ...e, path: escapeName(e.path) }));
    if (values.json) writeJson(io, { added: shown(result.added), removed: shown(result.removed), changed: shown(result.changed) });
    else {
      for (const e of shown(result.added)) io.stdout.write(`+ ${e.partition}:${e.path}\n`);
      for (const e of shown(result.removed)) io.stdout.write(`- ${e.partition}:${e.path}\n`);
      for (const e of shown(result.changed)) io.stdout.write(`~ ${e.partition}:${e.path} (${e.changes!.join(', ')})\n`);
    }
    const same = result.added.length + result.removed.length + result.changed.length === 0;
    return same ? EXIT.ok : EXIT.differ;
  },
};
