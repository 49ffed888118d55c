import { createPrivateKey, createPublicKey, diffieHellman, pbkdf2Sync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage, sha512Crypt } from '@piimg/core';
import { main } from '../packages/cli/src/index.js';
import { piimg } from './support/cli.js';
import { fixturePath, rawFixture, testCacheDir, type FixtureName } from './support/fixtures.js';

// Claims of the README and the configuration reference, each checked by its observable effect
// in a real image: values compared with ones computed here, independently of piimg.

const dir = mkdtempSync(join(tmpdir(), 'piimg-claims-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const EPOCH = 1767225600;
const env = { PIIMG_CACHE_DIR: testCacheDir, SOURCE_DATE_EPOCH: String(EPOCH) };

const SECRETS = {
  password: 'user-password-claims-1',
  wifiPassword: 'wifi-passphrase-claims-2',
  psk: '3f'.repeat(28) + 'a1b2c3d4',
  wgPrivate: Buffer.alloc(32, 0x41).toString('base64'),
  wgPreshared: Buffer.alloc(32, 0x5a).toString('base64'),
  token: 'file-secret-token-claims-3',
};
const PEER_KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const PASSWORD_HASH = sha512Crypt('hash-only-password', 'claimsSalt');

/** 802.11i PSK: PBKDF2-HMAC-SHA1(passphrase, ssid, 4096 iterations, 32 bytes). Ref: IEEE 802.11-2020 J.4. */
const psk = (passphrase: string, ssid: string) => pbkdf2Sync(passphrase, ssid, 4096, 32, 'sha1').toString('hex');

/** X25519 public key as the scalar multiple of the base point u = 9 (RFC 7748 §6.1), through node:crypto's ECDH. */
function x25519Public(privateBase64: string): string {
  // PKCS#8 and SPKI wrappers of RFC 8410 §7 and §4.
  const privateKey = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.from(privateBase64, 'base64')]),
    format: 'der',
    type: 'pkcs8',
  });
  const basePoint = Buffer.alloc(32);
  basePoint[0] = 9;
  const publicKey = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), basePoint]), format: 'der', type: 'spki' });
  return diffieHellman({ privateKey, publicKey }).toString('base64');
}

