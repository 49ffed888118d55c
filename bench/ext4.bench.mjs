// Writing files into an ext4 image: piimg's ext4 volume (libext2fs in WebAssembly)
// against native debugfs -w in the same run. The image is 512 MiB, formatted as
// pi-gen does (mkfs.ext4 -O ^64bit,^huge_file). Targets: at least half of debugfs's
// throughput for one 100 MiB file; under 2x its time for 200 small files with mode
// and owner set. Then one 1 GiB file, for peak memory (target: under 300 MiB RSS).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare, jobRounds, measure, median } from './harness.mjs';

const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-ext4-'));
try {
  const template = join(dir, 'template.img');
  execFileSync('truncate', ['-s', '512M', template]);
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^64bit,^huge_file', '-L', 'rootfs', template], { env });
  const image = join(dir, 'root.img');
  const fresh = () => execFileSync('cp', ['--sparse=always', template, image]);

  const big = join(dir, 'big.bin');
  writeFileSync(big, randomBytes(100 * 1024 * 1024));
  const bigResult = compare({
    title: 'ext4: one 100 MiB file, piimg vs debugfs -w write',
    runs: 5,
    bytes: 100 * 1024 * 1024,
    prepare: fresh,
    ours: ['node', 'bench/cases/ext4-write.mjs', image, '/', big],
    native: ['debugfs', '-w', '-R', `write ${big} big.bin`, image],
  });
  console.log(`  throughput ratio (piimg / native): ${bigResult.throughputRatio.toFixed(2)}`);
  const job = median(jobRounds(['node', 'bench/cases/ext4-write.mjs', image, '/', big], { prepare: fresh }).map((rounds) => rounds[0]));
  console.log(`  in-process job (no Node start-up): ${(job * 1000).toFixed(1)} ms, ${(100 / job).toFixed(1)} MiB/s, ` +
    `throughput vs debugfs: ${(100 / job / bigResult.native.mibPerSecond).toFixed(2)}x`);

  const small = join(dir, 'small');
  mkdirSync(small);
  for (let i = 0; i < 200; i++) writeFileSync(join(small, `device-${String(i).padStart(3, '0')}.conf`), randomBytes(200 + ((i * 37) % 3000)));
  const files = readdirSync(small).map((name) => join(small, name));
  const script = join(dir, 'debugfs.cmd');
  writeFileSync(
    script,
    files
      .map((file) => {
        const name = file.slice(small.length + 1);
        return `write ${file} ${name}\nsif ${name} mode 0100640\nsif ${name} uid 1000\nsif ${name} gid 1000\n`;
      })
      .join(''),
  );
  const ownerEnv = { PIIMG_BENCH_MODE: '640', PIIMG_BENCH_UID: '1000', PIIMG_BENCH_GID: '1000' };
  const smallResult = compare({
    title: 'ext4: 200 small files with mode and owner, piimg vs debugfs -w',
    runs: 5,
    prepare: fresh,
    ours: ['node', 'bench/cases/ext4-write.mjs', image, '/', ...files],
    native: ['debugfs', '-w', '-f', script, image],
    env: ownerEnv,
  });
  // Node's start-up and module loading dominate a fresh process; a service pays
  // the job: mount, write the 200 files, close (with fsync). First job in a
  // process (cold JIT) and the median of the next five (warm).
  const rounds = jobRounds(['node', 'bench/cases/ext4-write.mjs', image, '/', ...files], {
    prepare: fresh,
    env: { ...ownerEnv, PIIMG_BENCH_ROUNDS: '6' },
  });
  const cold = median(rounds.map((run) => run[0]));
  const warm = median(rounds.flatMap((run) => run.slice(1)));
  const native = smallResult.native.medianSeconds;
  console.log(`  in-process job, first in the process: ${(cold * 1000).toFixed(1)} ms, ratio vs debugfs run: ${(cold / native).toFixed(2)}`);
  console.log(`  in-process job, warm (service):       ${(warm * 1000).toFixed(1)} ms, ratio vs debugfs run: ${(warm / native).toFixed(2)}`);

  // 1 GiB through a pipe, so the input file's page cache does not count: peak RSS only.
  execFileSync('truncate', ['-s', '1600M', image]);
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^64bit,^huge_file', image], { env });
  const gib = join(dir, 'gib.bin');
  execFileSync('sh', ['-c', `head -c 1073741824 /dev/zero | tr '\\0' 'x' > "${gib}"`]);
  const large = measure(['node', 'bench/cases/ext4-write.mjs', image, '/', gib]);
  console.log(`\n## ext4: one 1 GiB file (single run)`);
  console.log(`  piimg : ${large.seconds.toFixed(2)} s, ${(1024 / large.seconds).toFixed(1)} MiB/s, ` +
    `peak RSS ${large.peakRssKiB === undefined ? 'n/a' : (large.peakRssKiB / 1024).toFixed(1) + ' MiB'}`);
  execFileSync('e2fsck', ['-fn', image], { env, stdio: 'ignore' });
  console.log('  e2fsck -fn: clean');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
