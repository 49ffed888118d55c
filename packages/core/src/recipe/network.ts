import { createHash } from 'node:crypto';
import { wifiPsk } from '../crypto/wifi.js';
import { generateWireguardKeyPair, wireguardPublicKey } from '../crypto/wireguard.js';
import type { WifiNetwork } from '../config/schema.js';
import { updateCmdline } from './boot.js';
import { findUnit, SYSTEM_UNIT_DIR } from './systemd.js';
import type { RecipeContext } from './types.js';

/** Where pi-gen keeps the Wi-Fi rfkill state (stage2/02-net-tweaks): 1 = blocked until a country is set. */
const RFKILL_DIR = '/var/lib/systemd/rfkill';
const RFKILL_WLAN_FILES = ['platform-3f300000.mmcnr:wlan', 'platform-fe300000.mmcnr:wlan'];

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
    const dir = '/etc/NetworkManager/system-connections';
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
}

function wgList(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value : [value]).join(', ');
}

/** The PrivateKey of an existing wg-quick config, if any. */
function existingPrivateKey(text: string | undefined): string | undefined {
  const match = text && /^\s*PrivateKey\s*=\s*([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)\s*$/m.exec(text);
  return match ? match[1] : undefined;
}

/**
 * WireGuard through wg-quick(8): /etc/wireguard/<if>.conf (0600, root) and
 * the wg-quick@<if>.service link. `privateKey: generate` keeps a key that a
 * previous run left in the image, so re-applying does not change the key the
 * hub already knows.
 */
export async function applyWireguard(ctx: RecipeContext): Promise<void> {
  const wg = ctx.config.wireguard;
  if (!wg) return;
  const { editor } = ctx;
  const path = `/etc/wireguard/${wg.interface}.conf`;
  let privateKey: string;
  if (wg.privateKey === 'generate') {
    // With a seed, the key is derived from what tells devices apart: host name and tunnel address.
    const purpose = `wireguard private key\0${wg.interface}\0${ctx.config.hostname ?? ''}\0${wgList(wg.address)}`;
    privateKey = existingPrivateKey(await editor.readText('root', path)) ?? generateWireguardKeyPair({ random: (n) => editor.secretBytes(purpose, n) }).privateKey;
  } else {
    privateKey = wg.privateKey;
  }
  ctx.secrets.add(privateKey);
  const publicKey = wireguardPublicKey(privateKey);
  editor.report.outputs.wireguardPublicKey = publicKey;
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
  await editor.ensureFile('root', path, lines.join('\n') + '\n', {
    mode: 0o600,
    uid: 0,
    gid: 0,
    summary: `${wg.interface}: public key ${publicKey}, ${wg.peers.length} peer(s), private key redacted`,
  });
  const unit = await findUnit(editor, 'wg-quick@.service');
  if (!unit) {
    editor.warn(`the image has no wg-quick@.service (package wireguard-tools): ${path} is written but ${wg.interface} will not start at boot`);
    return;
  }
  // wg-quick@.service has WantedBy=multi-user.target.
  await editor.ensureSymlink('root', `${SYSTEM_UNIT_DIR}/multi-user.target.wants/wg-quick@${wg.interface}.service`, unit);
  if (wg.dns !== undefined) {
    const resolvconf = (await editor.exists('root', '/usr/sbin/resolvconf')) || (await editor.exists('root', '/sbin/resolvconf'));
    if (!resolvconf) editor.warn('wireguard.dns needs resolvconf in the image (openresolv or systemd-resolved); wg-quick fails without it');
  }
  if (wg.peers.length === 0) editor.warn(`${wg.interface} has no peers`);
}
