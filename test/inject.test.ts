import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage, wireguardPublicKey } from '@piimg/core';
import { piimg } from './support/cli.js';
import { rawFixture, repoRoot, testCacheDir, type FixtureName } from './support/fixtures.js';
import { debugfs, debugfsCat, debugfsStat, e2fsck, fsckFat, mtype, type PartitionRef } from './support/oracles.js';
import { hasTool } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-inject-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

const SECRETS = { password: 'correct horse battery staple', wifi: 'wifi-secret-123' };
const PEER_KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example';
const env = { PIIMG_CACHE_DIR: testCacheDir, SOURCE_DATE_EPOCH: '1767225600' };

function writeConfig(at: string): string {
  mkdirSync(join(at, 'agent', 'bin'), { recursive: true });
  writeFileSync(join(at, 'agent', 'bin', 'agent'), '#!/bin/sh\necho agent\n', { mode: 0o755 });
  writeFileSync(join(at, 'agent', 'agent.toml'), 'interval = 30\n');
  const config = join(at, 'device.yaml');
  writeFileSync(
    config,
    `hostname: "sensor-{{device.id}}"
user: { name: pi, password: "${SECRETS.password}" }
ssh: { enabled: true, passwordAuthentication: false, authorizedKeys: ["${SSH_KEY}"] }
wifi:
  country: DE
  networks: [{ ssid: "Home Net", password: "${SECRETS.wifi}" }]
wireguard:
  interface: wg0
  privateKey: generate
  address: 10.10.0.5/24
  dns: 10.10.0.1
  peers: [{ publicKey: "${PEER_KEY}", endpoint: "vpn.example.com:51820", allowedIps: ["10.10.0.0/24"], persistentKeepalive: 25 }]
timezone: Europe/Berlin
locale: en_US.UTF-8
keyboard: us
services: { enable: [agent.service] }
files:
  - { source: ./agent, target: /opt/agent, owner: "pi:pi", mode: "0755" }
  - { target: /etc/agent/project.json, content: '{"project":"p-42"}', mode: "0644" }
  - target: /etc/systemd/system/agent.service
    content: |
      [Unit]
      Description=agent
      [Service]
      ExecStart=/opt/agent/bin/agent
      [Install]
      WantedBy=multi-user.target
boot:
  config: { set: { dtparam: ["i2c_arm=on"], enable_uart: "1" } }
  cmdline: { append: ["net.ifnames=0"] }
`,
  );
  return config;
}

async function partitions(image: string): Promise<{ boot: PartitionRef; root: PartitionRef }> {
  await using opened = await openImage(image);
  const ref = (p: { byteOffset: number; size: number }) => ({ image, byteOffset: p.byteOffset, size: p.size });
  return { boot: ref(opened.partition('boot')), root: ref(opened.partition('root')) };
}

const oracles = hasTool('debugfs') && hasTool('e2fsck') && hasTool('mtype') && hasTool('fsck.fat');

