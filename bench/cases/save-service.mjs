// A service's view of image.save(): one process opens the base once and saves it
// COUNT times, one output per "request" (each removed before the next, as a
// service that streams and deletes it would).
import { rmSync } from 'node:fs';
import { openImage } from '@piimg/core';

const [base, out, count = '5'] = process.argv.slice(2);
const image = await openImage(base);
for (let i = 0; i < Number(count); i++) {
  image.device.write(4096 * (i + 1), new Uint8Array(4096).fill(i + 1));
  rmSync(out, { force: true });
  await image.save(out);
}
await image.close();
