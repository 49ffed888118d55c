// Opens a .zip base with a fresh cache: the .img inside is extracted (yauzl) into the cache.
import { openImage } from '@piimg/core';

const [zip, cacheDir] = process.argv.slice(2);
const image = await openImage(zip, { cacheDir });
await image.close();
