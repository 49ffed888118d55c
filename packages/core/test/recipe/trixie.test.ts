import { pbkdf2Sync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseConfig, type LoadedConfig } from '../../src/config/index.js';
import type { DeviceConfigInput } from '../../src/config/schema.js';
import { verifySha512Crypt, wireguardPublicKey } from '../../src/crypto/index.js';
import { isPiimgError } from '../../src/errors.js';
import { Editor } from '../../src/recipe/context.js';
import { applyConfig } from '../../src/recipe/index.js';
import { detectRelease } from '../../src/recipe/release.js';
import { setKeyfileValue } from '../../src/recipe/network.js';
import type { MemoryVolume } from '../support/memory-volume.js';
import { keyfileBoolean, keyfileList, keyfileSsid, keyfileString, parseKeyfile } from '../support/nm-keyfile.js';
import { bookwormRoot, bootVolume, bullseyeRoot, counterRandom, fixedClock, trixieBootVolume, trixieRoot } from './fixtures.js';

const PEER_KEY = wireguardPublicKey(Buffer.alloc(32, 9).toString('base64'));
const PSK_KEY = Buffer.alloc(32, 3).toString('base64');
const options = () => ({ now: fixedClock, random: counterRandom(11) });
const load = (input: DeviceConfigInput): LoadedConfig => ({ config: parseConfig(input, { baseDir: '/' }), baseDir: '/', sources: [] });

async function trixie() {
  const root = await trixieRoot();
  const boot = await trixieBootVolume();
  return { root, boot, target: { root, boot } };
}

async function mode(volume: MemoryVolume, path: string): Promise<string> {
  const stats = await volume.lstat(path);
  return `${(stats.mode & 0o7777).toString(8)} ${stats.uid}:${stats.gid}`;
}

const line = async (root: MemoryVolume, path: string, name: string) =>
  (await root.text(path)).split('\n').find((l) => l.startsWith(`${name}:`));

describe('release detection', () => {
  it('names release, flavour and first-boot mechanisms of each release', async () => {
    const trixieRelease = await detectRelease(new Editor(await trixieBootVolume(), await trixieRoot()));
    expect(trixieRelease).toMatchObject({
      id: 'debian',
      version: 13,
      codename: 'trixie',
      flavour: 'Raspberry Pi OS',
      network: 'networkmanager',
      bootMount: '/boot/firmware',
      firstBoot: ['cloud-init', 'userconf'],
      cloudInit: true,
      firstBootPresets: true,
    });
    const bookworm = await detectRelease(new Editor(await bootVolume(), await bookwormRoot()));
    expect(bookworm).toMatchObject({ version: 12, firstBoot: ['firstboot-init', 'userconf'], cloudInit: false, firstBootPresets: true });
    const bullseye = await detectRelease(new Editor(await bootVolume(), await bullseyeRoot()));
    expect(bullseye).toMatchObject({ id: 'raspbian', flavour: 'Raspberry Pi OS', version: 11, network: 'wpa_supplicant', bootMount: '/boot' });
    const plain = await bookwormRoot({ userconf: false });
    await plain.populate({ '/etc/machine-id': '0123456789abcdef0123456789abcdef\n' });
    expect(await detectRelease(new Editor(await bootVolume(), plain))).toMatchObject({ flavour: 'Debian GNU/Linux', firstBootPresets: false });
  });
});

