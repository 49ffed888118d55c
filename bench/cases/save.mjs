// One image.save(): open the base, change a few chunks, write base + changes to OUT.
import { openImage } from '@piimg/core';

const [base, out, changes = '8'] = process.argv.slice(2);
const image = await openImage(base);
const device = image.device;
for (let i = 0; i < Number(changes); i++) {
  const at = Math.floor(((i + 0.5) / Number(changes)) * (device.size - 4096));
  device.write(at, new Uint8Array(4096).fill(i + 1));
}
await image.save(out);
await image.close();