describe.skipIf(!oracles)('piimg inject, checked with native tools', () => {
  const cases: FixtureName[] = ['pi-trixie', 'pi-bookworm', 'pi-bookworm-8m', 'pi-bullseye'];
  for (const name of cases) {
    describe(name, () => {
      let base: string;
      let out: string;
      let report: {
        changes: { volume: string; path: string; action: string; summary: string }[];
        warnings: string[];
        outputs: { wireguardPublicKey?: string };
        verified: boolean;
        timings: Record<string, number>;
      };
      let json: string;
      let baseHash: string;

      beforeAll(async () => {
        const work = join(dir, name);
        mkdirSync(work, { recursive: true });
        base = await rawFixture(name, work);
        baseHash = sha256(base);
        out = join(work, 'device.img');
        const result = await piimg(['inject', base, '-o', out, '--config', writeConfig(work), '--var', 'device.id=0007', '--json'], env);
        expect(result.stderr).toBe('');
        expect(result.code).toBe(0);
        json = result.stdout;
        report = JSON.parse(json);
      });

      it('leaves the base byte-identical and both filesystems clean', async () => {
        expect(sha256(base)).toBe(baseHash);
        expect(report.verified).toBe(true);
        expect(Object.keys(report.timings)).toEqual(['open', 'config', 'apply', 'verify', 'save']);
        expect(Object.values(report.timings).every((seconds) => typeof seconds === 'number' && seconds >= 0)).toBe(true);
        const { boot, root } = await partitions(out);
        const ext = e2fsck(root);
        expect(ext.output).not.toMatch(/error|corrupt|fix/i);
        expect(ext.clean).toBe(true);
        const fat = fsckFat(boot);
        expect(fat.output).not.toMatch(/differ|lost|corrupt/i);
        expect(fat.clean).toBe(true);
      });

      it('never prints a secret', async () => {
        expect(json).not.toContain(SECRETS.password);
        expect(json).not.toContain(SECRETS.wifi);
        const { root } = await partitions(out);
        const wg =
          name === 'pi-trixie' ? debugfsCat(root, '/etc/NetworkManager/system-connections/wg0.nmconnection') : debugfsCat(root, '/etc/wireguard/wg0.conf');
        const privateKey = /(?:PrivateKey\s*=\s*|private-key=)(\S+)/.exec(wg)![1]!;
        expect(json).not.toContain(privateKey);
        expect(report.outputs.wireguardPublicKey).toBe(wireguardPublicKey(privateKey));
        const shadowHash = /^pi:([^:]+):/m.exec(debugfsCat(root, '/etc/shadow'))![1]!;
        expect(shadowHash).toMatch(/^\$6\$/);
        expect(json).not.toContain(shadowHash);
      });

      it('writes hostname, hosts, timezone, locale and keyboard', async () => {
        const { root } = await partitions(out);
        expect(debugfsCat(root, '/etc/hostname')).toBe('sensor-0007\n');
        expect(debugfsCat(root, '/etc/hosts')).toMatch(/^127\.0\.1\.1\s+sensor-0007$/m);
        expect(debugfsCat(root, '/etc/hosts')).not.toMatch(/raspberrypi/);
        expect(debugfsStat(root, '/etc/localtime')).toMatchObject({ type: 'symlink', target: '/usr/share/zoneinfo/Europe/Berlin' });
        if (name === 'pi-trixie') {
          // Debian 13: no /etc/timezone, and /etc/default/locale stays a link to /etc/locale.conf.
          expect(debugfsStat(root, '/etc/timezone')).toBeUndefined();
          expect(debugfsStat(root, '/etc/default/locale')).toMatchObject({ type: 'symlink', target: '../locale.conf' });
          expect(debugfsCat(root, '/etc/locale.conf')).toContain('LANG=en_US.UTF-8');
        } else {
          expect(debugfsCat(root, '/etc/timezone')).toBe('Europe/Berlin\n');
          expect(debugfsCat(root, '/etc/default/locale')).toContain('LANG=en_US.UTF-8');
        }
        expect(debugfsCat(root, '/etc/locale.gen')).toMatch(/^en_US\.UTF-8 UTF-8$/m);
        expect(debugfsCat(root, '/etc/default/keyboard')).toContain('XKBLAYOUT="us"');
      });

      it('sets up the user and SSH with the right owners and modes', async () => {
        const { root } = await partitions(out);
        expect(debugfsStat(root, '/home/pi/.ssh')).toMatchObject({ type: 'directory', mode: 0o700, uid: 1000, gid: 1000 });
        expect(debugfsStat(root, '/home/pi/.ssh/authorized_keys')).toMatchObject({ type: 'regular', mode: 0o600, uid: 1000, gid: 1000 });
        expect(debugfsCat(root, '/home/pi/.ssh/authorized_keys')).toContain(SSH_KEY);
        expect(debugfsStat(root, '/etc/systemd/system/multi-user.target.wants/ssh.service')?.type).toBe('symlink');
        const dropIns = debugfs(root, 'ls -l /etc/ssh/sshd_config.d');
        const dropIn = /(\S+\.conf)\s*$/m.exec(dropIns)![1]!;
        expect(debugfsCat(root, `/etc/ssh/sshd_config.d/${dropIn}`)).toMatch(/^PasswordAuthentication no$/m);
        expect(debugfsStat(root, '/etc/shadow')).toMatchObject({ mode: 0o640, uid: 0, gid: 42 });
      });

      it('writes Wi-Fi where the release reads it, readable by root only', async () => {
        const { root, boot } = await partitions(out);
        if (name !== 'pi-bullseye') {
          const listing = debugfs(root, 'ls /etc/NetworkManager/system-connections');
          const file = /(\S+-[0-9a-f]{6}\.nmconnection)/.exec(listing)![1]!;
          const path = `/etc/NetworkManager/system-connections/${file}`;
          expect(debugfsStat(root, path)).toMatchObject({ type: 'regular', mode: 0o600, uid: 0, gid: 0 });
          const keyfile = debugfsCat(root, path);
          expect(keyfile).toContain('ssid=Home Net');
          expect(keyfile).toMatch(/^psk=[0-9a-f]{64}$/m);
          expect(keyfile).toContain('key-mgmt=wpa-psk');
        } else {
          const conf = debugfsCat(root, '/etc/wpa_supplicant/wpa_supplicant.conf');
          expect(conf).toMatch(/country=DE/);
          expect(conf).toMatch(/ssid="Home Net"/);
          expect(conf).toMatch(/psk=[0-9a-f]{64}/);
          expect(debugfsStat(root, '/etc/wpa_supplicant/wpa_supplicant.conf')).toMatchObject({ mode: 0o600, uid: 0 });
        }
        expect(mtype(boot, '/cmdline.txt')).toContain('cfg80211.ieee80211_regdom=DE');
      });

      it('writes WireGuard, services, files and boot settings', async () => {
        const { root, boot } = await partitions(out);
        const wgLink = debugfsStat(root, '/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service');
        if (name === 'pi-trixie') {
          // No wireguard-tools: a NetworkManager profile instead of wg-quick.
          const profile = '/etc/NetworkManager/system-connections/wg0.nmconnection';
          expect(debugfsStat(root, profile)).toMatchObject({ type: 'regular', mode: 0o600, uid: 0, gid: 0 });
          expect(debugfsCat(root, profile)).toContain(`[wireguard-peer.${PEER_KEY}]`);
          expect(debugfsStat(root, '/etc/wireguard/wg0.conf')).toBeUndefined();
          expect(wgLink).toBeUndefined();
          expect(report.warnings.join('\n')).not.toMatch(/wg-quick/);
        } else {
          expect(debugfsStat(root, '/etc/wireguard/wg0.conf')).toMatchObject({ mode: 0o600, uid: 0, gid: 0 });
          expect(debugfsCat(root, '/etc/wireguard/wg0.conf')).toContain(`PublicKey = ${PEER_KEY}`);
          if (name === 'pi-bullseye') expect(report.warnings.join('\n')).toMatch(/wg-quick/);
          else expect(wgLink?.type).toBe('symlink');
        }
        expect(debugfsStat(root, '/etc/systemd/system/multi-user.target.wants/agent.service')?.type).toBe('symlink');
        expect(debugfsStat(root, '/opt/agent/bin/agent')).toMatchObject({ type: 'regular', mode: 0o755, uid: 1000, gid: 1000 });
        expect(debugfsCat(root, '/opt/agent/agent.toml')).toBe('interval = 30\n');
        expect(debugfsCat(root, '/etc/agent/project.json')).toBe('{"project":"p-42"}');
        const cmdline = mtype(boot, '/cmdline.txt');
        expect(cmdline.trim().split('\n')).toHaveLength(1);
        expect(cmdline).toContain('net.ifnames=0');
        expect(cmdline).toContain('root=PARTUUID=5e3da7a1-02');
        const config = mtype(boot, '/config.txt');
        expect(config).toMatch(/^dtparam=i2c_arm=on$/m);
        expect(config).toMatch(/^enable_uart=1$/m);
        expect(config).toMatch(/^dtoverlay=vc4-kms-v3d$/m);
        expect(config).toMatch(/^\[cm4\]$/m);
      });

      it.runIf(name === 'pi-trixie')('Trixie: usable user, radio on, wizard off, cloud-init told to keep the offline settings', async () => {
        const { root } = await partitions(out);
        expect(debugfsCat(root, '/etc/passwd')).toMatch(/^pi:x:1000:1000:[^:]*:\/home\/pi:\/bin\/bash$/m);
        expect(debugfsCat(root, '/var/lib/NetworkManager/NetworkManager.state')).toMatch(/^WirelessEnabled=true$/m);
        expect(debugfsCat(root, '/var/lib/systemd/rfkill/platform-fe300000.mmcnr:wlan')).toBe('0\n');
        expect(debugfsStat(root, '/etc/systemd/system/userconfig.service')).toMatchObject({ type: 'symlink', target: '/dev/null' });
        expect(debugfsStat(root, '/etc/systemd/system/getty.target.wants/getty@tty1.service')?.type).toBe('symlink');
        expect(debugfsStat(root, '/etc/ssh/sshd_config.d/rename_user.conf')).toBeUndefined();
        const dropIn = debugfsCat(root, '/etc/cloud/cloud.cfg.d/99_zz-piimg.cfg');
        expect(dropIn).toMatch(/^preserve_hostname: true$/m);
        expect(dropIn).toMatch(/^users: \[\]$/m);
      });

      it('is idempotent: injecting the same config into the result changes nothing', async () => {
        const again = join(dir, name, 'again.img');
        const result = await piimg(['inject', out, '-o', again, '--config', join(dir, name, 'device.yaml'), '--var', 'device.id=0007', '--json'], env);
        expect(result.code).toBe(0);
        expect(JSON.parse(result.stdout).changes).toEqual([]);
        expect(sha256(again)).toBe(sha256(out));
      });
    });
  }
});

