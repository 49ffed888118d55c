// A service's view of inject: one process opens the base once, then makes COUNT device
// images from it, each as a request would (configuration loaded, image derived, the save
// prepared so the base copy runs during apply and verify, applied, verified, saved). Each
// output is removed before the next, as a service that streams and deletes it would.
// The last line of output: each request's seconds, and of those the removal's, as JSON.
//   inject-service.mjs BASE CONFIG OUT COUNT
import { rmSync } from 'node:fs';
import { loadConfig, openImage } from '@piimg/core';

const [basePath, configPath, out, count = '5'] = process.argv.slice(2);
const base = await openImage(basePath);
// Each request's own time, from removing the last output to the new one in place: the last line.
const requests = [];
const removes = [];
for (let i = 0; i < Number(count); i++) {
  const started = performance.now();
  rmSync(out, { force: true });
  removes.push((performance.now() - started) / 1000);
  const loaded = await loadConfig(configPath);
  const device = await base.derive();
  const save = device.prepareSave(out);
  try {
    await device.apply(loaded);
    await save.finish();
    requests.push((performance.now() - started) / 1000);
  } finally {
    // Removes the temporary file unless finish() put it in place.
    await save.cancel();
    await device.close();
  }
}
await base.close();
console.log(JSON.stringify({ requestSeconds: requests, removeSeconds: removes }));
