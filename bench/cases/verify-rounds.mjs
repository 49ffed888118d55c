// Image.verify() in-process: open IMAGE, check every filesystem (e2fsck -fn in
// WebAssembly for ext4, piimg's FAT checker), PIIMG_BENCH_ROUNDS times.
// Round 0 is the first check in the process (modules compiled, JIT cold);
// later rounds are what a service that stays up pays.
// Usage: node bench/cases/verify-rounds.mjs IMAGE
const { openImage } = await import(process.env.PIIMG_CORE ?? '@piimg/core');

const [imagePath] = process.argv.slice(2);
const rounds = Number(process.env.PIIMG_BENCH_ROUNDS ?? 1);
const jobSeconds = [];
const cpuSeconds = [];
const image = await openImage(imagePath);
for (let round = 0; round < rounds; round++) {
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  const findings = await image.verify();
  jobSeconds.push((performance.now() - started) / 1000);
  const cpu = process.cpuUsage(cpuStarted);
  cpuSeconds.push((cpu.user + cpu.system) / 1e6);
  if (!findings.every((finding) => finding.checked && finding.clean)) throw new Error(`not clean: ${JSON.stringify(findings)}`);
}
await image.close();
if (process.env.PIIMG_BENCH_REPORT) console.log(JSON.stringify({ jobSeconds: jobSeconds[0], rounds: jobSeconds, cpuSeconds }));
