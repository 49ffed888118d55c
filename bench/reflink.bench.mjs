// image.save() on XFS with reflinks against a full copy of the same image on
// the same filesystem (`cp --sparse=always --reflink=never`), and against
// `cp --reflink=always`. Target: a save costs O(changed blocks), under 0.1x of
// the full copy. Needs root (loop mount) and xfsprogs; skipped otherwise.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare, jobRounds, median } from './harness.mjs';

if (process.getuid?.() !== 0) {
  console.log('\n## reflink save: SKIPPED (needs root for a loop-mounted XFS)');
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-reflink-'));
const mount = join(dir, 'mnt');
let mounted = false;
try {
  mkdirSync(mount);
  execFileSync('truncate', ['-s', '6G', join(dir, 'xfs.img')]);
  execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', join(dir, 'xfs.img')]);
  execFileSync('mount', ['-o', 'loop', join(dir, 'xfs.img'), mount]);
  mounted = true;
  const base = join(mount, 'base.img');
  // The same 2 GiB image with ~1 GiB of data as bench/save.bench.mjs.
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', base, '--boot-mib', '512', '--root-mib', '1532', '--payload-mib', '1024'], {
    stdio: 'inherit',
  });
  execFileSync('sync');
  const out = join(mount, 'out.img');
  const prepare = () => {
    rmSync(out, { force: true });
    execFileSync('sync');
  };
  const full = compare({
    title: 'image.save on XFS (reflink) vs cp --sparse=always --reflink=never',
    runs: 5,
    prepare,
    ours: ['node', 'bench/cases/save.mjs', base, out, '8'],
    native: ['cp', '--sparse=always', '--reflink=never', base, out],
  });
  // In a service Node and the library are loaded once: the save alone against the full copy.
  const saves = jobRounds(['node', 'bench/cases/save-rounds.mjs', base, out, '7'], { runs: 1, prepare }).flat();
  const inProcess = median(saves);
  console.log(`\n## image.save on XFS (reflink) inside one process, 7 saves`);
  console.log(`  samples (ms): ${saves.map((s) => (s * 1000).toFixed(1)).join(' ')}`);
  console.log(`  median ${(inProcess * 1000).toFixed(1)} ms; ratio to the full copy's median: ${(inProcess / full.native.medianSeconds).toFixed(3)}`);
  compare({
    title: 'image.save on XFS (reflink) vs cp --reflink=always',
    runs: 5,
    prepare,
    ours: ['node', 'bench/cases/save.mjs', base, out, '8'],
    native: ['cp', '--reflink=always', base, out],
  });
} finally {
  if (mounted) execFileSync('umount', [mount]);
  rmSync(dir, { recursive: true, force: true });
}
