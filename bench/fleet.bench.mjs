// A fleet pays for compression once: `piimg inject ... -o device.img.xz` of the first
// device of a base (fresh cache: every Block compressed, the cache filled) and of the
// second device (the base's compressed Blocks reused; of the changed Blocks, cut into
// sub-Blocks kept by content, only the sub-Blocks with the device's own bytes compressed),
// against `xz -T2 -6` of the same raw device image, in the same run; the same for
// .img.gz against `pigz -p2 -6`. Each piimg run is the whole job (open, apply the
// inject bench's standard payload, verify, save) in a fresh process.
//
// The image (PIIMG_BENCH_FLEET_MIB, default 2048 MiB) is fixtures/recipes/pi-image.sh:
// a 256 MiB FAT boot partition and an ext4 root holding a Pi-like tree, MIB/8 of
// random bytes (compressed files) and MIB/4 of tars of /usr/lib (compressible).
// Targets: second device < 0.1x of xz -T2 -6 (and of pigz -p2 -6); sizes within 1 %.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeStandardPayload, standardConfig } from './cases/standard-device.mjs';
import { measure } from './harness.mjs';

const mib = Number(process.env.PIIMG_BENCH_FLEET_MIB ?? 2048);
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-fleet-'));
const load = () => execFileSync('uptime').toString().trim().replace(/^.*load/, 'load');
const seconds = (s) => `${s.toFixed(2)} s`;
const rss = (kib) => (kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(0)} MiB`);
try {
  const base = join(dir, 'base.img');
  execFileSync(
    'bash',
    ['fixtures/recipes/pi-image.sh', base, '--boot-mib', '256', '--root-mib', String(mib - 264), '--payload-mib', String(mib / 8), '--payload-text-mib', String(mib / 4)],
    { stdio: 'ignore' },
  );
  execFileSync('sync');
  // The inject bench's standard device (bench/cases/standard-device.mjs) without WireGuard:
  // hostname, user, SSH, Wi-Fi, a 20 MiB agent of 200 files, services, boot config.
  const payload = join(dir, 'payload');
  writeStandardPayload(payload);
  const config = (n) => {
    const path = join(payload, `device-${n}.yaml`);
    writeFileSync(path, standardConfig({ hostname: `sensor-${String(n).padStart(4, '0')}`, wireguard: false }));
    return path;
  };
  const cache = join(dir, 'cache');
  const env = { PIIMG_CACHE_DIR: cache };
  const inject = (n, out) => measure(['node', 'packages/cli/bin/piimg.js', 'inject', base, '-o', out, '--config', config(n), '--threads', '2', '--json'], { env });
  // The raw device image the native tools compress: the same device, saved raw.
  const raw = join(dir, 'device-2.img');
  inject(2, raw);
  console.log(`image: ${mib} MiB (used ${(Number(execFileSync('du', ['-B1', raw]).toString().split('\t')[0]) / 2 ** 20).toFixed(0)} MiB); ${load()}`);

  const run = (format, ext, native) => {
    rmSync(cache, { recursive: true, force: true });
    const nativePath = join(dir, `native.img.${ext}`);
    const reference = measure(['bash', '-c', `${native} -c "$1" > "$2"`, 'native', raw, nativePath]);
    console.log(`${format}: ${native} ${seconds(reference.seconds)} (peak RSS ${rss(reference.peakRssKiB)}); ${load()}`);
    const device = (n, label) => {
      const path = join(dir, `device-${n}.img.${ext}`);
      const result = inject(n, path);
      const blocks = JSON.parse(result.stdout).blocks;
      console.log(
        `  ${label} ${seconds(result.seconds)} ratio ${(result.seconds / reference.seconds).toFixed(3)} (peak RSS ${rss(result.peakRssKiB)}); ` +
          `Blocks ${blocks.blocks}, compressed ${blocks.encoded} (${(blocks.encodedBytes / 2 ** 20).toFixed(1)} MiB), reused ${blocks.reused}; ` +
          `sub-Blocks ${blocks.subBlocks}, compressed ${blocks.subBlocksEncoded}; size ${statSync(path).size} B vs ${statSync(nativePath).size} B: ${(statSync(path).size / statSync(nativePath).size).toFixed(4)}; ${load()}`,
      );
    };
    device(1, 'first device (fresh cache)');
    device(2, 'second device');
    device(3, 'third device');
  };
  run('xz', 'xz', 'xz -T2 -6');
  run('gzip', 'gz', 'pigz -p2 -6');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
