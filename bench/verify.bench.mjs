// `piimg verify` of a 2 GiB Pi-like image (FAT32 boot 512 MiB, ext4 root with
// 1 GiB of data) against native `e2fsck -fn` on the root partition plus
// `fsck.fat -n` on the boot partition, in the same run. fsck.fat takes no
// offset, so the boot partition is copied into a file of its own first (not
// timed); e2fsck reads the image at the root's offset. Reported: a fresh
// `piimg verify` process, and Image.verify() in-process, first in the process
// (cold) and warm (a service). Target: at most the native tools' time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare, jobRounds, median } from './harness.mjs';

const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-verify-'));
try {
  const image = join(dir, 'base.img');
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', image, '--boot-mib', '512', '--root-mib', '1532', '--payload-mib', '1024'], { stdio: 'ignore' });
  execFileSync('sync');
  const table = JSON.parse(execFileSync('sfdisk', ['--json', image], { encoding: 'utf8', env })).partitiontable;
  const sector = table.sectorsize ?? 512;
  const [boot, root] = table.partitions;
  const bootImage = join(dir, 'boot.img');
  execFileSync('dd', [`if=${image}`, `of=${bootImage}`, `bs=${sector}`, `skip=${boot.start}`, `count=${boot.size}`, 'status=none']);
  const script = join(dir, 'native-verify.sh');
  writeFileSync(script, `set -e\ne2fsck -fn "$1?offset=${root.start * sector}" >/dev/null\nfsck.fat -n "$2" >/dev/null\n`);

  const fresh = compare({
    title: 'piimg verify of a 2 GiB image vs e2fsck -fn + fsck.fat -n',
    runs: 7,
    ours: ['node', 'packages/cli/bin/piimg.js', 'verify', image],
    native: ['bash', script, image, bootImage],
  });
  const rounds = jobRounds(['node', 'bench/cases/verify-rounds.mjs', image], { runs: 5, env: { PIIMG_BENCH_ROUNDS: '6' } });
  const cold = median(rounds.map((run) => run[0]));
  const warm = median(rounds.flatMap((run) => run.slice(1)));
  const native = fresh.native.medianSeconds;
  const ms = (seconds) => `${(seconds * 1000).toFixed(1)} ms`;
  console.log(`  in-process Image.verify(), first in the process: ${ms(cold)}, ratio vs the native tools: ${(cold / native).toFixed(2)}`);
  console.log(`  in-process Image.verify(), warm (a service):      ${ms(warm)}, ratio vs the native tools: ${(warm / native).toFixed(2)}`);
  if (fresh.native.medianCpuSeconds !== undefined) {
    const nativeCpu = fresh.native.medianCpuSeconds;
    const coldCpu = median(rounds.map((run) => run.cpuSeconds[0]));
    const warmCpu = median(rounds.flatMap((run) => run.cpuSeconds.slice(1)));
    console.log(`  CPU time: native tools ${ms(nativeCpu)}; in-process cold ${ms(coldCpu)} (ratio ${(coldCpu / nativeCpu).toFixed(2)}), warm ${ms(warmCpu)} (ratio ${(warmCpu / nativeCpu).toFixed(2)})`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
