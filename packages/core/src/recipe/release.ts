import type { Editor } from './context.js';

/** Debian release numbers by code name, for images whose os-release lacks VERSION_ID. */
const DEBIAN_VERSIONS: Record<string, number> = {
  jessie: 8,
  stretch: 9,
  buster: 10,
  bullseye: 11,
  bookworm: 12,
  trixie: 13,
  forky: 14,
  duke: 15,
};

/** The Raspberry Pi OS / Debian release of an image, and what follows from it. */
export interface Release {
  /** ID from os-release ("debian", "raspbian"). */
  id: string;
  codename: string;
  /** Debian major version; undefined when unknown. */
  version: number | undefined;
  /** How Wi-Fi is configured: NetworkManager keyfiles since Bookworm, wpa_supplicant before. */
  network: 'networkmanager' | 'wpa_supplicant';
  /** Where the boot partition is mounted in the running system. */
  bootMount: string;
}

/** Parses os-release(5): KEY=value lines, values optionally quoted. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    let value = match[2]!;
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1).replace(/\\(["\\$`])/g, '$1');
    out[match[1]!] = value;
  }
  return out;
}

/** The mount point of the vfat boot partition in /etc/fstab. */
export function bootMountFromFstab(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 3 || fields[0]!.startsWith('#')) continue;
    if (fields[2] === 'vfat' && fields[1]!.startsWith('/boot')) return fields[1];
  }
  return undefined;
}

/** Reads the release of the root filesystem from os-release. */
export async function detectRelease(editor: Editor): Promise<Release> {
  const text = (await editor.readText('root', '/etc/os-release')) ?? (await editor.readText('root', '/usr/lib/os-release'));
  const fields = text === undefined ? {} : parseOsRelease(text);
  if (text === undefined) editor.warn('the image has no /etc/os-release; assuming Bookworm or later');
  const codename = (fields.VERSION_CODENAME ?? '').toLowerCase();
  let version = fields.VERSION_ID && /^\d+/.test(fields.VERSION_ID) ? Number.parseInt(fields.VERSION_ID, 10) : undefined;
  version ??= DEBIAN_VERSIONS[codename];
  let network: Release['network'];
  if (version !== undefined) network = version >= 12 ? 'networkmanager' : 'wpa_supplicant';
  else network = (await editor.exists('root', '/etc/NetworkManager')) ? 'networkmanager' : 'wpa_supplicant';
  const fstab = await editor.readText('root', '/etc/fstab');
  const bootMount =
    (fstab !== undefined ? bootMountFromFstab(fstab) : undefined) ?? (version === undefined || version >= 12 ? '/boot/firmware' : '/boot');
  return { id: fields.ID ?? 'unknown', codename, version, network, bootMount };
}
