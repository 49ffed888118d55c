// A service's view of image.save(): one process opens the base once and saves it
// COUNT times, one output per "request" (each removed before the next, as a
// service that streams and deletes it would).
import { rmSync } from 'node:fs';
import { openImage } from '@piimg/core';

const [base, out, count = '5'] = process.argv.slice(2);
const image = await openImage(base);
// The last line of output: each request's seconds (the removal and the save) and each save's, as JSON.
const requestSeconds = [];
const saveSeconds = [];
for (let i = 0; i < Number(count); i++) {
  image.device.write(4096 * (i + 1), new Uint8Array(4096).fill(i + 1));
  const started = performance.now();
  rmSync(out, { force: true });
  const saving = performance.now();
  await image.save(out);
  requestSeconds.push((performance.now() - started) / 1000);
  saveSeconds.push((performance.now() - saving) / 1000);
}
await image.close();
console.log(JSON.stringify({ requestSeconds, saveSeconds }));
