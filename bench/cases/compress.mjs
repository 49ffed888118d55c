// Writes IMAGE compressed: image.save(OUT, { format, level, threads }).
import { openImage } from '@piimg/core';

const [base, out, format, level, threads] = process.argv.slice(2);
const image = await openImage(base, { cacheDir: `${out}.cache` });
await image.save(out, { format, level: Number(level), threads: Number(threads) });
await image.close();
