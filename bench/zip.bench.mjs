// Opening a .zip base: piimg extracts the .img (yauzl, inflate in Node's zlib) into its cache,
// against `unzip -p` writing the same image to a file. The image holds 300 MiB of incompressible
// data (a 300 MB zip), as a Pi OS Lite download does. Needs zip and unzip (apt-get install zip unzip).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-zip-'));
try {
  const image = join(dir, 'pi.img');
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', image, '--root-mib', '400', '--payload-mib', '300'], { stdio: 'inherit' });
  const zip = join(dir, 'pi.zip');
  execFileSync('zip', ['-q', '-j', zip, image]);
  rmSync(image);
  execFileSync('sync');
  console.log(`zip: ${(statSync(zip).size / 1e6).toFixed(0)} MB`);
  const cache = join(dir, 'cache');
  const out = join(dir, 'out.img');
  compare({
    title: 'open a 300 MB .zip base (extract into the cache) vs unzip -p > file',
    runs: 5,
    prepare: () => {
      rmSync(cache, { recursive: true, force: true });
      rmSync(out, { force: true });
    },
    ours: ['node', 'bench/cases/zip-open.mjs', zip, cache],
    native: ['sh', '-c', 'unzip -p "$0" > "$1"', zip, out],
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