describe('user on Trixie', () => {
  it('makes the placeholder usable when the configured name is its own', async () => {
    const t = await trixie();
    await applyConfig(t.target, load({ user: { name: 'pi', password: 'fleet-pass-1' } }), options());
    expect(await line(t.root, '/etc/passwd', 'pi')).toBe('pi:x:1000:1000:,,,:/home/pi:/bin/bash');
    expect(verifySha512Crypt('fleet-pass-1', (await line(t.root, '/etc/shadow', 'pi'))!.split(':')[1]!)).toBe(true);
    expect(await t.root.readlink('/etc/systemd/system/userconfig.service')).toBe('/dev/null');
    expect(await t.root.exists('/etc/systemd/system/multi-user.target.wants/userconfig.service')).toBe(false);
    expect((await t.root.lstat('/etc/systemd/system/getty.target.wants/getty@tty1.service')).type).toBe('symlink');
    expect(await t.root.exists('/etc/ssh/sshd_config.d/rename_user.conf')).toBe(false);
  });

  it('renames the placeholder to the configured user as rename-user does', async () => {
    const t = await trixie();
    await applyConfig(t.target, load({ user: { name: 'ops', password: 'fleet-pass-1' } }), options());
    expect(await line(t.root, '/etc/passwd', 'ops')).toBe('ops:x:1000:1000:,,,:/home/ops:/bin/bash');
    for (const path of ['/etc/passwd', '/etc/shadow', '/etc/group', '/etc/gshadow', '/etc/subuid', '/etc/subgid']) {
      const text = await t.root.text(path);
      expect(text, path).not.toMatch(/(^|[:,])pi(,|:|$)/m);
    }
    expect(await t.root.text('/etc/subuid')).toBe('ops:100000:65536\n');
    expect(await t.root.text('/etc/subgid')).toBe('ops:100000:65536\n');
    expect(await t.root.text('/etc/group')).toContain('\nsudo:x:27:ops\n');
    expect(await t.root.text('/etc/group')).toContain('\nops:x:1000:\n');
    expect(await t.root.text('/etc/gshadow')).toContain('\nsudo:*::ops\n');
    expect(verifySha512Crypt('fleet-pass-1', (await line(t.root, '/etc/shadow', 'ops'))!.split(':')[1]!)).toBe(true);
    expect(await t.root.exists('/home/pi')).toBe(false);
    expect(await mode(t.root, '/home/ops')).toBe('700 1000:1000');
    expect(await t.root.text('/home/ops/.bashrc')).toBe('# ~/.bashrc\n');
    expect(await t.root.readlink('/etc/systemd/system/userconfig.service')).toBe('/dev/null');
    // A second run finds ops and changes nothing.
    const again = await applyConfig(t.target, load({ user: { name: 'ops', password: 'fleet-pass-1' } }), options());
    expect(again.changes).toEqual([]);
  });

  it('refuses a files owner naming the placeholder that is being renamed', async () => {
    const t = await trixie();
    const before = await t.root.text('/etc/passwd');
    let caught: unknown;
    try {
      await applyConfig(t.target, load({ user: { name: 'ops' }, files: [{ target: '/etc/x', content: 'x', owner: 'pi:pi' }] }), options());
    } catch (error) {
      caught = error;
    }
    expect(isPiimgError(caught) && caught.code).toBe('E_CONFIG');
    expect(String(caught)).toMatch(/renamed to ops/);
    expect(await t.root.text('/etc/passwd')).toBe(before);
  });

  it('tells cloud-init to leave users, host name and locale alone', async () => {
    const t = await trixie();
    await applyConfig(t.target, load({ hostname: 'sensor-0001', user: { name: 'pi', password: 'fleet-pass-1' }, locale: 'en_US.UTF-8', timezone: 'Europe/Berlin' }), options());
    const dropIn = await t.root.text('/etc/cloud/cloud.cfg.d/99_zz-piimg.cfg');
    expect(dropIn).toMatch(/^preserve_hostname: true$/m);
    expect(dropIn).toMatch(/^manage_etc_hosts: false$/m);
    expect(dropIn).toMatch(/^users: \[\]$/m);
    expect(dropIn).toMatch(/^locale: en_US\.UTF-8$/m);
    // The image's cloud config sets no timezone, so cloud-init's timezone module does not run.
    expect(dropIn).not.toMatch(/^timezone:/m);
    await t.root.populate({ '/etc/cloud/cloud.cfg.d/99_default.cfg': 'timezone: Europe/London\nkeyboard:\n  layout: gb\n' });
    await applyConfig(t.target, load({ timezone: 'Europe/Berlin', keyboard: 'de' }), options());
    const second = await t.root.text('/etc/cloud/cloud.cfg.d/99_zz-piimg.cfg');
    expect(second).toMatch(/^timezone: Europe\/Berlin$/m);
    expect(second).toMatch(/^keyboard:\n {2}layout: "de"$/m);
    // It sorts after the image's own files, so its keys win.
    expect(['99_default.cfg', '99_raspberry-pi.cfg', '99_zz-piimg.cfg'].sort().pop()).toBe('99_zz-piimg.cfg');
    const bookworm = await bookwormRoot();
    await applyConfig({ root: bookworm, boot: await bootVolume() }, load({ hostname: 'x1', user: { name: 'pi' } }), options());
    expect(await bookworm.exists('/etc/cloud')).toBe(false);
  });
});

