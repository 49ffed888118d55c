import { openImage, checkFat, slice } from '@piimg/core';
import { performance } from 'node:perf_hooks';
const img = await openImage(process.argv[2]);
const p = img.partitionsValue[0];
for (let i = 0; i < 8; i++) {
  const t = performance.now();
  const r = checkFat(slice(img.overlay, { byteOffset: p.byteOffset, length: p.size }));
  console.log((performance.now() - t).toFixed(2), r.clean, r.freeClusters, r.clusterCount);
}
