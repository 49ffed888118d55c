// Loaded into `piimg serve` by `bench/serve-load.mjs --trace-stalls` (node --import): on the
// HTTP thread it ticks every 2 ms and, for every tick late by more than 15 ms, records where
// the time went from the thread's own scheduler counters (/proc/self/task/TID/schedstat, Linux:
// time on a CPU, time runnable but waiting in the run queue; the rest it was blocked in a
// system call or a lock), plus every garbage collection. Written as JSON at exit.
// Ref: https://docs.kernel.org/scheduler/sched-stats.html (schedstat: run time, run-queue wait, timeslices)
import { readFileSync, writeFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

const out = process.env.PIIMG_STALL_TRACE;
if (isMainThread && out) {
  const path = `/proc/self/task/${process.pid}/schedstat`;
  let schedstat = true;
  try {
    readFileSync(path);
  } catch {
    schedstat = false; // not Linux, or a kernel without it: the late ticks only
  }
  const sched = () => (schedstat ? readFileSync(path, 'utf8').split(' ').map(Number) : [0, 0, 0]);
  const stalls = [];
  const gcs = [];
  let last = performance.now();
  let lastSched = sched();
  const tick = () => {
    const now = performance.now();
    const counters = sched();
    if (now - last > 15) {
      stalls.push({ atMs: last, gapMs: now - last, runMs: (counters[0] - lastSched[0]) / 1e6, waitMs: (counters[1] - lastSched[1]) / 1e6 });
    }
    last = now;
    lastSched = counters;
    setTimeout(tick, 2).unref();
  };
  setTimeout(tick, 2).unref();
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcs.push({ atMs: entry.startTime, ms: entry.duration, kind: entry.detail?.kind });
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () => writeFileSync(out, JSON.stringify({ origin: performance.timeOrigin, schedstat, stalls, gcs })));
}
