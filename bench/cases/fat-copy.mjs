// Copies host files into a FAT image with @piimg/core, like `mcopy -i IMAGE FILE... ::/DIR`.
// Usage: node bench/cases/fat-copy.mjs IMAGE TARGET_DIR FILE...
// Files are streamed in 4 MiB chunks, as mcopy does, so memory stays flat.
import { basename } from 'node:path';

// PIIMG_CORE may point at another build of the core package (for A/B runs).
const { FileDevice, mountFat, readHostFile } = await import(process.env.PIIMG_CORE ?? '@piimg/core');

const [image, targetDir, ...files] = process.argv.slice(2);

const started = performance.now();
const device = FileDevice.open(image);
const volume = await mountFat(device);
for (const file of files) {
  await volume.writeFile(`${targetDir === '/' ? '' : targetDir}/${basename(file)}`, readHostFile(file));
}
await volume.close();
device.close();
// Time spent on the job itself, without Node's start-up and module loading.
if (process.env.PIIMG_BENCH_REPORT) console.log(JSON.stringify({ jobSeconds: (performance.now() - started) / 1000 }));
