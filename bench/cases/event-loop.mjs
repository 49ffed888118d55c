// The event-loop stall of one in-process inject (open, derive, apply with verify,
// save), as a service importing @piimg/core would see it: monitorEventLoopDelay
// samples the loop every 10 ms; the longest delay is the longest stall.
//   event-loop.mjs BASE CONFIG OUT
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig, openImage } from '@piimg/core';

const [basePath, configPath, out] = process.argv.slice(2);
const histogram = monitorEventLoopDelay({ resolution: 10 });
histogram.enable();
const started = performance.now();
const loaded = await loadConfig(configPath, { vars: { name: 'stall-0001' } });
const base = await openImage(basePath);
const device = await base.derive();
const result = await device.apply(loaded);
await device.save(out);
await device.close();
await base.close();
histogram.disable();
const ms = (ns) => Math.round(ns / 1e4) / 100;
console.log(
  JSON.stringify({
    seconds: (performance.now() - started) / 1000,
    timings: result.timings,
    maxStallMs: ms(histogram.max),
    p99StallMs: ms(histogram.percentile(99)),
    meanDelayMs: ms(histogram.mean),
  }),
);
