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

/**
 * What runs at the image's first boot and may act on offline edits:
 * - `cloud-init`: cloud-init with the NoCloud seed on the boot partition (Trixie);
 * - `userconf`: userconf-pi's rename-user wizard (userconfig.service, Bookworm and Trixie);
 * - `firstboot-init`: an `init=` script on cmdline.txt (Bookworm's firstboot, Bullseye's init_resize.sh).
 */
export type FirstBootMechanism = 'cloud-init' | 'userconf' | 'firstboot-init';

export interface Release {
  /** ID from os-release ("debian", "raspbian"). */
  id: string;
  /** "Raspberry Pi OS" when the image is one (ID=raspbian, a Raspberry Pi OS name, or pi-gen's /etc/rpi-issue), else NAME. */
  flavour: string;
  codename: string;
  /** Debian major version; undefined when unknown. */
  version: number | undefined;
  /** How Wi-Fi is configured: NetworkManager keyfiles since Bookworm, wpa_supplicant before. */
  network: 'networkmanager' | 'wpa_supplicant';
  /** Where the boot partition is mounted in the running system. */
  bootMount: string;
  /** First-boot mechanisms found in the image, in the order they run. */
  firstBoot: FirstBootMechanism[];
  /** cloud-init is installed (/etc/cloud exists): its modules run at every boot. */
  cloudInit: boolean;
  /**
   * /etc/machine-id is missing or "uninitialized": systemd treats the next boot as the first
   * one and applies unit presets then (machine-id(5) "First Boot Semantics").
   */
  firstBootPresets: boolean;
}

/** "debian 13 trixie", "raspbian 11 bullseye". */
export function releaseLabel(release: Release): string {
  return [release.id, release.version, release.codename].filter((part) => part !== undefined && part !== '').join(' ');
}

/** The init= program of a cmdline.txt, when there is one. */
export function cmdlineInit(cmdline: string): string | undefined {
  return cmdline.split(/\s+/).find((token) => token.startsWith('init='))?.slice('init='.length);
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
  const id = fields.ID ?? 'unknown';
  const raspberryPi =
    id === 'raspbian' || /raspberry pi os|raspbian/i.test(`${fields.NAME ?? ''} ${fields.PRETTY_NAME ?? ''}`) || (await editor.exists('root', '/etc/rpi-issue'));
  const flavour = raspberryPi ? 'Raspberry Pi OS' : (fields.NAME ?? 'unknown');
  const cloudInit = await editor.exists('root', '/etc/cloud');
  const firstBoot: FirstBootMechanism[] = [];
  const init = cmdlineInit((await editor.readText('boot', '/cmdline.txt').catch(() => undefined)) ?? '');
  if (init !== undefined && init !== '/sbin/init' && init !== '/lib/systemd/systemd') firstBoot.push('firstboot-init');
  if (cloudInit) firstBoot.push('cloud-init');
  const userconf = (await findUnitFile(editor, 'userconfig.service')) && !(await isMasked(editor, 'userconfig.service'));
  if (userconf) firstBoot.push('userconf');
  const machineId = await editor.readText('root', '/etc/machine-id');
  const firstBootPresets = machineId === undefined || machineId.trim() === 'uninitialized';
  return { id, flavour, codename, version, network, bootMount, firstBoot, cloudInit, firstBootPresets };
}

const UNIT_DIRS = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];

async function findUnitFile(editor: Editor, unit: string): Promise<boolean> {
  for (const dir of UNIT_DIRS) if (await editor.exists('root', `${dir}/${unit}`)) return true;
  return false;
}

async function isMasked(editor: Editor, unit: string): Promise<boolean> {
  const path = `/etc/systemd/system/${unit}`;
  return (await editor.lstat('root', path))?.type === 'symlink' && (await editor.volume('root').readlink(path)) === '/dev/null';
}
