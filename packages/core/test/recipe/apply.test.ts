import { mkdir, mkdtemp, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type LoadedConfig } from '../../src/config/index.js';
import type { DeviceConfigInput } from '../../src/config/schema.js';
import { verifySha512Crypt, wifiPsk, wireguardPublicKey } from '../../src/crypto/index.js';
import { isPiimgError } from '../../src/errors.js';
import { applyConfig, type ApplyReport } from '../../src/recipe/index.js';
import { MemoryVolume } from '../support/memory-volume.js';
import { bookwormRoot, bootVolume, bullseyeRoot, counterRandom, DISK_ID, fixedClock } from './fixtures.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0Zq7Xxu9sK6m6Yf1oR3c1B2v7kq1n0yYx5Z9m4c8d admin@hub';
const PEER_KEY = wireguardPublicKey(Buffer.alloc(32, 9).toString('base64'));
const SECRETS = {
  userPassword: 'correct horse battery',
  wifiPassword: 'wifi-secret-passphrase',
  psk: 'ab'.repeat(32),
};

let hostDir: string;

beforeAll(async () => {
  hostDir = await mkdtemp(join(tmpdir(), 'piimg-recipe-'));
  await mkdir(join(hostDir, 'agent/bin'), { recursive: true });
  await writeFile(join(hostDir, 'agent/bin/agent'), '#!/bin/sh\necho agent\n');
  await chmod(join(hostDir, 'agent/bin/agent'), 0o755);
  await writeFile(join(hostDir, 'agent/agent.toml'), 'interval = 5\n');
  await symlink('bin/agent', join(hostDir, 'agent/current'));
  await symlink('agent', join(hostDir, 'agent-link'));
  await writeFile(join(hostDir, 'agent.service'), '[Unit]\nDescription=Agent\n\n[Service]\nExecStart=/opt/agent/bin/agent\n\n[Install]\nWantedBy=multi-user.target\n');
});

afterAll(async () => {
  await rm(hostDir, { recursive: true, force: true });
});

function load(input: DeviceConfigInput): LoadedConfig {
  return { config: parseConfig(input, { baseDir: hostDir }), baseDir: hostDir, sources: [] };
}

const fullConfig: DeviceConfigInput = {
  hostname: 'dev-0001',
  user: { name: 'pi', password: SECRETS.userPassword },
  ssh: { enabled: true, passwordAuthentication: false, authorizedKeys: [KEY] },
  wifi: { country: 'DE', networks: [{ ssid: 'Home', password: SECRETS.wifiPassword }, { ssid: 'Hidden Lab', psk: SECRETS.psk, hidden: true }] },
  wireguard: {
    interface: 'wg0',
    privateKey: 'generate',
    address: '10.10.0.5/24',
    dns: '10.10.0.1',
    peers: [{ publicKey: PEER_KEY, endpoint: 'vpn.example.com:51820', allowedIps: ['10.10.0.0/24'], persistentKeepalive: 25 }],
  },
  timezone: 'Europe/Berlin',
  locale: 'en_US.UTF-8',
  keyboard: 'us',
  services: { enable: ['agent.service'], disable: ['bluetooth.service'], mask: ['systemd-timesyncd.service'] },
  files: [
    { source: './agent', target: '/opt/agent', owner: 'pi:pi' },
    { source: './agent.service', target: '/etc/systemd/system/agent.service', mode: '0644' },
    { target: '/etc/agent/project.json', content: '{"project":"p-42"}', mode: '0640', owner: 'root:adm' },
    { target: '/boot/firmware/agent.txt', content: 'on the boot partition\n' },
  ],
  boot: {
    config: { set: { dtparam: ['i2c_arm=on', 'audio=off'], enable_uart: '1', dtoverlay: ['vc4-kms-v3d,cma-128'] } },
    cmdline: { append: ['quiet', 'loglevel=3'], remove: ['fsck.repair='] },
  },
};

