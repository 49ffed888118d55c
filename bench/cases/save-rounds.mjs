// image.save() timed inside one process (a service's view: Node and the library are loaded
// once): opens BASE, changes 8 chunks, saves to OUT, ROUNDS times; prints the seconds of each
// save as the last line of JSON ({"rounds": [...]}), for harness.jobRounds.
import { rmSync } from 'node:fs';
import { openImage } from '@piimg/core';

const [base, out, roundsText = '7'] = process.argv.slice(2);
const rounds = [];
for (let round = 0; round < Number(roundsText); round++) {
  rmSync(out, { force: true });
  const image = await openImage(base);
  for (let i = 0; i < 8; i++) image.device.write(Math.floor(((i + 0.5) / 8) * (image.size - 4096)), new Uint8Array(4096).fill(i + 1));
  const started = performance.now();
  await image.save(out);
  rounds.push((performance.now() - started) / 1000);
  await image.close();
}
console.log(JSON.stringify({ rounds }));
