// What starting cp costs the process that saves: Node's spawn forks the whole process, so
// its cost grows with the resident memory, and the event loop stops meanwhile. Measured:
// spawn('true') at the size of a fresh process and with 700 MiB more resident, then the
// longest event-loop stall of each of six image.save() calls of a 1.88 GB image (129 MiB of
// data) at that size: the first two fork cp (the second also starts the launcher), the
// later ones ask the launcher (packages/core/src/image/cp.ts). No native tool to compare
// with: the figure is the stall itself.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openImage } from '@piimg/core';
import { median } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-spawn-'));
const spawnMs = async (runs) => {
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const child = spawn('true');
    samples.push(performance.now() - started);
    await new Promise((resolve) => child.on('exit', resolve));
  }
  return median(samples);
};
try {
  const base = join(dir, 'base.img');
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', base, '--boot-mib', '256', '--root-mib', '1536', '--payload-mib', '128'], { stdio: 'ignore' });
  execFileSync('sync');
  console.log(`## spawn cost and save stalls (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
  const small = await spawnMs(7);
  const smallRss = process.memoryUsage().rss >> 20;
  const ballast = [];
  for (let i = 0; i < 700; i++) ballast.push(Buffer.alloc(1 << 20, 1));
  const bigRss = process.memoryUsage().rss >> 20;
  const big = await spawnMs(7);
  console.log(`  spawn('true'), median of 7: ${small.toFixed(1)} ms at ${smallRss} MiB resident, ${big.toFixed(1)} ms at ${bigRss} MiB`);
  const image = await openImage(base, { cacheDir: join(dir, 'cache') });
  const stalls = [];
  for (let i = 0; i < 6; i++) {
    const device = await image.derive();
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    await device.save(join(dir, 'out.img'));
    histogram.disable();
    stalls.push(histogram.max / 1e6);
    await device.close();
    rmSync(join(dir, 'out.img'));
  }
  await image.close();
  console.log(`  longest event-loop stall per save at ${process.memoryUsage().rss >> 20} MiB: ${stalls.map((ms) => ms.toFixed(1)).join(', ')} ms`);
  console.log(`  forked (saves 1-2): ${Math.max(...stalls.slice(0, 2)).toFixed(1)} ms at most; launched (saves 3-6): median ${median(stalls.slice(2)).toFixed(1)} ms`);
  console.log(`  load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  ballast.length = 0;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