async function target(kind: 'bookworm' | 'bullseye' = 'bookworm') {
  const root = kind === 'bookworm' ? await bookwormRoot() : await bullseyeRoot();
  const boot = await bootVolume();
  const disk = { id: DISK_ID };
  return {
    root,
    boot,
    disk,
    target: {
      root,
      boot,
      get diskId() {
        return disk.id;
      },
      setDiskId: (id: string) => {
        disk.id = id;
      },
    },
  };
}

const options = () => ({ now: fixedClock, random: counterRandom(7) });

async function mode(volume: MemoryVolume, path: string): Promise<string> {
  const stats = await volume.lstat(path);
  return `${(stats.mode & 0o7777).toString(8)} ${stats.uid}:${stats.gid}`;
}

describe('applyConfig on a Bookworm image', () => {
  let t: Awaited<ReturnType<typeof target>>;
  let report: ApplyReport;

  beforeAll(async () => {
    t = await target('bookworm');
    report = await applyConfig(t.target, load(fullConfig), options());
  });

  it('sets the host name in /etc/hostname and /etc/hosts', async () => {
    expect(await t.root.text('/etc/hostname')).toBe('dev-0001\n');
    const hosts = await t.root.text('/etc/hosts');
    expect(hosts).toContain('127.0.1.1\tdev-0001\n');
    expect(hosts).not.toContain('raspberrypi');
    expect(hosts).toContain('127.0.0.1\tlocalhost\n');
  });

  it('hashes the password into shadow and turns off the rename-user flow', async () => {
    const entry = (await t.root.text('/etc/shadow')).split('\n').find((l) => l.startsWith('pi:'))!.split(':');
    expect(entry[1]).toMatch(/^\$6\$/);
    expect(verifySha512Crypt(SECRETS.userPassword, entry[1]!)).toBe(true);
    expect(entry[2]).toBe(String(Math.floor(fixedClock().getTime() / 86_400_000)));
    expect(await mode(t.root, '/etc/shadow')).toBe('640 0:42');
    expect(await t.root.exists('/etc/systemd/system/multi-user.target.wants/userconfig.service')).toBe(false);
    expect(await t.root.readlink('/etc/systemd/system/userconfig.service')).toBe('/dev/null');
    expect(await t.root.readlink('/etc/systemd/system/getty.target.wants/getty@tty1.service')).toBe('/lib/systemd/system/getty@.service');
    expect(await t.root.exists('/etc/ssh/sshd_config.d/rename_user.conf')).toBe(false);
  });

  it('enables SSH, turns password login off and installs the keys with safe modes', async () => {
    expect(await t.root.readlink('/etc/systemd/system/multi-user.target.wants/ssh.service')).toBe('/lib/systemd/system/ssh.service');
    expect(await t.root.readlink('/etc/systemd/system/sshd.service')).toBe('/lib/systemd/system/ssh.service');
    expect(await t.root.text('/etc/ssh/sshd_config.d/00-piimg.conf')).toContain('PasswordAuthentication no\n');
    expect(await t.root.text('/home/pi/.ssh/authorized_keys')).toBe(KEY + '\n');
    expect(await mode(t.root, '/home/pi/.ssh')).toBe('700 1000:1000');
    expect(await mode(t.root, '/home/pi/.ssh/authorized_keys')).toBe('600 1000:1000');
  });

  it('writes NetworkManager keyfiles 0600 with derived PSKs, the country and rfkill unblock', async () => {
    const dir = '/etc/NetworkManager/system-connections';
    const names = (await t.root.readdir(dir)).map((e) => e.name).sort();
    expect(names).toHaveLength(2);
    const home = await t.root.text(`${dir}/${names.find((n) => n.startsWith('Home'))}`);
    expect(home).toContain('ssid=Home\n');
    expect(home).toContain(`psk=${wifiPsk(SECRETS.wifiPassword, 'Home')}\n`);
    expect(home).not.toContain(SECRETS.wifiPassword);
    expect(home).toMatch(/uuid=[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n/);
    const hidden = await t.root.text(`${dir}/${names.find((n) => n.startsWith('Hidden'))}`);
    expect(hidden).toContain('hidden=true\n');
    expect(hidden).toContain(`psk=${SECRETS.psk}\n`);
    for (const name of names) expect(await mode(t.root, `${dir}/${name}`)).toBe('600 0:0');
    expect(await t.boot.text('/cmdline.txt')).toContain(' cfg80211.ieee80211_regdom=DE');
    expect(await t.root.text('/var/lib/systemd/rfkill/platform-3f300000.mmcnr:wlan')).toBe('0\n');
    expect(await t.root.exists('/etc/wpa_supplicant/wpa_supplicant.conf')).toBe(false);
  });

  it('writes the wg-quick config 0600, enables it and reports the public key', async () => {
    const conf = await t.root.text('/etc/wireguard/wg0.conf');
    const privateKey = /PrivateKey = (\S+)/.exec(conf)![1]!;
    expect(report.outputs.wireguardPublicKey).toBe(wireguardPublicKey(privateKey));
    expect(conf).toContain('Address = 10.10.0.5/24\nDNS = 10.10.0.1\n');
    expect(conf).toContain(`[Peer]\nPublicKey = ${PEER_KEY}\nEndpoint = vpn.example.com:51820\nAllowedIPs = 10.10.0.0/24\nPersistentKeepalive = 25\n`);
    expect(await mode(t.root, '/etc/wireguard/wg0.conf')).toBe('600 0:0');
    expect(await mode(t.root, '/etc/wireguard')).toBe('700 0:0');
    expect(await t.root.readlink('/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service')).toBe('/lib/systemd/system/wg-quick@.service');
    expect(report.warnings.join('\n')).toMatch(/resolvconf/);
  });

  it('sets timezone, locale and keyboard, keeping the other lines', async () => {
    expect(await t.root.text('/etc/timezone')).toBe('Europe/Berlin\n');
    expect(await t.root.readlink('/etc/localtime')).toBe('/usr/share/zoneinfo/Europe/Berlin');
    expect(await t.root.text('/etc/default/locale')).toBe('#  File generated by update-locale\nLANG=en_US.UTF-8\n');
    expect(await t.root.text('/etc/locale.gen')).toContain('\nen_US.UTF-8 UTF-8\n');
    expect(await t.root.text('/etc/locale.gen')).toContain('# de_DE.UTF-8 UTF-8');
    const keyboard = await t.root.text('/etc/default/keyboard');
    expect(keyboard).toContain('XKBLAYOUT="us"\n');
    expect(keyboard).toContain('XKBMODEL="pc105"\n');
    expect(keyboard).toContain('BACKSPACE="guess"\n');
  });

  it('copies files and trees with modes and owners resolved through the image', async () => {
    expect(await mode(t.root, '/opt/agent')).toBe('755 1000:1000');
    expect(await mode(t.root, '/opt/agent/bin/agent')).toBe('755 1000:1000');
    expect(await mode(t.root, '/opt/agent/agent.toml')).toBe('644 1000:1000');
    expect(await t.root.readlink('/opt/agent/current')).toBe('bin/agent');
    expect(await t.root.text('/etc/agent/project.json')).toBe('{"project":"p-42"}');
    expect(await mode(t.root, '/etc/agent/project.json')).toBe('640 0:4');
    expect(await t.boot.text('/agent.txt')).toBe('on the boot partition\n');
    expect(await t.root.exists('/boot/firmware/agent.txt')).toBe(false);
  });

  it('enables, disables and masks services from their [Install] sections', async () => {
    expect(await t.root.readlink('/etc/systemd/system/multi-user.target.wants/agent.service')).toBe('/etc/systemd/system/agent.service');
    expect(await t.root.exists('/etc/systemd/system/bluetooth.target.wants/bluetooth.service')).toBe(false);
    expect((await t.root.lstat('/etc/systemd/system/dbus-org.bluez.service').catch(() => undefined))).toBeUndefined();
    expect(await t.root.readlink('/etc/systemd/system/systemd-timesyncd.service')).toBe('/dev/null');
  });

  it('edits config.txt and cmdline.txt and keeps everything else', async () => {
    const config = await t.boot.text('/config.txt');
    expect(config).toContain('\ndtparam=audio=off\n');
    expect(config).not.toContain('dtparam=audio=on');
    expect(config).toContain('\ndtoverlay=vc4-kms-v3d,cma-128\n');
    expect(config).toContain('#dtparam=i2c_arm=on');
    expect(config).toContain('[cm5]\ndtoverlay=dwc2,dr_mode=host\n');
    expect(config.slice(config.lastIndexOf('[all]'))).toBe('[all]\ndtparam=i2c_arm=on\nenable_uart=1\n');
    expect(await t.boot.text('/cmdline.txt')).toBe(
      `console=serial0,115200 console=tty1 root=PARTUUID=${DISK_ID}-02 rootfstype=ext4 rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot cfg80211.ieee80211_regdom=DE loglevel=3\n`,
    );
  });

  it('never puts a secret into the report', () => {
    const json = JSON.stringify(report);
    const conf = /PrivateKey = (\S+)/;
    void conf;
    for (const secret of [SECRETS.userPassword, SECRETS.wifiPassword, SECRETS.psk, wifiPsk(SECRETS.wifiPassword, 'Home'), '$6$']) {
      expect(json).not.toContain(secret);
    }
    expect(report.changes.length).toBeGreaterThan(20);
    expect(report.changes.every((c) => c.volume === 'boot' || c.volume === 'root')).toBe(true);
  });

  it('keeps the private key out of the report', async () => {
    const privateKey = /PrivateKey = (\S+)/.exec(await t.root.text('/etc/wireguard/wg0.conf'))![1]!;
    expect(JSON.stringify(report)).not.toContain(privateKey);
  });

  it('changes nothing when applied a second time', async () => {
    const before = t.root.snapshot() + t.boot.snapshot();
    // A different random source: the kept hash and key must not depend on it.
    const second = await applyConfig(t.target, load(fullConfig), { now: fixedClock, random: counterRandom(99) });
    expect(second.changes).toEqual([]);
    expect(t.root.snapshot() + t.boot.snapshot()).toBe(before);
    expect(second.outputs.wireguardPublicKey).toBe(report.outputs.wireguardPublicKey);
  });
});

describe('applyConfig on a Bullseye image', () => {
  it('writes wpa_supplicant.conf, uses /boot and /lib units, and is idempotent', async () => {
    const t = await target('bullseye');
    const config = { ...fullConfig, services: { disable: ['bluetooth.service'] }, files: [{ target: '/boot/hello.txt', content: 'hi' }] };
    const report = await applyConfig(t.target, load(config), options());
    const conf = await t.root.text('/etc/wpa_supplicant/wpa_supplicant.conf');
    expect(conf).toContain('country=DE\n');
    expect(conf).toContain(`network={\n\tssid="Home"\n\tpsk=${wifiPsk(SECRETS.wifiPassword, 'Home')}\n}`);
    expect(conf).toContain(`network={\n\tssid="Hidden Lab"\n\tscan_ssid=1\n\tpsk=${SECRETS.psk}\n}`);
    expect(conf).not.toContain(SECRETS.wifiPassword);
    expect(await mode(t.root, '/etc/wpa_supplicant/wpa_supplicant.conf')).toBe('600 0:0');
    expect(await t.root.exists('/etc/NetworkManager/system-connections')).toBe(false);
    expect(await t.boot.text('/hello.txt')).toBe('hi');
    expect(await t.root.readlink('/etc/systemd/system/multi-user.target.wants/ssh.service')).toBe('/lib/systemd/system/ssh.service');
    expect(await t.root.readlink('/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service')).toBe('/lib/systemd/system/wg-quick@.service');
    expect(report.warnings.join('\n')).not.toMatch(/wg-quick@\.service/);
    const before = t.root.snapshot() + t.boot.snapshot();
    const second = await applyConfig(t.target, load(config), options());
    expect(second.changes).toEqual([]);
    expect(t.root.snapshot() + t.boot.snapshot()).toBe(before);
  });
});

describe('Wi-Fi names that are not plain text', () => {
  it('writes byte-list SSIDs in keyfiles and hex SSIDs in wpa_supplicant.conf', async () => {
    const ssid = 'Café;"Gäste"';
    const nm = await target('bookworm');
    await applyConfig(nm.target, load({ wifi: { country: 'FR', networks: [{ ssid }] } }), options());
    const dir = '/etc/NetworkManager/system-connections';
    const [file] = await nm.root.readdir(dir);
    const keyfile = await nm.root.text(`${dir}/${file!.name}`);
    expect(file!.name).toMatch(/^Caf_+G_+ste_-[0-9a-f]{6}\.nmconnection$/);
    expect(keyfile).toContain(`ssid=${[...Buffer.from(ssid)].map((b) => `${b};`).join('')}\n`);
    expect(keyfile).toMatch(/\nid=wifi-[0-9a-f]{8}\n/);
    expect(keyfile).not.toContain('[wifi-security]');
    const wpa = await target('bullseye');
    await applyConfig(wpa.target, load({ wifi: { country: 'FR', networks: [{ ssid }] } }), options());
    const conf = await wpa.root.text('/etc/wpa_supplicant/wpa_supplicant.conf');
    expect(conf).toContain(`\tssid=${Buffer.from(ssid).toString('hex')}\n\tkey_mgmt=NONE\n`);
  });
});

describe('user recipe', () => {
  it('creates a new user with its group, gshadow, supplementary groups and a home from /etc/skel', async () => {
    // uid 1000 is a configured user here (no rename-user flow installed), so it stays.
    const root = await bookwormRoot({ userconf: false });
    const t = { root, target: { root, boot: await bootVolume() } };
    await applyConfig(t.target, load({ user: { name: 'fleet', passwordHash: '$6$abc$' + 'x'.repeat(86) } }), options());
    expect((await t.root.text('/etc/passwd')).trim().split('\n').pop()).toBe('fleet:x:1001:1001:,,,:/home/fleet:/bin/bash');
    expect(await t.root.text('/etc/group')).toContain('\nfleet:x:1001:\n');
    expect(await t.root.text('/etc/group')).toContain('\nsudo:x:27:pi,fleet\n');
    expect(await t.root.text('/etc/gshadow')).toContain('\nfleet:!::\n');
    expect(await t.root.text('/etc/gshadow')).toContain('\nsudo:*::pi,fleet\n');
    expect(await t.root.text('/etc/shadow')).toContain(`\nfleet:$6$abc$${'x'.repeat(86)}:`);
    expect(await mode(t.root, '/home/fleet')).toBe('700 1001:1001');
    expect(await mode(t.root, '/home/fleet/.bashrc')).toBe('644 1001:1001');
    expect(await mode(t.root, '/home/fleet/.config')).toBe('755 1001:1001');
  });

  it('keeps an existing hash that matches the password, and replaces one that does not', async () => {
    const t = await target('bookworm');
    await applyConfig(t.target, load({ user: { name: 'pi', password: 'first-password' } }), options());
    const hashOf = async () => (await t.root.text('/etc/shadow')).split('\n').find((l) => l.startsWith('pi:'))!.split(':')[1]!;
    const first = await hashOf();
    await applyConfig(t.target, load({ user: { name: 'pi', password: 'first-password' } }), { now: fixedClock, random: counterRandom(3) });
    expect(await hashOf()).toBe(first);
    await applyConfig(t.target, load({ user: { name: 'pi', password: 'second-password' } }), options());
    expect(verifySha512Crypt('second-password', await hashOf())).toBe(true);
  });

  it('adds an existing user to listed groups without touching its other memberships', async () => {
    const t = await target('bookworm');
    const report = await applyConfig(t.target, load({ user: { name: 'pi', groups: ['www-data', 'docker'] } }), options());
    expect(await t.root.text('/etc/group')).toContain('\nwww-data:x:33:pi\n');
    expect(await t.root.text('/etc/group')).toContain('\nsudo:x:27:pi\n');
    expect(await t.root.text('/etc/gshadow')).toContain('\nwww-data:*::pi\n');
    expect(report.warnings.join('\n')).toMatch(/group docker does not exist/);
  });

  it('leaves images without the rename-user flow alone', async () => {
    const root = await bookwormRoot({ userconf: false });
    const boot = await bootVolume();
    const report = await applyConfig({ root, boot }, load({ user: { name: 'pi', password: 'raspberry1' } }), options());
    expect(report.changes.map((c) => c.path)).toEqual(['/etc/shadow']);
  });
});

describe('wireguard recipe', () => {
  it('keeps a key already in the image and warns when wg-quick is missing', async () => {
    const root = await bookwormRoot({ wireguard: false });
    const boot = await bootVolume();
    const existing = Buffer.alloc(32, 0x41).toString('base64');
    await root.populate({ '/etc/wireguard/wg0.conf': { content: `[Interface]\nPrivateKey = ${existing}\n`, mode: 0o600 } });
    const report = await applyConfig({ root, boot }, load({ wireguard: { address: '10.0.0.2/32', peers: [] } }), options());
    expect(report.outputs.wireguardPublicKey).toBe(wireguardPublicKey(existing));
    expect(report.warnings.join('\n')).toMatch(/no wg-quick@\.service/);
    expect(await root.exists('/etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service')).toBe(false);
    expect(JSON.stringify(report)).not.toContain(existing);
  });

  it('uses a given private key', async () => {
    const { target: tg, root } = await target();
    const key = Buffer.alloc(32, 0x22).toString('base64');
    const report = await applyConfig(tg, load({ wireguard: { privateKey: key, address: ['10.0.0.2/32', 'fd00::2/128'] } }), options());
    expect(await root.text('/etc/wireguard/wg0.conf')).toContain(`PrivateKey = ${key}\nAddress = 10.0.0.2/32, fd00::2/128\n`);
    expect(JSON.stringify(report)).not.toContain(key);
  });
});

describe('services', () => {
  it('enables Also= units and instances of templates', async () => {
    const { target: tg, root } = await target();
    await applyConfig(tg, load({ services: { enable: ['avahi-daemon.service', 'getty@tty2.service'] } }), options());
    expect(await root.readlink('/etc/systemd/system/multi-user.target.wants/avahi-daemon.service')).toBe('/lib/systemd/system/avahi-daemon.service');
    expect(await root.readlink('/etc/systemd/system/sockets.target.wants/avahi-daemon.socket')).toBe('/lib/systemd/system/avahi-daemon.socket');
    expect(await root.readlink('/etc/systemd/system/getty.target.wants/getty@tty2.service')).toBe('/lib/systemd/system/getty@.service');
  });

  it('warns about static units', async () => {
    const { target: tg } = await target();
    const report = await applyConfig(tg, load({ services: { enable: ['systemd-timesyncd.service'] } }), options());
    expect(report.warnings.join('\n')).toMatch(/no \[Install\] section/);
  });
});

describe('boot seeds and disk identifier', () => {
  it('writes ssh, userconf.txt and a cloud-init seed without clear-text secrets', async () => {
    const t = await target();
    const report = await applyConfig(
      t.target,
      load({ ...fullConfig, files: [], services: {}, boot: { seeds: { ssh: true, userconf: true, cloudInit: true } } }),
      options(),
    );
    expect(await t.boot.text('/ssh')).toBe('');
    const userconf = await t.boot.text('/userconf.txt');
    expect(userconf).toMatch(/^pi:\$6\$[^:\n]+\n$/);
    expect(verifySha512Crypt(SECRETS.userPassword, userconf.trim().slice(3))).toBe(true);
    const userData = await t.boot.text('/user-data');
    expect(userData.startsWith('#cloud-config\n')).toBe(true);
    expect(userData).toContain('hostname: dev-0001');
    expect(userData).toContain(KEY);
    const network = await t.boot.text('/network-config');
    expect(network).toContain('regulatory-domain: DE');
    expect(network).toContain(wifiPsk(SECRETS.wifiPassword, 'Home'));
    expect(network + userData).not.toContain(SECRETS.wifiPassword);
    expect(await t.boot.text('/meta-data')).toMatch(/^instance-id: piimg-[0-9a-f]{16}\n$/);
    expect(JSON.stringify(report)).not.toContain(userconf.trim().slice(3));
  });

  it('rewrites PARTUUIDs in cmdline.txt and fstab with a new disk id, once', async () => {
    const t = await target();
    const report = await applyConfig(t.target, load({ hostname: 'dev-0001', diskId: 'hostname' }), options());
    const id = report.outputs.diskId!;
    expect(id).toMatch(/^[0-9a-f]{8}$/);
    expect(id).not.toBe(DISK_ID);
    expect(t.disk.id).toBe(id);
    expect(await t.boot.text('/cmdline.txt')).toContain(`root=PARTUUID=${id}-02 `);
    expect(await t.root.text('/etc/fstab')).toContain(`PARTUUID=${id}-01  /boot/firmware`);
    expect(await t.root.text('/etc/fstab')).not.toContain(DISK_ID);
    const second = await applyConfig(t.target, load({ hostname: 'dev-0001', diskId: 'hostname' }), options());
    expect(second.changes).toEqual([]);
    expect(second.outputs.diskId).toBe(id);
  });
});

describe('preflight', () => {
  it('checks file sources of configs built with parseConfig', async () => {
    const t = await target();
    const before = t.root.snapshot() + t.boot.snapshot();
    const loaded = load({ hostname: 'changed-first', files: [{ source: './missing-here', target: '/opt/x' }] });
    await expect(applyConfig(t.target, loaded, options())).rejects.toThrow(/files\[0\]\.source: .*missing-here does not exist/);
    // Found before anything is written, not when the file's turn comes.
    expect(t.root.snapshot() + t.boot.snapshot()).toBe(before);
  });

  it('copies each file of a tree whole, whatever the sizes before it', async () => {
    // Host files are read into one reused buffer (files.ts SourceReader); a large file
    // before a small one, an empty one and one above the pooled size must all arrive whole.
    const sizes = { 'a.bin': 300_000, 'b.bin': 5, 'c.bin': 0, 'd.bin': (9 << 20) + 3, 'e.bin': 70_000 };
    const dir = join(hostDir, 'sized');
    await mkdir(dir, { recursive: true });
    const contents = new Map<string, Uint8Array>();
    let seed = 1;
    for (const [name, size] of Object.entries(sizes)) {
      const bytes = new Uint8Array(size).map(() => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff);
      contents.set(name, bytes);
      await writeFile(join(dir, name), bytes);
    }
    const t = await target();
    await applyConfig(t.target, load({ files: [{ source: './sized', target: '/opt/sized' }] }), options());
    for (const [name, bytes] of contents) expect(Buffer.from(await t.root.readFile(`/opt/sized/${name}`)).equals(Buffer.from(bytes)), name).toBe(true);
  });

  it('follows a source given as a symlink to a directory', async () => {
    const t = await target();
    await applyConfig(t.target, load({ files: [{ source: './agent-link', target: '/opt/linked' }] }), options());
    expect(await t.root.text('/opt/linked/agent.toml')).toBe('interval = 5\n');
  });

  it('fails with E_CONFIG before touching the image', async () => {
    const t = await target();
    const before = t.root.snapshot() + t.boot.snapshot();
    const bad = load({
      hostname: 'new-name',
      timezone: 'Mars/Olympus',
      services: { enable: ['nothing.service'] },
      files: [{ target: '/x', content: 'x', owner: 'ghost:nobody' }, { target: '/etc/ssh', content: 'x' }],
      diskId: 'hostname',
    });
    let caught: unknown;
    try {
      await applyConfig({ root: t.root, boot: t.boot }, bad, options());
    } catch (error) {
      caught = error;
    }
    expect(isPiimgError(caught, 'E_CONFIG')).toBe(true);
    const message = (caught as Error).message;
    expect(message).toContain('timezone: Mars/Olympus');
    expect(message).toContain('services.enable[0]: the image has no unit file for nothing.service');
    expect(message).toContain('files[0].owner: user "ghost"');
    expect(message).toContain('files[0].owner: group "nobody"');
    expect(message).toContain('diskId: the image has no MBR disk identifier');
    expect(message).toContain('files[1].target: /etc/ssh is a directory in the image');
    expect(t.root.snapshot() + t.boot.snapshot()).toBe(before);
  });
});
