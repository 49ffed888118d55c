import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../../test/support/tools.js';

export interface FatFixture {
  name: string;
  /** Size of the volume in bytes. */
  size: number;
  /** Extra mkfs.fat arguments. */
  mkfs: string[];
}

/** The matrix every oracle suite runs over. Sizes are the smallest that give the wanted FAT type. */
export const FIXTURES: FatFixture[] = [
  { name: 'FAT12 floppy', size: 1440 * 1024, mkfs: ['-F', '12'] },
  { name: 'FAT16 64 MiB', size: 64 * 1024 * 1024, mkfs: ['-F', '16'] },
  { name: 'FAT32 -s 1', size: 40 * 1024 * 1024, mkfs: ['-F', '32', '-s', '1'] },
  { name: 'FAT32 -s 4', size: 136 * 1024 * 1024, mkfs: ['-F', '32', '-s', '4'] },
  { name: 'FAT32 -s 8', size: 264 * 1024 * 1024, mkfs: ['-F', '32', '-s', '8'] },
  { name: 'FAT32 4096-byte sectors', size: 264 * 1024 * 1024, mkfs: ['-F', '32', '-S', '4096', '-s', '1'] },
];

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'piimg-fat-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Creates a sparse image file and formats it with mkfs.fat. */
export function makeFat(dir: string, fixture: FatFixture, file = 'fat.img', label = 'TESTVOL'): string {
  const path = join(dir, file);
  writeFileSync(path, new Uint8Array(0));
  run('truncate', ['-s', String(fixture.size), path]);
  run('mkfs.fat', [...fixture.mkfs, '-n', label, '-i', '12345678', path]);
  return path;
}

/** fsck.fat -n: returns its output; status 0 means clean. */
export function fsck(path: string): { clean: boolean; output: string } {
  const result = run('fsck.fat', ['-n', '-v', path], { allowFail: true });
  const output = result.stdout + result.stderr;
  // Drop the progress lines of -v ("Checking free cluster summary.") before looking for complaints.
  const findings = output
    .split('\n')
    .filter((line) => !line.startsWith('Checking'))
    .join('\n');
  const complaint = /differences|wrong|invalid|broken|lost|damaged|dirty bit|reclaim|free cluster summary|bad |has no|cluster chain|contains/i;
  return { clean: result.status === 0 && !complaint.test(findings), output };
}

function mtools(cmd: string, args: string[]): { stdout: Buffer; stderr: string; status: number } {
  const result = spawnSync(cmd, args, {
    env: { ...process.env, MTOOLS_SKIP_CHECK: '1', LC_ALL: 'C.UTF-8', MTOOLSRC: '/dev/null' },
    maxBuffer: 512 * 1024 * 1024,
  });
  return { stdout: result.stdout, stderr: result.stderr?.toString() ?? '', status: result.status ?? -1 };
}

/** File content as mtype reads it. */
export function mtype(image: string, path: string): Uint8Array {
  const result = mtools('mtype', ['-i', image, `::${path}`]);
  if (result.status !== 0) throw new Error(`mtype ${path}: ${result.stderr}`);
  return new Uint8Array(result.stdout);
}

/** Names in a directory as mdir lists them (long names where present). */
export function mdirNames(image: string, path: string): string[] {
  const result = mtools('mdir', ['-b', '-i', image, `::${path}`]);
  if (result.status !== 0) throw new Error(`mdir ${path}: ${result.stderr}`);
  const prefix = `::${path === '/' ? '/' : path + '/'}`;
  return result.stdout
    .toString('utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => (line.startsWith(prefix) ? line.slice(prefix.length) : line).replace(/\/$/, ''))
    .sort();
}

/** Copies a host file into the image with mcopy (to build volumes with content made by another tool). */
export function mcopy(image: string, hostPath: string, path: string): void {
  const result = mtools('mcopy', ['-i', image, hostPath, `::${path}`]);
  if (result.status !== 0) throw new Error(`mcopy ${path}: ${result.stderr}`);
}

export function mmd(image: string, path: string): void {
  const result = mtools('mmd', ['-i', image, `::${path}`]);
  if (result.status !== 0) throw new Error(`mmd ${path}: ${result.stderr}`);
}

export function mlabel(image: string): string {
  const result = mtools('mlabel', ['-s', '-i', image, '::']);
  return result.stdout.toString('utf8').trim();
}

/** Deterministic pseudo-random bytes: file contents that differ per seed. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
