// Writes IMAGE compressed: image.save(OUT, { format, level, threads }).
import { openImage } from '@piimg/core';

const [base, out, format, level, threads] = process.argv.slice(2);
const image = await openImage(base, { cacheDir: `${out}.cache` });
// blockCache: false: this measures compressing the whole image, as the first device of a base pays it.
await image.save(out, { format, level: Number(level), threads: Number(threads), blockCache: false });
await image.close();
