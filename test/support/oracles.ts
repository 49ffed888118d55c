import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './tools.js';

/** Native e2fsprogs and mtools read a partition of a whole-disk image through these. */
export interface PartitionRef {
  image: string;
  byteOffset: number;
  size: number;
}

export function debugfs(part: PartitionRef, request: string): string {
  return run('debugfs', ['-R', request, `${part.image}?offset=${part.byteOffset}`]).stdout;
}

export function debugfsCat(part: PartitionRef, path: string): string {
  return debugfs(part, `cat "${path}"`);
}

export interface NativeStat {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Fast symlink target, when debugfs prints it. */
  target?: string;
}

/** Parses `debugfs -R stat`: "Type: regular    Mode:  0644 ...", "User:  1000   Group:  1000 ... Size: 12". */
export function debugfsStat(part: PartitionRef, path: string): NativeStat | undefined {
  const out = run('debugfs', ['-R', `stat "${path}"`, `${part.image}?offset=${part.byteOffset}`], { allowFail: true });
  const text = out.stdout;
  const type = /Type:\s+(\S+)/.exec(text);
  if (!type) return undefined;
  const mode = /Mode:\s+0?([0-7]+)/.exec(text)!;
  const user = /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(text)!;
  const size = /Size:\s+(\d+)/.exec(text)!;
  const target = /Fast link dest:\s+"(.*)"/.exec(text);
  return {
    type: type[1]!,
    mode: parseInt(mode[1]!, 8),
    uid: Number(user[1]),
    gid: Number(user[2]),
    size: Number(size[1]),
    ...(target ? { target: target[1]! } : {}),
  };
}

export function e2fsck(part: PartitionRef): { clean: boolean; output: string } {
  const out = run('e2fsck', ['-fn', `${part.image}?offset=${part.byteOffset}`], { allowFail: true });
  return { clean: out.status === 0, output: out.stdout + out.stderr };
}

export function mtype(part: PartitionRef, path: string): string {
  return run('mtype', ['-i', `${part.image}@@${part.byteOffset}`, `::${path}`]).stdout;
}

export function mdir(part: PartitionRef, path: string): string {
  return run('mdir', ['-i', `${part.image}@@${part.byteOffset}`, `::${path}`], { allowFail: true }).stdout;
}

/** fsck.fat needs a device of its own: the partition is copied out first. */
export function fsckFat(part: PartitionRef): { clean: boolean; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'piimg-fsck-'));
  const copy = join(dir, 'part.fat');
  const from = openSync(part.image, 'r');
  const to = openSync(copy, 'w');
  try {
    const buffer = Buffer.alloc(1 << 20);
    for (let done = 0; done < part.size; ) {
      const count = readSync(from, buffer, 0, Math.min(buffer.length, part.size - done), part.byteOffset + done);
      if (count === 0) break;
      writeSync(to, buffer, 0, count, done);
      done += count;
    }
  } finally {
    closeSync(from);
    closeSync(to);
  }
  try {
    const out = run('fsck.fat', ['-n', copy], { allowFail: true });
    return { clean: out.status === 0 && !/differ|lost|corrupt|Dirty bit/i.test(out.stdout), output: out.stdout + out.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
