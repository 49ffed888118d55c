// `piimg batch` of DEVICES devices (the standard payload of bench/inject.bench.mjs as a
// shared configuration, the host name per device from a CSV) into raw images, against
// running the native cp + mtools + debugfs script (bench/cases/inject-native.sh) once
// per device, in the same run. Both check the root filesystem of every image.
// Target: ratio <= 0.5. Also reports the event-loop stall of one in-process inject.
//   PIIMG_BENCH_DEVICES (default 50), PIIMG_BENCH_RUNS (default 3)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { writeStandardPayload, standardConfig } from './cases/standard-device.mjs';
import { compare, measure } from './harness.mjs';

const devices = Number(process.env.PIIMG_BENCH_DEVICES ?? 50);
const runs = Number(process.env.PIIMG_BENCH_RUNS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-batch-'));
try {
  const base = join(dir, 'base.img');
  // 256 MiB boot + 1.5 GiB root (a 1.8 GB image, as Pi OS Lite) with 128 MiB of payload:
  // 2 x DEVICES outputs must fit on the disk.
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', base, '--boot-mib', '256', '--root-mib', '1536', '--payload-mib', '128'], { stdio: 'ignore' });
  execFileSync('sync');
  const st = statSync(base);
  console.log(`base: ${(st.size / 1e9).toFixed(2)} GB, ${((st.blocks * 512) / 2 ** 20).toFixed(0)} MiB allocated; ${devices} devices; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const payload = join(dir, 'payload');
  writeStandardPayload(payload);
  // The configuration of bench/inject.bench.mjs, with the host name a variable.
  const config = join(payload, 'fleet.yaml');
  writeFileSync(config, standardConfig({ hostname: '{{name}}' }));
  const csv = join(payload, 'devices.csv');
  writeFileSync(csv, ['name', ...Array.from({ length: devices }, (_, i) => `sensor-${String(i + 1).padStart(4, '0')}`)].join('\n') + '\n');
  const out = join(dir, 'out');
  const table = JSON.parse(execFileSync('sfdisk', ['--json', base], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } })).partitiontable;
  const [bootOffset, rootOffset] = table.partitions.map((partition) => String(partition.start * (table.sectorsize ?? 512)));
  const ours = ['node', 'packages/cli/bin/piimg.js', 'batch', base, '--config', config, '--devices', csv, '-o', `${out}/{name}.img`];
  const env = { PIIMG_CACHE_DIR: join(dir, 'cache') };
  // The data map of the raw base is found by its first save and cached, as in any real use.
  measure(['node', 'packages/cli/bin/piimg.js', 'inject', base, '-o', join(dir, 'warm.img'), '--config', config, '--var', 'name=warm'], { env });
  rmSync(join(dir, 'warm.img'), { force: true });
  const result = compare({
    title: `piimg batch of ${devices} devices vs the cp + mtools + debugfs script run ${devices} times`,
    runs,
    prepare: () => {
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      execFileSync('sync');
    },
    ours,
    native: [
      'bash',
      '-c',
      'for i in $(seq -w 1 "$2"); do bash bench/cases/inject-native.sh "$1" "$3/sensor-$i.img" "$4" "$5" "$6"; done',
      'native-loop',
      base,
      String(devices),
      out,
      payload,
      bootOffset,
      rootOffset,
    ],
    env,
  });
  // The floor of raw outputs: the copies of the base alone, two at a time as the two jobs
  // make them (cp --sparse=always; its kernel copy uses about one core, and the pages it
  // dirties are written back to the disk).
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out);
  execFileSync('sync');
  const copies = measure([
    'bash',
    '-c',
    'for i in $(seq 1 2 "$2"); do cp --sparse=always "$1" "$3/a-$i.img" & cp --sparse=always "$1" "$3/b-$i.img"; wait; done',
    'copy-floor',
    base,
    String(devices),
    out,
  ]);
  console.log(
    `  floor: the ${devices} base copies alone, two at a time: ${copies.seconds.toFixed(2)} s (CPU ${copies.cpuSeconds?.toFixed(2) ?? 'n/a'} s) = ratio ${(copies.seconds / result.native.medianSeconds).toFixed(2)} of the script`,
  );
  // Where the time goes, per device (medians of one more run with --json), on worker
  // threads, without the stage of shared files (--no-stage), and with every device on
  // the main thread (--in-process).
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  for (const mode of [[], ['--no-stage'], ['--in-process']]) {
    rmSync(out, { recursive: true, force: true });
    const run = measure([...ours, ...mode, '--json'], { env });
    const report = JSON.parse(run.stdout);
    const steps = ['config', 'stage', 'apply', 'verify', 'save', 'total'].map((step) => `${step} ${(median(report.results.map((r) => r.timings[step] ?? 0)) * 1000).toFixed(0)} ms`);
    console.log(
      `  piimg batch ${report.threads ? 'on worker threads' : 'in process'}${mode.includes('--no-stage') ? ', no stage' : ''} (${report.jobs} jobs, ${report.results.filter((r) => r.staged).length} staged, ${report.written} written, ${report.failed} failed): ${run.seconds.toFixed(2)} s, peak RSS ${run.peakRssKiB === undefined ? 'n/a' : (run.peakRssKiB / 1024).toFixed(0) + ' MiB'}; per device ${steps.join(', ')}`,
    );
  }
  rmSync(out, { recursive: true, force: true });
  // The main thread's event loop during a batch of 10 devices, on worker threads and in process.
  const ten = join(payload, 'ten.csv');
  writeFileSync(ten, ['name', ...Array.from({ length: 10 }, (_, i) => `stall-${i + 1}`)].join('\n') + '\n');
  for (const mode of [[], ['--in-process']]) {
    rmSync(out, { recursive: true, force: true });
    const batchStall = JSON.parse(measure(['node', 'bench/cases/batch-stall.mjs', base, config, ten, `${out}/{name}.img`, ...mode], { env }).stdout);
    console.log(`  batch of 10 ${mode.length ? 'in process' : 'on worker threads'}: ${batchStall.seconds.toFixed(2)} s, longest event-loop stall ${batchStall.maxStallMs} ms, p99 ${batchStall.p99StallMs} ms`);
  }
  rmSync(out, { recursive: true, force: true });
  // The longest event-loop stall of one in-process inject of the same configuration.
  const stall = JSON.parse(measure(['node', 'bench/cases/event-loop.mjs', base, config, join(dir, 'stall.img')], { env }).stdout);
  console.log(`  one in-process inject: ${stall.seconds.toFixed(2)} s, longest event-loop stall ${stall.maxStallMs} ms, p99 ${stall.p99StallMs} ms (apply ${(stall.timings.apply * 1000).toFixed(0)} ms, verify ${(stall.timings.verify * 1000).toFixed(0)} ms)`);
  console.log(`  load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
