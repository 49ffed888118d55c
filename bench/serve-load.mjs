// Load test of `piimg serve` over loopback, bounded in count and time (CI runs
// it after the test suite): N concurrent POST /images, every returned image
// verified by piimg, e2fsck -fn and fsck.fat -n, no request lost, and the
// longest event-loop stall of the service while the images are made under
// 50 ms. Prints latency p50/p95 and throughput. Exit status 1 on a failure.
//   node bench/serve-load.mjs [--requests 20] [--workers 2]
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '20' }, workers: { type: 'string', default: '2' }, 'worker-nice': { type: 'string' }, 'max-stall-ms': { type: 'string', default: '50' } } });
const requests = Number(values.requests);
const maxStallMs = Number(values['max-stall-ms']);
const root = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const dir = mkdtempSync(join(tmpdir(), 'piimg-serve-load-'));
const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin`, PIIMG_CACHE_DIR: join(dir, 'cache') };
const failures = [];
let child;
let serverLog = '';
const deadline = setTimeout(() => {
  console.error(`serve-load: did not finish within 10 minutes; the service's last log lines:\n${serverLog.split('\n').slice(-30).join('\n')}`);
  child?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  process.exit(1);
}, 600_000);
try {
  const base = join(dir, 'base.img');
  spawnSync('sh', ['-c', `xz -dc fixtures/images/pi-bookworm.img.xz > '${base}'`], { cwd: root, stdio: 'inherit' });
  child = spawn(process.execPath, ['packages/cli/bin/piimg.js', 'serve', '--port', '0', '--workers', values.workers, ...(values['worker-nice'] ? ['--worker-nice', values['worker-nice']] : []), '--base', `bookworm=${base}`, '--jobs-dir', join(dir, 'jobs')], {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (chunk) => {
      serverLog += chunk;
      const match = /"url":"([^"]+)"/.exec(serverLog);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`piimg serve exited with ${code}: ${serverLog}`)));
  });
  // Warm up: each worker opens the base and loads the WebAssembly engine once.
  await Promise.all(
    Array.from({ length: Number(values.workers) }, (_, i) =>
      fetch(`${url}/images?base=bookworm`, { method: 'POST', body: JSON.stringify({ hostname: `warm-${i}` }) }).then((r) => r.arrayBuffer()),
    ),
  );
  await fetch(`${url}/metrics/reset`, { method: 'POST' });
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: requests }, async (_, i) => {
      const hostname = `load-${String(i).padStart(4, '0')}`;
      const t0 = performance.now();
      try {
        const response = await fetch(`${url}/images?base=bookworm`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ hostname, ssh: { enabled: true, passwordAuthentication: false }, timezone: 'Europe/Berlin', locale: 'en_GB.UTF-8', keyboard: 'de' }),
        });
        if (response.status !== 200) throw new Error(`status ${response.status}: ${await response.text()}`);
        const path = join(dir, `${hostname}.img`);
        await pipeline(Readable.fromWeb(response.body), createWriteStream(path));
        return { hostname, path, seconds: (performance.now() - t0) / 1000, bytes: Number(response.headers.get('content-length')) };
      } catch (error) {
        failures.push(`${hostname}: ${error.message}`);
        return undefined;
      }
    }),
  );
  const wall = (performance.now() - started) / 1000;
  const metrics = await (await fetch(`${url}/metrics`)).json();
  const done = results.filter(Boolean);
  const latencies = done.map((r) => r.seconds).sort((a, b) => a - b);
  const pick = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const bytes = done.reduce((sum, r) => sum + r.bytes, 0);
  console.log(`\n## piimg serve: ${requests} concurrent POST /images, ${values.workers} workers`);
  console.log(`  completed ${done.length}/${requests} in ${wall.toFixed(2)} s: ${(done.length / wall).toFixed(2)} images/s, ${(bytes / 2 ** 20 / wall).toFixed(0)} MiB/s streamed`);
  console.log(`  latency p50 ${pick(0.5)?.toFixed(2)} s, p95 ${pick(0.95)?.toFixed(2)} s, max ${latencies.at(-1)?.toFixed(2)} s`);
  console.log(`  longest event-loop stall of the service: ${metrics.eventLoopDelayMaxMs.toFixed(1)} ms (p99 ${metrics.eventLoopDelayP99Ms.toFixed(1)} ms)`);
  if (done.length !== requests) failures.push(`${requests - done.length} request(s) lost`);
  // --max-stall-ms 0: report the stall, do not fail on it.
  if (maxStallMs > 0 && metrics.eventLoopDelayMaxMs >= maxStallMs) failures.push(`event-loop stall ${metrics.eventLoopDelayMaxMs.toFixed(1)} ms >= ${maxStallMs} ms`);
  // Every image: piimg's own check, then the native checkers on its partitions.
  const before = failures.length;
  for (const result of done) {
    const verify = spawnSync(process.execPath, ['packages/cli/bin/piimg.js', 'verify', result.path, '--json'], { cwd: root, env });
    if (verify.status !== 0) failures.push(`${result.hostname}: piimg verify exited ${verify.status}`);
    const table = JSON.parse(spawnSync('sfdisk', ['--json', result.path], { env }).stdout.toString()).partitiontable;
    for (const [index, partition] of table.partitions.entries()) {
      const offset = partition.start * 512;
      const part = `${result.path}.p${index + 1}`;
      spawnSync('dd', [`if=${result.path}`, `of=${part}`, 'bs=1M', `skip=${offset}`, `count=${partition.size * 512}`, 'iflag=skip_bytes,count_bytes', 'status=none']);
      const check = index === 0 ? spawnSync('fsck.fat', ['-n', part], { env }) : spawnSync('e2fsck', ['-fn', part], { env });
      if (check.status !== 0) failures.push(`${result.hostname}: ${index === 0 ? 'fsck.fat -n' : 'e2fsck -fn'} exited ${check.status}`);
      rmSync(part, { force: true });
    }
    const hostname = spawnSync(process.execPath, ['packages/cli/bin/piimg.js', 'cat', result.path, 'root:/etc/hostname'], { cwd: root, env }).stdout.toString().trim();
    if (hostname !== result.hostname) failures.push(`${result.hostname}: image has hostname '${hostname}'`);
    rmSync(result.path, { force: true });
  }
  const bad = new Set(failures.slice(before).map((f) => f.split(':')[0]));
  console.log(`  images verified by piimg, fsck.fat -n and e2fsck -fn: ${done.length - bad.size}/${done.length}`);
} catch (error) {
  failures.push(error.stack ?? String(error));
} finally {
  child?.kill('SIGTERM');
  clearTimeout(deadline);
  rmSync(dir, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`serve-load FAILED:\n  ${failures.join('\n  ')}\nthe service's last log lines:\n${serverLog.split('\n').slice(-30).join('\n')}`);
  process.exit(1);
}
console.log('  serve-load: passed');