class Capture extends Writable {
  chunks: Buffer[] = [];
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    callback();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/** The CLI in-process with stdout and stderr that claim to be a terminal (progress, log lines, colors). */
async function onTerminal(argv: string[], extraEnv: Record<string, string | undefined> = {}) {
  const stdout = new Capture(true);
  const stderr = new Capture(true);
  const all: NodeJS.ProcessEnv = { ...process.env, ...env, ...extraEnv };
  for (const [key, value] of Object.entries(extraEnv)) if (value === undefined) delete all[key];
  const code = await main(argv, { stdout, stderr, env: all, cwd: process.cwd() });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

function writeConfig(at: string, release: FixtureName): string {
  mkdirSync(join(at, 'tree', 'sub'), { recursive: true });
  writeFileSync(join(at, 'tree', 'sub', 'data.txt'), 'tree data\n');
  writeFileSync(join(at, 'token.txt'), SECRETS.token);
  writeFileSync(join(at, 'plain.txt'), 'plain content\n');
  const user = release === 'pi-bookworm' ? `password: "${SECRETS.password}"` : `passwordHash: "${PASSWORD_HASH}"`;
  const config = join(at, 'device.yaml');
  writeFileSync(
    config,
    `hostname: from-config
user: { name: pi, ${user} }
wifi:
  country: DE
  networks:
    - { ssid: "Plant Floor", password: "${SECRETS.wifiPassword}", priority: 7 }
    - { ssid: "Backup Net", psk: "${SECRETS.psk}", priority: -3 }
wireguard:
  interface: wg0
  privateKey: ${release === 'pi-bookworm' ? 'generate' : `"${SECRETS.wgPrivate}"`}
  address: 10.10.0.7/24
  listenPort: 51999
  mtu: 1380
  peers:
    - { publicKey: "${PEER_KEY}", presharedKey: "${SECRETS.wgPreshared}", endpoint: "vpn.example.com:51820", allowedIps: ["10.10.0.0/24"] }
files:
  - { source: ./token.txt, target: /etc/agent/token, mode: "0600", secret: true }
  - { source: ./plain.txt, target: /etc/agent/plain }
  - { source: ./tree, target: /opt/tree, dirMode: "0750" }
diskId: random
`,
  );
  return config;
}

/** The [section] of an INI-like text that contains `marker`. */
function sectionWith(text: string, header: RegExp, marker: string): string {
  const sections = text.split(header);
  const found = sections.find((section) => section.includes(marker));
  expect(found, `a section with ${marker}`).toBeDefined();
  return found!;
}

for (const release of ['pi-bookworm', 'pi-bullseye'] as const) {
  describe(`inject on ${release}: values in the image and secrets in the output`, () => {
    let out: string;
    let result: { code: number; stdout: string; stderr: string };
    const files = new Map<string, string>();
    let diskId: string | undefined;
    let modes: Record<string, number> = {};

    beforeAll(async () => {
      const work = join(dir, release);
      mkdirSync(work, { recursive: true });
      const base = await rawFixture(release, work);
      out = join(work, 'device.img');
      // Human-readable output on a "terminal", with --set overriding the configured host name.
      result = await onTerminal(['inject', base, '-o', out, '--config', writeConfig(work, release), '--set', 'hostname=from-set']);
      if (result.code !== 0) return; // the first test shows why
      await using image = await openImage(out);
      diskId = image.table.diskId;
      const root = await image.mount('root');
      const boot = await image.mount('boot');
      const text = async (volume: typeof root, path: string) => new TextDecoder().decode(await volume.readFile(path));
      for (const path of ['/etc/hostname', '/etc/shadow', '/etc/wireguard/wg0.conf', '/etc/agent/token', '/etc/fstab']) files.set(path, await text(root, path));
      files.set('boot:/cmdline.txt', await text(boot, '/cmdline.txt'));
      if (release === 'pi-bullseye') files.set('wpa', await text(root, '/etc/wpa_supplicant/wpa_supplicant.conf'));
      else {
        for (const entry of await root.readdir('/etc/NetworkManager/system-connections')) {
          files.set(`nm:${entry.name}`, await text(root, `/etc/NetworkManager/system-connections/${entry.name}`));
        }
      }
      for (const path of ['/opt/tree', '/opt/tree/sub', '/opt/tree/sub/data.txt', '/etc/agent/token']) modes[path] = (await root.stat(path)).mode & 0o7777;
    });

    it('succeeds, and --set overrides the configured host name', () => {
      expect(result.code, result.stderr).toBe(0);
      expect(files.get('/etc/hostname')).toBe('from-set\n');
    });

    it('never prints a secret, on stdout or stderr: passwords, hashes, PSKs, WireGuard keys, secret files', () => {
      const printed = result.stdout + result.stderr;
      // The terminal run logs to stderr, so stderr was really looked at.
      expect(result.stderr).toContain('verifying filesystems');
      const shadowHash = /^pi:([^:]+):/m.exec(files.get('/etc/shadow')!)![1]!;
      const privateKey = /^PrivateKey = (\S+)$/m.exec(files.get('/etc/wireguard/wg0.conf')!)![1]!;
      for (const secret of [
        SECRETS.password,
        SECRETS.wifiPassword,
        psk(SECRETS.wifiPassword, 'Plant Floor'),
        SECRETS.psk,
        SECRETS.wgPreshared,
        privateKey,
        SECRETS.token,
        shadowHash,
        PASSWORD_HASH,
      ]) {
        expect(printed).not.toContain(secret);
      }
    });

    it('writes the Wi-Fi PSK derived from passphrase and SSID, the given PSK, and each priority', () => {
      if (release === 'pi-bullseye') {
        // wpa_supplicant.conf(5): network blocks with psk= (64 hex digits) and priority=.
        const conf = files.get('wpa')!;
        const plant = sectionWith(conf, /(?=network=\{)/, 'ssid="Plant Floor"');
        expect(plant).toMatch(new RegExp(`^\\s*psk=${psk(SECRETS.wifiPassword, 'Plant Floor')}$`, 'm'));
        expect(plant).toMatch(/^\s*priority=7$/m);
        const backup = sectionWith(conf, /(?=network=\{)/, 'ssid="Backup Net"');
        expect(backup).toMatch(new RegExp(`^\\s*psk=${SECRETS.psk}$`, 'm'));
        expect(backup).toMatch(/^\s*priority=-3$/m);
      } else {
        // NetworkManager keyfiles: [wifi-security] psk=, [connection] autoconnect-priority=.
        const keyfiles = [...files.entries()].filter(([name]) => name.startsWith('nm:')).map(([, text]) => text);
        const plant = keyfiles.find((text) => /^ssid=Plant Floor$/m.test(text))!;
        expect(plant).toMatch(new RegExp(`^psk=${psk(SECRETS.wifiPassword, 'Plant Floor')}$`, 'm'));
        expect(plant).toMatch(/^autoconnect-priority=7$/m);
        const backup = keyfiles.find((text) => /^ssid=Backup Net$/m.test(text))!;
        expect(backup).toMatch(new RegExp(`^psk=${SECRETS.psk}$`, 'm'));
        expect(backup).toMatch(/^autoconnect-priority=-3$/m);
      }
    });

    it('reports the public key of the private key in the image, and writes listenPort, mtu and presharedKey', () => {
      const conf = files.get('/etc/wireguard/wg0.conf')!;
      const privateKey = /^PrivateKey = (\S+)$/m.exec(conf)![1]!;
      if (release === 'pi-bullseye') expect(privateKey).toBe(SECRETS.wgPrivate);
      const reported = /^wireguardPublicKey: (\S+)$/m.exec(result.stdout)![1]!;
      expect(reported).toBe(x25519Public(privateKey));
      const iface = sectionWith(conf, /(?=^\[)/m, '[Interface]');
      expect(iface).toMatch(/^ListenPort = 51999$/m);
      expect(iface).toMatch(/^MTU = 1380$/m);
      const peer = sectionWith(conf, /(?=^\[)/m, '[Peer]');
      expect(peer).toMatch(new RegExp(`^PresharedKey = ${SECRETS.wgPreshared.replace(/[+/]/g, '\\$&')}$`, 'm'));
    });

    it('diskId: random writes a new MBR id, reports it and rewrites PARTUUIDs', () => {
      const reported = /^diskId: ([0-9a-f]{8})$/m.exec(result.stdout)![1]!;
      expect(reported).not.toBe('5e3da7a1');
      expect(diskId?.replace(/^0x/, '')).toBe(reported);
      expect(files.get('boot:/cmdline.txt')).toContain(`root=PARTUUID=${reported}-02`);
      expect(files.get('/etc/fstab')).toContain(`PARTUUID=${reported}-01`);
    });

    it('files: dirMode for the directories of a tree, secret marks the change, content as given', () => {
      expect(modes['/opt/tree']).toBe(0o750);
      expect(modes['/opt/tree/sub']).toBe(0o750);
      expect(modes['/opt/tree/sub/data.txt']).toBe(0o644);
      expect(modes['/etc/agent/token']).toBe(0o600);
      expect(files.get('/etc/agent/token')).toBe(SECRETS.token);
      const line = (path: string) => result.stdout.split('\n').find((l) => l.includes(`root:${path}`)) ?? '';
      expect(line('/etc/agent/token')).toContain('(secret)');
      expect(line('/etc/agent/plain')).not.toContain('(secret)');
    });
  });
}

describe('inject --json on a base with every kind of secret', () => {
  it('keeps the preshared key and the rest out of the JSON report', async () => {
    const work = join(dir, 'json');
    mkdirSync(work, { recursive: true });
    const base = await rawFixture('pi-bullseye', work);
    const json = await piimg(['inject', base, '-o', join(work, 'out.img'), '--config', writeConfig(work, 'pi-bullseye'), '--json'], env);
    expect(json.code, json.stderr).toBe(0);
    for (const secret of [SECRETS.wifiPassword, psk(SECRETS.wifiPassword, 'Plant Floor'), SECRETS.psk, SECRETS.wgPrivate, SECRETS.wgPreshared, SECRETS.token, PASSWORD_HASH]) {
      expect(json.stdout + json.stderr).not.toContain(secret);
    }
  });
});

describe('piimg command line', () => {
  let raw: string;
  beforeAll(async () => {
    raw = await rawFixture('pi-bookworm', join(dir, 'cli'));
  });

  it('cp --in-place changes IMAGE itself, and ls -l shows mode, owner, size and time', async () => {
    const host = join(dir, 'cli', 'note.txt');
    writeFileSync(host, 'written in place\n');
    const before = readFileSync(raw);
    const copy = await piimg(['cp', raw, host, 'root:/etc/in-place.txt', '--in-place', '--mode', '0640', '--owner', '0:4'], env);
    expect(copy.code, copy.stderr).toBe(0);
    expect(readFileSync(raw).equals(before)).toBe(false);
    expect((await piimg(['cat', raw, 'root:/etc/in-place.txt'], env)).stdout).toBe('written in place\n');
    expect((await piimg(['verify', raw], env)).code).toBe(0);
    const listing = await piimg(['ls', raw, 'root:/etc', '-l'], env);
    expect(listing.code).toBe(0);
    await using image = await openImage(raw);
    const stats = await (await image.mount('root', { readOnly: true })).stat('/etc/in-place.txt');
    const line = listing.stdout.split('\n').find((l) => l.endsWith(' in-place.txt'));
    expect(line).toMatch(new RegExp(`^-rw-r----- +0 +4 +17 ${stats.mtime.toISOString().replace(/[.]/g, '\\.')} in-place\\.txt$`));
    // Without -l: names only.
    expect((await piimg(['ls', raw, 'root:/etc'], env)).stdout.split('\n')).toContain('in-place.txt');
  });

  it('diff reports a changed modification time only with --times', async () => {
    const a = await rawFixture('pi-bookworm', join(dir, 'times'));
    const b = join(dir, 'times', 'b.img');
    {
      await using image = await openImage(a);
      const root = await image.mount('root');
      await root.utimes('/etc/hostname', new Date(Date.UTC(2030, 0, 1)), new Date(Date.UTC(2030, 0, 1)));
      await root.close();
      await image.save(b);
    }
    const plain = await piimg(['diff', a, b], env);
    expect(plain.stdout).toBe('');
    expect(plain.code).toBe(0);
    const times = await piimg(['diff', a, b, '--times'], env);
    expect(times.code).toBe(10);
    expect(times.stdout).toBe('~ 2:/etc/hostname (mtime)\n');
  });

  it('exits 6 when a copy does not fit, and leaves no output behind', async () => {
    const big = join(dir, 'cli', 'big.bin');
    writeFileSync(big, '');
    truncateSync(big, 70 * 1024 * 1024); // more than the 64 MiB boot partition
    const out = join(dir, 'cli', 'full.img');
    const result = await piimg(['cp', raw, big, 'boot:/big.bin', '-o', out], env);
    expect(result.stderr).toMatch(/\[ENOSPC\]/);
    expect(result.code).toBe(6);
    expect(existsSync(out)).toBe(false);
  });

  it('exits 70 with "internal error" and the stack when something that is not a PiimgError is thrown', async () => {
    const stderr = new Capture(false);
    const broken = {
      isTTY: false,
      write() {
        throw new TypeError('a bug in output');
      },
    } as unknown as NodeJS.WritableStream;
    const code = await main(['info', fixturePath('pi-bookworm')], { stdout: broken, stderr, env: { ...process.env, ...env }, cwd: process.cwd() });
    expect(code).toBe(70);
    expect(stderr.text).toMatch(/^piimg info: internal error: TypeError: a bug in output\n {4}at /);
  });

  it('colors a terminal, and NO_COLOR turns colors off there', async () => {
    const colored = await onTerminal(['info', fixturePath('pi-bookworm')], { NO_COLOR: undefined, TERM: 'xterm' });
    expect(colored.code).toBe(0);
    expect(colored.stdout).toContain('\u001b[');
    const plain = await onTerminal(['info', fixturePath('pi-bookworm')], { NO_COLOR: '1', TERM: 'xterm' });
    expect(plain.code).toBe(0);
    expect(plain.stdout).not.toContain('\u001b[');
    expect(plain.stdout).toContain('pi-bookworm.img.xz');
  });
});
