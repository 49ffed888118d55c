import { createHash } from 'node:crypto';
import { PiimgError } from '../errors.js';
import { wifiPsk } from '../crypto/wifi.js';
import { generateWireguardKeyPair, wireguardPublicKey } from '../crypto/wireguard.js';
import type { WifiNetwork } from '../config/schema.js';
import { updateCmdline } from './boot.js';
import { findUnit, SYSTEM_UNIT_DIR } from './systemd.js';
import type { RecipeContext } from './types.js';

/** Where pi-gen keeps the Wi-Fi rfkill state (stage2/02-net-tweaks): 1 = blocked until a country is set. */
const RFKILL_DIR = '/var/lib/systemd/rfkill';
const RFKILL_WLAN_FILES = ['platform-3f300000.mmcnr:wlan', 'platform-fe300000.mmcnr:wlan'];
/** NetworkManager's persistent radio switches (NetworkManager(8) "--state-file"). */
const NM_STATE = '/var/lib/NetworkManager/NetworkManager.state';
const NM_CONNECTIONS = '/etc/NetworkManager/system-connections';

/**
 * Sets one key of one [group] of a GKeyFile-style text (NetworkManager.state),
 * keeping every other line; the group is added when missing.
 */
export function setKeyfileValue(text: string, group: string, key: string, value: string): string {
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  let inGroup = false;
  let groupEnd = -1;
  for (const [i, line] of lines.entries()) {
    const header = /^\[(.*)\]\s*$/.exec(line.trim());
    if (header) {
      if (inGroup) break;
      inGroup = header[1] === group;
      if (inGroup) groupEnd = i + 1;
      continue;
    }
    if (!inGroup) continue;
    if (line.trim() !== '') groupEnd = i + 1;
    const eq = line.indexOf('=');
    if (eq > 0 && line.slice(0, eq).trim() === key) {
      lines[i] = `${key}=${value}`;
      return lines.join('\n') + '\n';
    }
  }
  if (groupEnd < 0) lines.push(...(lines.length > 0 ? [''] : []), `[${group}]`, `${key}=${value}`);
  else lines.splice(groupEnd, 0, `${key}=${value}`);
  return lines.join('\n') + '\n';
}

