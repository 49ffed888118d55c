// Writing files into a FAT32 image: piimg's FAT volume against mcopy (mtools) in the
// same run. The volume is 512 MiB with 512-byte clusters (mkfs.fat -F 32 -s 1, ~1M
// clusters, as on 2026 Raspberry Pi OS images). Target: at least half of mcopy's
// throughput for the large file. Both sides start from a freshly formatted image.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare, jobRounds, median } from './harness.mjs';

const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-fat-'));
try {
  const image = join(dir, 'boot.img');
  const format = () => {
    rmSync(image, { force: true });
    execFileSync('truncate', ['-s', '512M', image]);
    execFileSync('mkfs.fat', ['-F', '32', '-s', '1', '-n', 'bootfs', image], { env, stdio: 'ignore' });
  };
  const big = join(dir, 'big.bin');
  writeFileSync(big, randomBytes(50 * 1024 * 1024));
  const bigResult = compare({
    title: 'FAT32 -s 1: one 50 MiB file, piimg vs mcopy + sync',
    runs: 5,
    bytes: 50 * 1024 * 1024,
    prepare: format,
    ours: ['node', 'bench/cases/fat-copy.mjs', image, '/', big],
    // FileDevice.flush() is an fsync; give mcopy the same durability with sync(1) on the image.
    native: ['sh', '-c', 'mcopy -i "$0" "$1" ::/ && sync "$0"', image, big],
  });
  // A service keeps Node running: the job's own time (mount, stream the file in, flush
  // with fsync) is what a request pays. Compare it with mcopy's whole run.
  const job = median(jobRounds(['node', 'bench/cases/fat-copy.mjs', image, '/', big], { prepare: format }).map((rounds) => rounds[0]));
  const mib = 50 / job;
  console.log(`  in-process job (no Node start-up): ${(job * 1000).toFixed(1)} ms, ${mib.toFixed(1)} MiB/s, ` +
    `throughput vs mcopy: ${(mib / bigResult.native.mibPerSecond).toFixed(2)}x`);
  const small = join(dir, 'small');
  mkdirSync(small);
  for (let i = 0; i < 300; i++) {
    writeFileSync(join(small, `Device configuration file number ${String(i).padStart(3, '0')}.conf`), randomBytes(200 + ((i * 37) % 3000)));
  }
  const files = readdirSync(small).map((name) => join(small, name));
  compare({
    title: 'FAT32 -s 1: 300 small files with long names, piimg vs mcopy + sync',
    runs: 5,
    prepare: format,
    ours: ['node', 'bench/cases/fat-copy.mjs', image, '/', ...files],
    native: ['sh', '-c', 'mcopy -i "$0" "${@}" ::/ && sync "$0"', image, ...files],
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
