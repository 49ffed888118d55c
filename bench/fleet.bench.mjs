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
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  // The inject bench's standard device: hostname, user, SSH, Wi-Fi, WireGuard, a 20 MiB agent of 200 files, services, boot config.
  const payload = join(dir, 'payload');
  for (let d = 0; d < 10; d++) mkdirSync(join(payload, 'agent', `module-${d}`), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(payload, 'agent', `module-${i % 10}`, `part-${i}.bin`), randomBytes(100 * 1024 + (i % 7)));
  writeFileSync(join(payload, 'agent.service'), '[Unit]\nDescription=agent\n[Service]\nExecStart=/opt/agent/module-0/part-0.bin\n[Install]\nWantedBy=multi-user.target\n');
  const config = (n) => {
    const path = join(payload, `device-${n}.yaml`);
    writeFileSync(
      path,
      `hostname: sensor-${String(n).padStart(4, '0')}
user: { name: pi, password: "correct horse battery staple" }
ssh: { enabled: true, authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"] }
wifi: { country: DE, networks: [{ ssid: Home, password: wifi-secret-123 }] }
timezone: Europe/Berlin
files:
  - { source: ./agent, target: /opt/agent, owner: "pi:pi", mode: "0755" }
  - { source: ./agent.service, target: /etc/systemd/system/agent.service }
services: { enable: [agent.service] }
boot:
  config: { set: { dtparam: [i2c_arm=on], enable_uart: "1" } }
  cmdline: { append: [net.ifnames=0] }
`,
    );
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
