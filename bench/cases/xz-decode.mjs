// Opens a compressed base (.xz, .zst, ...) into an empty cache: what the first inject on a fresh CI runner pays.
import { rmSync } from 'node:fs';
import { resolveSource } from '@piimg/core';

const [input, cacheDir] = process.argv.slice(2);
rmSync(cacheDir, { recursive: true, force: true });
await resolveSource(input, { cacheDir });