describe('Wi-Fi on Trixie', () => {
  it('turns the radio on in NetworkManager.state and rfkill, keeping the other state keys', async () => {
    const t = await trixie();
    await applyConfig(t.target, load({ wifi: { country: 'DE', networks: [{ ssid: 'Plant', password: 'wifi-password-1' }] } }), options());
    expect(await t.root.text('/var/lib/NetworkManager/NetworkManager.state')).toBe('[main]\nNetworkingEnabled=true\nWirelessEnabled=true\nWWANEnabled=true\n');
    expect(await t.root.text('/var/lib/systemd/rfkill/platform-fe300000.mmcnr:wlan')).toBe('0\n');
    expect(await t.boot.text('/cmdline.txt')).toContain(' cfg80211.ieee80211_regdom=DE');
  });

  it('edits one key of a GKeyFile group, adding key or group when missing', () => {
    expect(setKeyfileValue('[main]\nA=1\n\n[other]\nB=2\n', 'main', 'W', 'true')).toBe('[main]\nA=1\nW=true\n\n[other]\nB=2\n');
    expect(setKeyfileValue('', 'main', 'W', 'true')).toBe('[main]\nW=true\n');
    expect(setKeyfileValue('[other]\nB=2\n', 'main', 'W', 'true')).toBe('[other]\nB=2\n\n[main]\nW=true\n');
  });
});

