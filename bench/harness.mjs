// Benchmark harness: every case runs in a fresh process, ours and the native tool
// alternately in the same run, and we report medians, peak RSS and ratios.
// Peak RSS comes from GNU time (`apt-get install time`); wall time from the harness.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const gnuTime = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Runs argv once; returns seconds, peak RSS in KiB and CPU seconds (user + system; both undefined without GNU time). */
export function measure(argv, { env } = {}) {
  const args = gnuTime ? ['-f', '__PEAK_RSS_KB=%M __CPU_S=%U+%S', ...argv] : argv;
  const started = process.hrtime.bigint();
  const result = spawnSync(gnuTime ?? argv[0], gnuTime ? args : argv.slice(1), {
    cwd: root,
    env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin`, MTOOLS_SKIP_CHECK: '1', ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const stderr = result.stderr?.toString() ?? '';
  if (result.status !== 0) {
    throw new Error(`${argv.join(' ')} exited ${result.status}:\n${stderr}${result.stdout?.toString() ?? ''}`);
  }
  const match = /__PEAK_RSS_KB=(\d+)/.exec(stderr);
  // CPU time (user + system) suffers less than wall time from other jobs on a shared machine.
  const cpu = /__CPU_S=([\d.]+)\+([\d.]+)/.exec(stderr);
  const cpuSeconds = cpu ? Number(cpu[1]) + Number(cpu[2]) : undefined;
  return { seconds, peakRssKiB: match ? Number(match[1]) : undefined, cpuSeconds, stdout: result.stdout.toString() };
}

/**
 * Runs a case that reports its own job time (PIIMG_BENCH_REPORT=1: a last line
 * of JSON with `jobSeconds`, and `rounds` when it repeats the job), `runs`
 * times in fresh processes; returns each run's rounds.
 */
export function jobRounds(argv, { runs = 5, prepare, env } = {}) {
  const all = [];
  for (let run = 0; run < runs; run++) {
    prepare?.();
    const { stdout } = measure(argv, { env: { ...env, PIIMG_BENCH_REPORT: '1' } });
    const report = JSON.parse(stdout.trim().split('\n').pop());
    const rounds = report.rounds ?? [report.jobSeconds];
    // CPU seconds of each round, when the case reports them.
    if (report.cpuSeconds) rounds.cpuSeconds = report.cpuSeconds;
    all.push(rounds);
  }
  return all;
}

const format = (seconds) => (seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(3)} s`);
const formatRss = (kib) => (kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`);

/**
 * Compares our command with the native tool doing the same job.
 * ratio = our median time / native median time (<= 1.0: we are as fast or faster).
 */
export function compare({ title, runs = 5, bytes, prepare, ours, native, env }) {
  const samples = { ours: [], native: [] };
  const rss = { ours: [], native: [] };
  const cpu = { ours: [], native: [] };
  const stdouts = [];
  for (let run = 0; run < runs; run++) {
    for (const side of run % 2 ? ['native', 'ours'] : ['ours', 'native']) {
      prepare?.(side);
      const result = measure(side === 'ours' ? ours : native, { env });
      samples[side].push(result.seconds);
      if (side === 'ours') stdouts.push(result.stdout);
      if (result.peakRssKiB !== undefined) rss[side].push(result.peakRssKiB);
      if (result.cpuSeconds !== undefined) cpu[side].push(result.cpuSeconds);
    }
  }
  const result = {
    title,
    runs,
    ours: { medianSeconds: median(samples.ours), samples: samples.ours, peakRssKiB: rss.ours.length ? Math.max(...rss.ours) : undefined, stdouts },
    native: { medianSeconds: median(samples.native), samples: samples.native, peakRssKiB: rss.native.length ? Math.max(...rss.native) : undefined },
  };
  result.ratio = result.ours.medianSeconds / result.native.medianSeconds;
  if (cpu.ours.length > 0 && cpu.native.length > 0) {
    result.ours.medianCpuSeconds = median(cpu.ours);
    result.native.medianCpuSeconds = median(cpu.native);
    result.cpuRatio = result.ours.medianCpuSeconds / result.native.medianCpuSeconds;
  }
  if (bytes) {
    result.ours.mibPerSecond = bytes / 2 ** 20 / result.ours.medianSeconds;
    result.native.mibPerSecond = bytes / 2 ** 20 / result.native.medianSeconds;
    result.throughputRatio = result.ours.mibPerSecond / result.native.mibPerSecond;
  }
  const throughput = (side) => (bytes ? `, ${result[side].mibPerSecond.toFixed(1)} MiB/s` : '');
  console.log(`\n## ${title} (median of ${runs}, each in a fresh process)`);
  console.log(`  piimg : ${format(result.ours.medianSeconds)}${throughput('ours')}, peak RSS ${formatRss(result.ours.peakRssKiB)}`);
  console.log(`  native: ${format(result.native.medianSeconds)}${throughput('native')}, peak RSS ${formatRss(result.native.peakRssKiB)}`);
  const list = (side) => samples[side].map((s) => s.toFixed(3)).join(' ');
  console.log(`  samples (s): piimg ${list('ours')} | native ${list('native')}`);
  console.log(`  ratio (piimg time / native time): ${result.ratio.toFixed(2)}`);
  if (result.cpuRatio !== undefined) {
    console.log(`  CPU time (user + system): piimg ${format(result.ours.medianCpuSeconds)}, native ${format(result.native.medianCpuSeconds)}, ratio ${result.cpuRatio.toFixed(2)}; load ${loadavg()[0].toFixed(1)}`);
  }
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  const file = join(root, 'bench', 'results', `${title.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.json`);
  writeFileSync(file, JSON.stringify({ ...result, ours: { ...result.ours, stdouts: undefined } }, null, 2) + '\n');
  return result;
}
