import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryDevice } from '../../src/device/memory.js';
import { verifyExt4 } from '../../src/fs/ext4/verify.js';
import { hasTool, run } from '../../../../test/support/tools.js';

export interface Fixture {
  name: string;
  args: string[];
  /** Inodes bigger than 128 bytes carry nanoseconds, crtime and the epoch bits. */
  largeInodes: boolean;
}

/** The fixture matrix: what real images and e2fsprogs produce. */
export const fixtures: Fixture[] = [
  { name: 'ext4 e2fsprogs defaults', args: ['-t', 'ext4', '-O', 'metadata_csum,64bit'], largeInodes: true },
  { name: 'ext4 pi-gen (^64bit,^huge_file)', args: ['-t', 'ext4', '-O', '^64bit,^huge_file', '-L', 'rootfs'], largeInodes: true },
  { name: 'ext4 orphan_file + metadata_csum_seed', args: ['-t', 'ext4', '-O', 'orphan_file,metadata_csum_seed'], largeInodes: true },
  { name: 'ext4 1 KiB blocks', args: ['-t', 'ext4', '-b', '1024'], largeInodes: true },
  { name: 'ext3', args: ['-t', 'ext3'], largeInodes: true },
  { name: 'ext2 (128-byte inodes)', args: ['-t', 'ext2', '-I', '128'], largeInodes: false },
];

export const haveOracles = hasTool('mke2fs') && hasTool('e2fsck') && hasTool('debugfs');

export const workDir = mkdtempSync(join(tmpdir(), 'piimg-ext4-'));
export function cleanupWorkDir(): void {
  rmSync(workDir, { recursive: true, force: true });
}

let counter = 0;
export function tempPath(name: string): string {
  counter += 1;
  return join(workDir, `${counter}-${name.replace(/[^a-z0-9]+/gi, '_')}.img`);
}

/** Builds an image with the native mke2fs (fixed UUID and time, so runs are repeatable). */
export function makeImage(fixture: Fixture, sizeMiB = 16, extra: string[] = []): Uint8Array {
  const path = tempPath(fixture.name);
  run('mke2fs', ['-q', '-F', '-E', 'nodiscard', '-U', '0c4a2b6e-6a34-4b1f-9d4e-1d9f0b7c1a10', ...fixture.args, ...extra, path, `${sizeMiB}M`]);
  const bytes = new Uint8Array(readFileSync(path));
  rmSync(path);
  return bytes;
}

export function imageFile(bytes: Uint8Array): string {
  const path = tempPath('check');
  writeFileSync(path, bytes);
  return path;
}

/** Native e2fsck -fn and the wasm e2fsck -fn must both find the filesystem clean. */
export async function assertClean(bytes: Uint8Array): Promise<void> {
  const path = imageFile(bytes);
  try {
    const native = run('e2fsck', ['-fn', path], { allowFail: true });
    if (native.status !== 0) throw new Error(`native e2fsck -fn exited ${native.status}:\n${native.stdout}\n${native.stderr}`);
  } finally {
    rmSync(path, { force: true });
  }
  const wasm = await verifyExt4(new MemoryDevice(bytes));
  if (!wasm.clean) throw new Error(`wasm e2fsck -fn exited ${wasm.status}:\n${wasm.output}`);
}

export interface DebugfsStat {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  flags: number;
  mtime: { sec: number; nsec: number };
  atime: { sec: number; nsec: number };
  ctime: { sec: number; nsec: number };
  fastLink?: string;
}

function parseTime(out: string, name: string): { sec: number; nsec: number } {
  const m = new RegExp(`\\b${name}: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))?`).exec(out);
  if (!m) throw new Error(`no ${name} in debugfs output:\n${out}`);
  const lo = Number.parseInt(m[1]!, 16) | 0;
  const extra = m[2] === undefined ? 0 : Number.parseInt(m[2], 16);
  return { sec: lo + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}

/** `debugfs -R "stat PATH"`, parsed. */
export function debugfsStat(imagePath: string, path: string): DebugfsStat {
  const out = run('debugfs', ['-R', `stat "${path}"`, imagePath]).stdout;
  const head = /Type: (\S+)\s+Mode:\s+(\d+)\s+Flags: 0x([0-9a-f]+)/.exec(out);
  const owner = /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(out);
  const size = /Size: (\d+)/.exec(out);
  const links = /Links: (\d+)/.exec(out);
  if (!head || !owner || !size || !links) throw new Error(`unexpected debugfs stat output for ${path}:\n${out}`);
  const stat: DebugfsStat = {
    type: head[1]!,
    mode: Number.parseInt(head[2]!, 8),
    flags: Number.parseInt(head[3]!, 16),
    uid: Number(owner[1]),
    gid: Number(owner[2]),
    size: Number(size[1]),
    links: Number(links[1]),
    mtime: parseTime(out, 'mtime'),
    atime: parseTime(out, 'atime'),
    ctime: parseTime(out, 'ctime'),
  };
  const fast = /Fast link dest: "(.*)"/.exec(out);
  if (fast) stat.fastLink = fast[1]!;
  return stat;
}

/** Raw bytes of `debugfs -R "cat PATH"`. */
export function debugfsCat(imagePath: string, path: string): Uint8Array {
  return new Uint8Array(
    execFileSync('debugfs', ['-R', `cat "${path}"`, imagePath], {
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 1 << 30,
    }),
  );
}