describe('NetworkManager keyfiles, read as NetworkManager reads them', () => {
  it('the GKeyFile reader follows the format rules', () => {
    const file = parseKeyfile('# c\n[a]\nk = v\\sw\\\\\nl=x;y\\;z;\n[b]\nk=1\n[a]\nm=2\n');
    expect(keyfileString(file, 'a', 'k')).toBe('v w\\');
    expect(keyfileList(file, 'a', 'l')).toEqual(['x', 'y;z']);
    expect(keyfileString(file, 'a', 'm')).toBe('2');
    expect(() => parseKeyfile('k=v\n')).toThrow(/before the first group/);
    expect(() => parseKeyfile('[a]\nnot a pair\n')).toThrow(/not a key-value pair/);
  });

  it('Wi-Fi profiles: type, SSID, mode, hidden, priority and the PBKDF2 PSK', async () => {
    const t = await trixie();
    const networks = [
      { ssid: 'Plant-Floor', password: 'wifi-password-1', priority: 5 },
      { ssid: 'Lab; Ünïcode', password: 'another-passphrase', hidden: true },
    ];
    await applyConfig(t.target, load({ wifi: { country: 'DE', networks } }), options());
    const dir = '/etc/NetworkManager/system-connections';
    const files = (await t.root.readdir(dir)).map((e) => e.name).filter((n) => n.endsWith('.nmconnection'));
    expect(files).toHaveLength(2);
    const bySsid = new Map<string, ReturnType<typeof parseKeyfile>>();
    for (const name of files) {
      expect(await mode(t.root, `${dir}/${name}`)).toBe('600 0:0');
      const file = parseKeyfile(await t.root.text(`${dir}/${name}`));
      bySsid.set(new TextDecoder().decode(keyfileSsid(file)), file);
    }
    for (const network of networks) {
      const file = bySsid.get(network.ssid)!;
      expect(file, network.ssid).toBeDefined();
      expect(keyfileString(file, 'connection', 'type')).toBe('wifi');
      expect(keyfileString(file, 'connection', 'id')).toBeTruthy();
      expect(keyfileString(file, 'connection', 'uuid')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(keyfileString(file, 'wifi', 'mode')).toBe('infrastructure');
      expect(keyfileBoolean(file, 'wifi', 'hidden') ?? false).toBe(network.hidden ?? false);
      expect(keyfileString(file, 'connection', 'autoconnect-priority')).toBe(network.priority === undefined ? undefined : String(network.priority));
      expect(keyfileString(file, 'wifi-security', 'key-mgmt')).toBe('wpa-psk');
      const psk = pbkdf2Sync(network.password, Buffer.from(network.ssid, 'utf8'), 4096, 32, 'sha1').toString('hex');
      expect(keyfileString(file, 'wifi-security', 'psk')).toBe(psk);
      expect(keyfileString(file, 'ipv4', 'method')).toBe('auto');
    }
  });

  it('WireGuard profile: type, interface, key, peers, addresses and DNS', async () => {
    const t = await trixie();
    const report = await applyConfig(
      t.target,
      load({
        wireguard: {
          address: ['10.10.0.11/24', 'fd00::11/64'],
          dns: ['10.10.0.1', 'fd00::1'],
          listenPort: 51821,
          mtu: 1380,
          peers: [
            { publicKey: PEER_KEY, presharedKey: PSK_KEY, endpoint: 'vpn.example.com:51820', allowedIps: ['10.10.0.0/24', 'fd00::/64'], persistentKeepalive: 25 },
          ],
        },
      }),
      options(),
    );
    const path = '/etc/NetworkManager/system-connections/wg0.nmconnection';
    expect(await mode(t.root, path)).toBe('600 0:0');
    expect(await t.root.exists('/etc/wireguard/wg0.conf')).toBe(false);
    const file = parseKeyfile(await t.root.text(path));
    expect(keyfileString(file, 'connection', 'type')).toBe('wireguard');
    expect(keyfileString(file, 'connection', 'id')).toBe('wg0');
    expect(keyfileString(file, 'connection', 'interface-name')).toBe('wg0');
    expect(keyfileBoolean(file, 'connection', 'autoconnect')).toBe(true);
    expect(wireguardPublicKey(keyfileString(file, 'wireguard', 'private-key')!)).toBe(report.outputs.wireguardPublicKey);
    expect(keyfileString(file, 'wireguard', 'listen-port')).toBe('51821');
    expect(keyfileString(file, 'wireguard', 'mtu')).toBe('1380');
    const peer = `wireguard-peer.${PEER_KEY}`;
    expect(keyfileString(file, peer, 'endpoint')).toBe('vpn.example.com:51820');
    expect(keyfileList(file, peer, 'allowed-ips')).toEqual(['10.10.0.0/24', 'fd00::/64']);
    expect(keyfileString(file, peer, 'preshared-key')).toBe(PSK_KEY);
    expect(keyfileString(file, peer, 'preshared-key-flags')).toBe('0');
    expect(keyfileString(file, peer, 'persistent-keepalive')).toBe('25');
    expect(keyfileString(file, 'ipv4', 'method')).toBe('manual');
    expect(keyfileString(file, 'ipv4', 'address1')).toBe('10.10.0.11/24');
    expect(keyfileList(file, 'ipv4', 'dns')).toEqual(['10.10.0.1']);
    expect(keyfileString(file, 'ipv6', 'method')).toBe('manual');
    expect(keyfileString(file, 'ipv6', 'address1')).toBe('fd00::11/64');
    expect(keyfileList(file, 'ipv6', 'dns')).toEqual(['fd00::1']);
    expect(JSON.stringify(report)).not.toContain(keyfileString(file, 'wireguard', 'private-key'));
    expect(JSON.stringify(report)).not.toContain(PSK_KEY);
    const v4only = await trixie();
    await applyConfig(v4only.target, load({ wireguard: { address: '10.10.0.12', peers: [] } }), options());
    const plain = parseKeyfile(await v4only.root.text(path));
    expect(keyfileString(plain, 'ipv4', 'address1')).toBe('10.10.0.12/32');
    expect(keyfileString(plain, 'ipv6', 'method')).toBe('disabled');
  });
});

describe('WireGuard method', () => {
  it('keeps a generated key in the NetworkManager profile, and carries it over from a wg-quick config', async () => {
    const t = await trixie();
    const first = await applyConfig(t.target, load({ wireguard: { address: '10.0.0.2/32' } }), options());
    const second = await applyConfig(t.target, load({ wireguard: { address: '10.0.0.2/32' } }), { now: fixedClock, random: counterRandom(99) });
    expect(second.outputs.wireguardPublicKey).toBe(first.outputs.wireguardPublicKey);
    expect(second.changes).toEqual([]);
    const other = await trixie();
    const existing = Buffer.alloc(32, 0x41).toString('base64');
    await other.root.populate({ '/etc/wireguard/wg0.conf': { content: `[Interface]\nPrivateKey = ${existing}\n`, mode: 0o600 } });
    const report = await applyConfig(other.target, load({ wireguard: { address: '10.0.0.2/32' } }), options());
    expect(report.outputs.wireguardPublicKey).toBe(wireguardPublicKey(existing));
  });

  it('uses wg-quick where the image has it, and NetworkManager when asked', async () => {
    const root = await bookwormRoot();
    await root.populate({ '/usr/lib/systemd/system/NetworkManager.service': '[Unit]\nDescription=NM\n[Install]\nWantedBy=multi-user.target\n' });
    await applyConfig({ root, boot: await bootVolume() }, load({ wireguard: { address: '10.0.0.2/32' } }), options());
    expect(await root.exists('/etc/wireguard/wg0.conf')).toBe(true);
    expect(await root.exists('/etc/NetworkManager/system-connections/wg0.nmconnection')).toBe(false);
    await applyConfig({ root, boot: await bootVolume() }, load({ wireguard: { address: '10.0.0.2/32', method: 'networkmanager' } }), options());
    expect(await root.exists('/etc/NetworkManager/system-connections/wg0.nmconnection')).toBe(true);
  });

  it('a forced method the image cannot run is E_CONFIG before any write', async () => {
    const cases: [() => Promise<{ root: MemoryVolume; boot: MemoryVolume }>, 'wg-quick' | 'networkmanager', RegExp][] = [
      [async () => ({ root: await trixieRoot(), boot: await trixieBootVolume() }), 'wg-quick', /no wg-quick@\.service/],
      [async () => ({ root: await bullseyeRoot(), boot: await bootVolume() }), 'networkmanager', /no NetworkManager\.service/],
    ];
    for (const [make, method, message] of cases) {
      const { root, boot } = await make();
      const before = await root.text('/etc/hostname');
      let caught: unknown;
      try {
        await applyConfig({ root, boot }, load({ hostname: 'changed', wireguard: { address: '10.0.0.2/32', method } }), options());
      } catch (error) {
        caught = error;
      }
      expect(isPiimgError(caught) && caught.code, method).toBe('E_CONFIG');
      expect(String(caught)).toMatch(message);
      expect(await root.text('/etc/hostname')).toBe(before);
    }
  });
});

describe('time, locale and services on Trixie', () => {
  it('writes no /etc/timezone where Debian 13 has none, and edits locale.conf through its link', async () => {
    const t = await trixie();
    await applyConfig(t.target, load({ timezone: 'Europe/Berlin', locale: 'en_US.UTF-8', keyboard: 'de' }), options());
    expect(await t.root.exists('/etc/timezone')).toBe(false);
    expect(await t.root.readlink('/etc/localtime')).toBe('/usr/share/zoneinfo/Europe/Berlin');
    expect(await t.root.readlink('/etc/default/locale')).toBe('../locale.conf');
    expect(await t.root.text('/etc/locale.conf')).toBe('LANG=en_US.UTF-8\n');
    expect(await t.root.text('/etc/default/keyboard')).toContain('XKBLAYOUT="de"');
    const bookworm = await bookwormRoot();
    await applyConfig({ root: bookworm, boot: await bootVolume() }, load({ timezone: 'Europe/Berlin' }), options());
    expect(await bookworm.text('/etc/timezone')).toBe('Europe/Berlin\n');
  });

  it('keeps units disabled through the first-boot presets with a preset file that sorts first', async () => {
    const t = await trixie();
    await applyConfig(t.target, load({ ssh: { enabled: false }, services: { disable: ['bluetooth.service'] } }), options());
    const preset = '/etc/systemd/system-preset/00-piimg.preset';
    const lines = (await t.root.text(preset)).split('\n');
    expect(lines).toContain('disable bluetooth.service');
    expect(lines).toContain('disable ssh.service');
    expect(await t.root.exists('/etc/systemd/system/bluetooth.target.wants/bluetooth.service')).toBe(false);
    // Enabling a unit later drops its disable line.
    await applyConfig(t.target, load({ ssh: { enabled: true } }), options());
    expect((await t.root.text(preset)).split('\n')).not.toContain('disable ssh.service');
    expect((await t.root.text(preset)).split('\n')).toContain('disable bluetooth.service');
  });
});

describe('which uid 1000 is a placeholder', () => {
  it('keeps a uid 1000 with a usable password, and a configured uid other than 1000, and adds the user beside it', async () => {
    const real = await trixie();
    const passwd = (await real.root.text('/etc/passwd')).replace('/home/pi:/usr/sbin/nologin', '/home/pi:/bin/bash');
    const shadow = (await real.root.text('/etc/shadow')).replace(/^pi:!:/m, `pi:$6$salt$${'x'.repeat(86)}:`);
    await real.root.populate({ '/etc/passwd': passwd, '/etc/shadow': { content: shadow, mode: 0o640, gid: 42 } });
    await applyConfig(real.target, load({ user: { name: 'ops', password: 'fleet-pass-1' } }), options());
    expect(await line(real.root, '/etc/passwd', 'pi')).toBe('pi:x:1000:1000:,,,:/home/pi:/bin/bash');
    expect(await line(real.root, '/etc/passwd', 'ops')).toBe('ops:x:1001:1001:,,,:/home/ops:/bin/bash');
    const withUid = await trixie();
    await applyConfig(withUid.target, load({ user: { name: 'ops', uid: 1500 } }), options());
    expect(await line(withUid.root, '/etc/passwd', 'pi')).toBeDefined();
    expect(await line(withUid.root, '/etc/passwd', 'ops')).toMatch(/^ops:x:1500:/);
  });

  it('renames a Bookworm placeholder (locked password, rename-user flow installed) and its sudoers line', async () => {
    const root = await bookwormRoot();
    await root.populate({ '/etc/sudoers.d/010_pi-nopasswd': { content: 'pi ALL=(ALL) NOPASSWD: ALL\n', mode: 0o440 } });
    await applyConfig({ root, boot: await bootVolume() }, load({ user: { name: 'fleet' } }), options());
    expect(await line(root, '/etc/passwd', 'fleet')).toBe('fleet:x:1000:1000:,,,:/home/fleet:/bin/bash');
    expect(await root.text('/etc/sudoers.d/010_pi-nopasswd')).toBe('fleet ALL=(ALL) NOPASSWD: ALL\n');
    expect(await mode(root, '/etc/sudoers.d/010_pi-nopasswd')).toBe('440 0:0');
  });
});