describe('piimg inject with a bad configuration', () => {
  it('fails before touching anything and leaves no output', async () => {
    const work = join(dir, 'bad');
    mkdirSync(work, { recursive: true });
    const base = await rawFixture('pi-bookworm', work);
    const cases: [string, RegExp][] = [
      ['hostnme: typo\n', /hostnme/],
      ['hostname: "bad_name!"\n', /hostname/],
      ['wifi: { country: DE, networks: [{ ssid: x, psk: "123" }] }\n', /psk/],
      ['files: [{ source: ./missing-dir, target: /opt/x }]\n', /missing-dir/],
      ['ssh: { authorizedKeys: ["not a key"] }\n', /authorizedKeys/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(join(work, 'bad.yaml'), text);
      const out = join(work, 'out.img');
      const result = await piimg(['inject', base, '-o', out, '--config', join(work, 'bad.yaml')], env);
      expect(result.code, text).toBe(3);
      expect(result.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
    // The configuration loads while the base opens: its error wins over a missing base,
    // and stops the decompression of a compressed one.
    for (const input of [join(work, 'missing.img'), join(repoRoot, 'fixtures', 'images', 'pi-bookworm.img.xz')]) {
      const result = await piimg(['inject', input, '-o', join(work, 'out.img'), '--config', join(work, 'bad.yaml')], env);
      expect(result.code, input).toBe(3);
      expect(result.stderr).toMatch(/authorizedKeys/);
    }
    expect(readdirSync(work).sort()).toEqual(['bad.yaml', 'pi-bookworm.img']);
  });
});
