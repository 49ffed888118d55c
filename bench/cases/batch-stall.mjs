// The longest event-loop stall of the main thread during `piimg batch`, run in
// this process through the command's main(), as a service embedding it would see it.
//   batch-stall.mjs BASE CONFIG DEVICES OUT_PATTERN [--in-process]
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { main } from '../../packages/cli/lib/index.js';

const [base, config, devices, pattern, ...extra] = process.argv.slice(2);
const histogram = monitorEventLoopDelay({ resolution: 10 });
const sink = { write: () => true, isTTY: false };
histogram.enable();
const started = performance.now();
const code = await main(['batch', base, '--config', config, '--devices', devices, '-o', pattern, ...extra], {
  stdout: sink,
  stderr: sink,
  env: process.env,
  cwd: process.cwd(),
});
histogram.disable();
const ms = (ns) => Math.round(ns / 1e4) / 100;
console.log(JSON.stringify({ code, seconds: (performance.now() - started) / 1000, maxStallMs: ms(histogram.max), p99StallMs: ms(histogram.percentile(99)) }));
