// The `files:` recipe alone, in-process: copies a host tree into the root
// filesystem of IMAGE (through its copy-on-write overlay, the base is never
// written) the way `piimg inject` does, then flushes and closes the volumes.
// Usage: node bench/cases/apply-files.mjs IMAGE SOURCE_DIR TARGET
// PIIMG_BENCH_ROUNDS=n repeats the job in this process (round r > 0 into TARGET-r).
const { openImage, applyConfig } = await import(process.env.PIIMG_CORE ?? '@piimg/core');
const { parseConfig } = await import(process.env.PIIMG_CORE_CONFIG ?? '@piimg/core/config');

const [imagePath, source, target] = process.argv.slice(2);
const rounds = Number(process.env.PIIMG_BENCH_ROUNDS ?? 1);
const jobSeconds = [];
const cpuSeconds = [];
const image = await openImage(imagePath);
for (let round = 0; round < rounds; round++) {
  const config = parseConfig({ files: [{ source, target: round === 0 ? target : `${target}-${round}`, owner: '1000:1000', mode: '0755' }] });
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  const boot = await image.mount('boot');
  const root = await image.mount('root');
  await applyConfig({ boot, root }, { config, baseDir: '/', sources: [] });
  await root.close();
  await boot.close();
  jobSeconds.push((performance.now() - started) / 1000);
  const cpu = process.cpuUsage(cpuStarted);
  cpuSeconds.push((cpu.user + cpu.system) / 1e6);
}
await image.close();
if (process.env.PIIMG_BENCH_REPORT) console.log(JSON.stringify({ jobSeconds: jobSeconds[0], rounds: jobSeconds, cpuSeconds }));
