// Copies host files into a FAT image with @piimg/core, like `mcopy -i IMAGE FILE... ::/DIR`.
// Usage: node bench/cases/fat-copy.mjs IMAGE TARGET_DIR FILE...
// Files are streamed in 4 MiB chunks (one reused buffer), as mcopy does, so memory stays flat.
import { closeSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';

// PIIMG_CORE may point at another build of the core package (for A/B runs).
const { FileDevice, mountFat } = await import(process.env.PIIMG_CORE ?? '@piimg/core');

const [image, targetDir, ...files] = process.argv.slice(2);
const buffer = new Uint8Array(4 * 1024 * 1024);

function* chunks(file) {
  const fd = openSync(file, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) return;
      yield buffer.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

const started = performance.now();
const device = FileDevice.open(image);
const volume = await mountFat(device);
for (const file of files) {
  await volume.writeFile(`${targetDir === '/' ? '' : targetDir}/${basename(file)}`, chunks(file));
}
await volume.close();
device.close();
// Time spent on the job itself, without Node's start-up and module loading.
if (process.env.PIIMG_BENCH_REPORT) console.log(JSON.stringify({ jobSeconds: (performance.now() - started) / 1000 }));
