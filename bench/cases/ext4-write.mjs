// Writes host files into an ext4 image with @piimg/core, like
// `debugfs -w -R "write FILE /DIR/NAME" IMAGE` for each file.
// Usage: node bench/cases/ext4-write.mjs IMAGE TARGET_DIR FILE...
// PIIMG_BENCH_MODE / PIIMG_BENCH_UID / PIIMG_BENCH_GID set mode and owner of each file.
// Files are streamed in 4 MiB chunks, so memory stays flat.
import { basename } from 'node:path';

// PIIMG_CORE may point at another build of the core package (for A/B runs).
const { FileDevice, mountExt4, readHostFile } = await import(process.env.PIIMG_CORE ?? '@piimg/core');

const [image, targetDir, ...files] = process.argv.slice(2);

const options = {};
if (process.env.PIIMG_BENCH_MODE) options.mode = Number.parseInt(process.env.PIIMG_BENCH_MODE, 8);
if (process.env.PIIMG_BENCH_UID) options.uid = Number(process.env.PIIMG_BENCH_UID);
if (process.env.PIIMG_BENCH_GID) options.gid = Number(process.env.PIIMG_BENCH_GID);

// PIIMG_BENCH_ROUNDS=n repeats the whole job (mount, write, close) n times in this
// process, round r > 0 into TARGET_DIR/round-r: what a service that stays up pays.
const rounds = Number(process.env.PIIMG_BENCH_ROUNDS ?? 1);
const jobSeconds = [];
for (let round = 0; round < rounds; round++) {
  const started = performance.now();
  const device = FileDevice.open(image);
  const volume = await mountExt4(device);
  let dir = targetDir === '/' ? '' : targetDir;
  if (round > 0) {
    dir = `${dir}/round-${round}`;
    await volume.mkdir(dir);
  }
  for (const file of files) await volume.writeFile(`${dir}/${basename(file)}`, readHostFile(file), options);
  await volume.close();
  device.close();
  jobSeconds.push((performance.now() - started) / 1000);
}
// Time spent on the job itself, without Node's start-up and module loading.
if (process.env.PIIMG_BENCH_REPORT) console.log(JSON.stringify({ jobSeconds: jobSeconds[0], rounds: jobSeconds }));