/** A name-based UUID (RFC 9562 §5.5, SHA-1), so a network keeps its UUID across runs. */
export function stableUuid(name: string): string {
  const hash = createHash('sha1').update('piimg\0').update(name).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function networkPsk(ctx: RecipeContext, network: WifiNetwork): string | undefined {
  const psk = network.psk?.toLowerCase() ?? (network.password !== undefined ? wifiPsk(network.password, network.ssid) : undefined);
  if (psk !== undefined) ctx.secrets.add(psk);
  return psk;
}

/** A keyfile-safe file name: NetworkManager loads any name ending in .nmconnection. */
function keyfileName(ssid: string): string {
  const safe = ssid.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_').slice(0, 48) || 'wifi';
  const suffix = createHash('sha1').update(ssid).digest('hex').slice(0, 6);
  return `${safe}-${suffix}.nmconnection`;
}

/**
 * The SSID in a keyfile: plain text when it is safe there, else the byte list
 * form ("72;111;109;101;") that NetworkManager's keyfile format also reads.
 */
function keyfileSsid(ssid: string): string {
  if (/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(ssid) && !/[;\\#]/.test(ssid)) return ssid;
  return [...new TextEncoder().encode(ssid)].map((byte) => `${byte};`).join('');
}

function nmKeyfile(ctx: RecipeContext, network: WifiNetwork): string {
  const psk = networkPsk(ctx, network);
  // The id is free text for nmcli; fall back to a stable name when the SSID is not plain text.
  const ssidField = keyfileSsid(network.ssid);
  const plain = ssidField === network.ssid;
  const id = plain ? network.ssid : `wifi-${createHash('sha1').update(network.ssid).digest('hex').slice(0, 8)}`;
  const lines = ['[connection]', `id=${id}`, `uuid=${stableUuid(`wifi\0${network.ssid}`)}`, 'type=wifi'];
  if (network.priority !== undefined) lines.push(`autoconnect-priority=${network.priority}`);
  lines.push('', '[wifi]', 'mode=infrastructure', `ssid=${ssidField}`);
  if (network.hidden) lines.push('hidden=true');
  if (psk !== undefined) lines.push('', '[wifi-security]', 'key-mgmt=wpa-psk', `psk=${psk}`);
  lines.push('', '[ipv4]', 'method=auto', '', '[ipv6]', 'addr-gen-mode=default', 'method=auto', '', '[proxy]', '');
  return lines.join('\n');
}

function wpaSsid(ssid: string): string {
  // wpa_supplicant.conf(5): a quoted string, or the SSID bytes in hex without quotes.
  if (/^[\x20-\x7e]*$/.test(ssid) && !/["\\]/.test(ssid)) return `"${ssid}"`;
  return Buffer.from(ssid, 'utf8').toString('hex');
}

function wpaSupplicantConf(ctx: RecipeContext, country: string, networks: WifiNetwork[]): string {
  const lines = ['ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev', 'update_config=1', `country=${country}`];
  for (const network of networks) {
    const psk = networkPsk(ctx, network);
    lines.push('', 'network={', `\tssid=${wpaSsid(network.ssid)}`);
    if (network.hidden) lines.push('\tscan_ssid=1');
    lines.push(psk !== undefined ? `\tpsk=${psk}` : '\tkey_mgmt=NONE');
    if (network.priority !== undefined) lines.push(`\tpriority=${network.priority}`);
    lines.push('}');
  }
  return lines.join('\n') + '\n';
}

/**
 * Wi-Fi. Bookworm and later: one NetworkManager keyfile per network, 0600
 * root (NetworkManager ignores keyfiles others can read). Bullseye and older:
 * /etc/wpa_supplicant/wpa_supplicant.conf. Both: the regulatory country on
 * the kernel command line, and Wi-Fi unblocked in the rfkill state files.
 * Passphrases are stored as the derived PSK, never in clear.
 */
export async function applyWifi(ctx: RecipeContext): Promise<void> {
  const wifi = ctx.config.wifi;
  if (!wifi) return;
  const { editor } = ctx;
  if (ctx.release.network === 'networkmanager') {
    const dir = NM_CONNECTIONS;
    await editor.ensureDir('root', dir, { mode: 0o700 });
    for (const network of wifi.networks) {
      await editor.ensureFile('root', `${dir}/${keyfileName(network.ssid)}`, nmKeyfile(ctx, network), {
        mode: 0o600,
        uid: 0,
        gid: 0,
        summary: `Wi-Fi network "${network.ssid}" (key redacted)`,
      });
    }
  } else {
    await editor.ensureFile('root', '/etc/wpa_supplicant/wpa_supplicant.conf', wpaSupplicantConf(ctx, wifi.country, wifi.networks), {
      mode: 0o600,
      uid: 0,
      gid: 0,
      summary: `country ${wifi.country}, ${wifi.networks.length} network(s), keys redacted`,
    });
  }
  // raspi-config do_wifi_country: the regulatory domain as a kernel parameter.
  await updateCmdline(ctx, { append: [`cfg80211.ieee80211_regdom=${wifi.country}`] }, `Wi-Fi country ${wifi.country}`);
  const existing = (await editor.exists('root', RFKILL_DIR))
    ? (await editor.volume('root').readdir(RFKILL_DIR)).filter((e) => e.type === 'file' && e.name.endsWith(':wlan')).map((e) => e.name)
    : [];
  for (const name of new Set([...RFKILL_WLAN_FILES, ...existing])) {
    await editor.ensureFile('root', `${RFKILL_DIR}/${name}`, '0\n', { summary: 'Wi-Fi unblocked' });
  }
  // Trixie keeps the radio off in NetworkManager's state file until a country is set
  // (raspi-config do_wifi_country turns it on); NetworkManager restores it at start.
  const state = await editor.readText('root', NM_STATE);
  if (state !== undefined) {
    await editor.ensureFile('root', NM_STATE, setKeyfileValue(state, 'main', 'WirelessEnabled', 'true'), { summary: 'WirelessEnabled=true' });
  }
}

function wgList(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value : [value]).join(', ');
}

function asList(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

const WG_KEY = /[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=/;

/** The private key of an existing wg-quick config or NetworkManager profile, if any. */
function existingPrivateKey(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const match =
    new RegExp(`^\\s*PrivateKey\\s*=\\s*(${WG_KEY.source})\\s*$`, 'm').exec(text) ?? new RegExp(`^private-key=(${WG_KEY.source})\\s*$`, 'm').exec(text);
  return match ? match[1] : undefined;
}

export type WireguardMethod = 'wg-quick' | 'networkmanager';

/**
 * How WireGuard is brought up: `wg-quick` where the image has wg-quick@.service
 * (wireguard-tools), else a NetworkManager profile where NetworkManager is
 * installed (Trixie has no wireguard-tools but its NetworkManager runs
 * WireGuard itself). A forced method the image cannot run is a config error.
 */
export async function wireguardMethod(ctx: RecipeContext): Promise<{ method: WireguardMethod; problem?: string }> {
  const wg = ctx.config.wireguard;
  const wgQuick = (await findUnit(ctx.editor, 'wg-quick@.service')) !== undefined;
  const networkManager = (await findUnit(ctx.editor, 'NetworkManager.service')) !== undefined;
  const wanted = wg?.method ?? 'auto';
  if (wanted === 'wg-quick') {
    return wgQuick ? { method: 'wg-quick' } : { method: 'wg-quick', problem: 'wireguard.method: wg-quick, but the image has no wg-quick@.service (package wireguard-tools)' };
  }
  if (wanted === 'networkmanager') {
    return networkManager ? { method: 'networkmanager' } : { method: 'networkmanager', problem: 'wireguard.method: networkmanager, but the image has no NetworkManager.service' };
  }
  if (wgQuick || !networkManager) return { method: 'wg-quick' };
  return { method: 'networkmanager' };
}

function withPrefix(address: string): string {
  if (address.includes('/')) return address;
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}

/**
 * A NetworkManager keyfile for a WireGuard connection (nm-settings-keyfile(5);
 * properties of nm-settings-nmcli(5) "wireguard" and "wireguard-peer"): one
 * [wireguard-peer.<public key>] group per peer, lists ending in ";".
 */
export function wireguardKeyfile(ctx: RecipeContext, privateKey: string): string {
  const wg = ctx.config.wireguard!;
  const lines = [
    '[connection]',
    `id=${wg.interface}`,
    `uuid=${stableUuid(`wireguard\0${wg.interface}`)}`,
    'type=wireguard',
    `interface-name=${wg.interface}`,
    'autoconnect=true',
    '',
    '[wireguard]',
    `private-key=${privateKey}`,
  ];
  if (wg.listenPort !== undefined) lines.push(`listen-port=${wg.listenPort}`);
  if (wg.mtu !== undefined) lines.push(`mtu=${wg.mtu}`);
  for (const peer of wg.peers) {
    lines.push('', `[wireguard-peer.${peer.publicKey}]`);
    if (peer.endpoint !== undefined) lines.push(`endpoint=${peer.endpoint}`);
    if (peer.presharedKey !== undefined) {
      ctx.secrets.add(peer.presharedKey);
      lines.push(`preshared-key=${peer.presharedKey}`, 'preshared-key-flags=0');
    }
    if (peer.persistentKeepalive !== undefined) lines.push(`persistent-keepalive=${peer.persistentKeepalive}`);
    lines.push(`allowed-ips=${peer.allowedIps.map((ip) => `${ip};`).join('')}`);
  }
  const addresses = asList(wg.address);
  const dns = asList(wg.dns);
  for (const [family, isFamily] of [['ipv4', (a: string) => !a.includes(':')], ['ipv6', (a: string) => a.includes(':')]] as const) {
    const own = addresses.filter(isFamily);
    const servers = dns.filter(isFamily);
    lines.push('', `[${family}]`);
    if (own.length === 0) {
      lines.push('method=disabled');
      continue;
    }
    own.forEach((address, i) => lines.push(`address${i + 1}=${withPrefix(address)}`));
    if (servers.length > 0) lines.push(`dns=${servers.map((server) => `${server};`).join('')}`);
    lines.push('method=manual');
  }
  return lines.join('\n') + '\n';
}

/**
 * WireGuard through wg-quick(8) (/etc/wireguard/<if>.conf, 0600 root, and the
 * wg-quick@<if>.service link) or through NetworkManager
 * (/etc/NetworkManager/system-connections/<if>.nmconnection, 0600 root,
 * autoconnect). `privateKey: generate` keeps a key that a previous run left in
 * either file, so re-applying does not change the key the hub already knows.
 */
export async function applyWireguard(ctx: RecipeContext): Promise<void> {
  const wg = ctx.config.wireguard;
  if (!wg) return;
  const { editor } = ctx;
  const { method, problem } = await wireguardMethod(ctx);
  if (problem) throw new PiimgError('E_CONFIG', problem, { path: 'wireguard.method' });
  const confPath = `/etc/wireguard/${wg.interface}.conf`;
  const nmPath = `${NM_CONNECTIONS}/${wg.interface}.nmconnection`;
  let privateKey: string;
  if (wg.privateKey === 'generate') {
    privateKey =
      existingPrivateKey(await editor.readText('root', method === 'wg-quick' ? confPath : nmPath)) ??
      existingPrivateKey(await editor.readText('root', method === 'wg-quick' ? nmPath : confPath)) ??
      generateWireguardKeyPair({ random: editor.random }).privateKey;
  } else {
    privateKey = wg.privateKey;
  }
  ctx.secrets.add(privateKey);
  const publicKey = wireguardPublicKey(privateKey);
  editor.report.outputs.wireguardPublicKey = publicKey;
  const summary = `${wg.interface}: public key ${publicKey}, ${wg.peers.length} peer(s), private key redacted`;
  if (wg.peers.length === 0) editor.warn(`${wg.interface} has no peers`);
  if (method === 'networkmanager') {
    await editor.ensureDir('root', NM_CONNECTIONS, { mode: 0o700 });
    // NetworkManager ignores keyfiles that others can read.
    await editor.ensureFile('root', nmPath, wireguardKeyfile(ctx, privateKey), { mode: 0o600, uid: 0, gid: 0, summary });
    return;
  }
  const lines = ['[Interface]', `PrivateKey = ${privateKey}`, `Address = ${wgList(wg.address)}`];
  if (wg.dns !== undefined) lines.push(`DNS = ${wgList(wg.dns)}`);
  if (wg.listenPort !== undefined) lines.push(`ListenPort = ${wg.listenPort}`);
  if (wg.mtu !== undefined) lines.push(`MTU = ${wg.mtu}`);
  for (const peer of wg.peers) {
    lines.push('', '[Peer]', `PublicKey = ${peer.publicKey}`);
    if (peer.presharedKey !== undefined) {
      ctx.secrets.add(peer.presharedKey);
      lines.push(`PresharedKey = ${peer.presharedKey}`);
    }
    if (peer.endpoint !== undefined) lines.push(`Endpoint = ${peer.endpoint}`);
    lines.push(`AllowedIPs = ${peer.allowedIps.join(', ')}`);
    if (peer.persistentKeepalive !== undefined) lines.push(`PersistentKeepalive = ${peer.persistentKeepalive}`);
  }
  await editor.ensureDir('root', '/etc/wireguard', { mode: 0o700, uid: 0, gid: 0 });
  await editor.ensureFile('root', confPath, lines.join('\n') + '\n', { mode: 0o600, uid: 0, gid: 0, summary });
  const unit = await findUnit(editor, 'wg-quick@.service');
  if (!unit) {
    editor.warn(`the image has no wg-quick@.service (package wireguard-tools) nor NetworkManager: ${confPath} is written but ${wg.interface} will not start at boot`);
    return;
  }
  // wg-quick@.service has WantedBy=multi-user.target.
  await editor.ensureSymlink('root', `${SYSTEM_UNIT_DIR}/multi-user.target.wants/wg-quick@${wg.interface}.service`, unit);
  if (wg.dns !== undefined) {
    const resolvconf = (await editor.exists('root', '/usr/sbin/resolvconf')) || (await editor.exists('root', '/sbin/resolvconf'));
    if (!resolvconf) editor.warn('wireguard.dns needs resolvconf in the image (openresolv or systemd-resolved); wg-quick fails without it');
  }
}
