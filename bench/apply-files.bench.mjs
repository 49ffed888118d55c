// Per-file cost of `piimg inject`'s `files:` step: a tree of 200 files of about
// 100 KiB in 10 directories, mode 0755 and owner 1000:1000, copied into the root
// filesystem of a Pi-like image by the files recipe in-process (through the
// image's copy-on-write overlay; mount, apply, close: bench/cases/apply-files.mjs),
// against one `debugfs -w -f SCRIPT` process writing the same tree with the same
// mode and owners into a copy of the image. Target: the in-process job at most
// debugfs's time (ratio <= 1.0).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { jobRounds, measure, median } from './harness.mjs';

const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-apply-files-'));
try {
  const base = join(dir, 'base.img');
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', base, '--boot-mib', '64', '--root-mib', '512'], { stdio: 'ignore' });
  const tree = join(dir, 'agent');
  for (let d = 0; d < 10; d++) mkdirSync(join(tree, `module-${d}`), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(tree, `module-${i % 10}`, `part-${i}.bin`), randomBytes(100 * 1024 + (i % 7)));

  const table = JSON.parse(execFileSync('sfdisk', ['--json', base], { encoding: 'utf8', env })).partitiontable;
  const rootOffset = table.partitions[1].start * (table.sectorsize ?? 512);
  const lines = ['mkdir /opt', 'mkdir /opt/agent', 'sif /opt/agent mode 040755', 'sif /opt/agent uid 1000', 'sif /opt/agent gid 1000'];
  for (const module of readdirSync(tree).sort()) {
    const at = `/opt/agent/${module}`;
    lines.push(`mkdir ${at}`, `sif ${at} mode 040755`, `sif ${at} uid 1000`, `sif ${at} gid 1000`);
    for (const name of readdirSync(join(tree, module)).sort()) {
      const file = `${at}/${name}`;
      lines.push(`write ${join(tree, module, name)} ${file}`, `sif ${file} mode 0100755`, `sif ${file} uid 1000`, `sif ${file} gid 1000`);
    }
  }
  const script = join(dir, 'debugfs.cmd');
  writeFileSync(script, lines.join('\n') + '\n');
  const copy = join(dir, 'copy.img');

  const runs = 5;
  const native = [];
  const nativeCpu = [];
  const cold = [];
  const warm = [];
  const coldCpu = [];
  const warmCpu = [];
  for (let run = 0; run < runs; run++) {
    execFileSync('cp', ['--sparse=always', base, copy]);
    const debugfs = measure(['debugfs', '-w', '-f', script, `${copy}?offset=${rootOffset}`]);
    native.push(debugfs.seconds);
    if (debugfs.cpuSeconds !== undefined) nativeCpu.push(debugfs.cpuSeconds);
    const [rounds] = jobRounds(['node', 'bench/cases/apply-files.mjs', base, tree, '/opt/agent'], { runs: 1, env: { PIIMG_BENCH_ROUNDS: '4' } });
    cold.push(rounds[0]);
    warm.push(median(rounds.slice(1)));
    coldCpu.push(rounds.cpuSeconds[0]);
    warmCpu.push(median(rounds.cpuSeconds.slice(1)));
  }
  const nativeSeconds = median(native);
  const ms = (seconds) => `${(seconds * 1000).toFixed(1)} ms`;
  console.log(`\n## files recipe: 200 files of 100 KiB in 10 directories, in-process vs one debugfs -w -f process (median of ${runs})`);
  console.log(`  debugfs -f (fresh process): ${ms(nativeSeconds)}  samples ${native.map(ms).join(' ')}`);
  console.log(`  piimg, first job in a process (mount, apply, close): ${ms(median(cold))}, ratio ${(median(cold) / nativeSeconds).toFixed(2)}`);
  console.log(`  piimg, warm job (a service):                        ${ms(median(warm))}, ratio ${(median(warm) / nativeSeconds).toFixed(2)}`);
  if (nativeCpu.length > 0) {
    const cpuNative = median(nativeCpu);
    console.log(`  CPU time (user + system): debugfs ${ms(cpuNative)}; piimg first job ${ms(median(coldCpu))} (ratio ${(median(coldCpu) / cpuNative).toFixed(2)}), ` +
      `warm ${ms(median(warmCpu))} (ratio ${(median(warmCpu) / cpuNative).toFixed(2)}); load ${loadavg()[0].toFixed(1)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
