import { createHash } from 'node:crypto';
import { stringify as toYaml } from 'yaml';
import { PiimgError } from '../errors.js';
import { wifiPsk } from '../crypto/wifi.js';
import { readAccounts } from './accounts.js';
import { DEFAULT_USER_GROUPS } from './user.js';
import type { RecipeContext } from './types.js';

/**
 * config.txt edits. Ref: Raspberry Pi documentation, "config.txt", section
 * "Conditional filters": lines after a [filter] apply only where it matches,
 * until [all]. We edit only unconditional lines and append under [all].
 */
export interface ConfigTxtEdit {
  set: Record<string, string | string[]>;
  remove: string[];
}

interface ConfigLine {
  text: string;
  unconditional: boolean;
  key: string | undefined;
  value: string | undefined;
}

function parseConfigTxt(text: string): ConfigLine[] {
  const lines = text.replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n');
  let unconditional = true;
  return lines.map((line) => {
    const trimmed = line.trim();
    const section = /^\[([^\]]*)\]/.exec(trimmed);
    if (section) {
      unconditional = section[1]!.trim().toLowerCase() === 'all';
      return { text: line, unconditional, key: undefined, value: undefined };
    }
    const match = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(trimmed);
    if (!match || trimmed.startsWith('#')) return { text: line, unconditional, key: undefined, value: undefined };
    return { text: line, unconditional, key: match[1], value: match[2]!.trim() };
  });
}

/** The identity of a multi-valued line: the parameter of dtparam, the overlay name of dtoverlay. */
function itemIdentity(key: string, value: string): string {
  if (key === 'dtparam') return value.split('=')[0]!.trim();
  if (key === 'dtoverlay') return value.split(',')[0]!.trim();
  return value;
}

/** Applies `edit` to the text of config.txt, touching only unconditional lines. */
export function editConfigTxt(text: string, edit: ConfigTxtEdit): string {
  const lines = parseConfigTxt(text);
  const removeKeys = new Set(edit.remove);
  let result = lines.filter((line) => !(line.unconditional && line.key !== undefined && removeKeys.has(line.key)));
  const appended: string[] = [];
  for (const [key, wanted] of Object.entries(edit.set)) {
    if (Array.isArray(wanted)) {
      for (const item of wanted) {
        const identity = itemIdentity(key, item);
        const matches = result.filter((line) => line.unconditional && line.key === key && itemIdentity(key, line.value!) === identity);
        if (matches.length === 0) appended.push(`${key}=${item}`);
        for (const line of matches) {
          line.text = `${key}=${item}`;
          line.value = item;
        }
      }
    } else {
      const matches = result.filter((line) => line.unconditional && line.key === key);
      if (matches.length === 0) appended.push(`${key}=${wanted}`);
      for (const line of matches) {
        line.text = `${key}=${wanted}`;
        line.value = wanted;
      }
    }
  }
  result = [...result];
  if (appended.length > 0) {
    const last = result[result.length - 1];
    if (last !== undefined && !last.unconditional) result.push({ text: '[all]', unconditional: true, key: undefined, value: undefined });
    for (const text of appended) result.push({ text, unconditional: true, key: undefined, value: undefined });
  }
  return result.map((line) => line.text).join('\n') + '\n';
}

/**
 * cmdline.txt edits: one line of space-separated parameters (kernel
 * admin-guide "kernel-parameters"). Appending `key=value` replaces a single
 * existing `key=...`; keys that appear several times (console=) are added to.
 */
export function editCmdline(text: string, edit: { append?: string[]; remove?: string[] }): string {
  let tokens = text.replace(/\r?\n/g, ' ').trim().split(/\s+/).filter(Boolean);
  for (const item of edit.remove ?? []) {
    tokens = tokens.filter((token) => (item.endsWith('=') ? !token.startsWith(item) : token !== item));
  }
  for (const item of edit.append ?? []) {
    if (tokens.includes(item)) continue;
    const eq = item.indexOf('=');
    if (eq > 0) {
      const prefix = item.slice(0, eq + 1);
      const same = tokens.filter((token) => token.startsWith(prefix));
      if (same.length === 1) {
        tokens[tokens.indexOf(same[0]!)] = item;
        continue;
      }
    }
    tokens.push(item);
  }
  return tokens.join(' ') + '\n';
}

export async function updateCmdline(ctx: RecipeContext, edit: { append?: string[]; remove?: string[] }, summary: string): Promise<void> {
  const current = await ctx.editor.readText('boot', '/cmdline.txt');
  if (current === undefined) throw new PiimgError('E_IMAGE', 'the boot partition has no cmdline.txt', { path: '/cmdline.txt' });
  await ctx.editor.ensureFile('boot', '/cmdline.txt', editCmdline(current, edit), { summary });
}

export async function applyBootConfig(ctx: RecipeContext): Promise<void> {
  const boot = ctx.config.boot;
  if (boot?.config) {
    const current = (await ctx.editor.readText('boot', '/config.txt')) ?? '';
    const keys = [...Object.keys(boot.config.set), ...boot.config.remove.map((key) => `-${key}`)];
    await ctx.editor.ensureFile('boot', '/config.txt', editConfigTxt(current, boot.config), { summary: `config.txt: ${keys.join(' ')}` });
  }
  if (boot?.cmdline) {
    const parts = [...boot.cmdline.append.map((t) => `+${t}`), ...boot.cmdline.remove.map((t) => `-${t}`)];
    await updateCmdline(ctx, boot.cmdline, `cmdline.txt: ${parts.join(' ')}`);
  }
}

/**
 * Opt-in first-boot seeds on the boot partition, for images or workflows
 * that rely on them: `ssh`, `userconf.txt` and a cloud-init NoCloud seed.
 */
export async function applySeeds(ctx: RecipeContext): Promise<void> {
  const seeds = ctx.config.boot?.seeds;
  if (!seeds) return;
  const { editor, config } = ctx;
  if (seeds.ssh) await editor.ensureFile('boot', '/ssh', '', { summary: 'enable SSH at first boot' });
  const hash = config.user ? await userHash(ctx, config.user.name) : undefined;
  if (seeds.userconf) {
    if (!config.user || hash === undefined) throw new PiimgError('E_CONFIG', 'boot.seeds.userconf: needs user.name with password or passwordHash', {});
    // userconf-pi reads one "name:hash" line (RPI-FORMATS, "First-boot files").
    await editor.ensureFile('boot', '/userconf.txt', `${config.user.name}:${hash}\n`, { summary: `user ${config.user.name} (hash redacted)` });
  }
  if (seeds.cloudInit) await writeCloudInit(ctx, hash);
}

async function userHash(ctx: RecipeContext, name: string): Promise<string | undefined> {
  const user = ctx.config.user;
  if (user?.passwordHash !== undefined) return user.passwordHash;
  if (user?.password === undefined) return undefined;
  // The user recipe has run: the shadow entry holds the hash of this password.
  const accounts = await readAccounts(ctx.editor);
  return accounts.shadow.get(name)?.[1];
}

async function writeCloudInit(ctx: RecipeContext, hash: string | undefined): Promise<void> {
  const { config, editor } = ctx;
  const userData: Record<string, unknown> = {};
  if (config.hostname) {
    userData.hostname = config.hostname;
    userData.manage_etc_hosts = true;
  }
  if (config.timezone) userData.timezone = config.timezone;
  if (config.locale) userData.locale = config.locale;
  if (config.keyboard) userData.keyboard = { layout: typeof config.keyboard === 'string' ? config.keyboard : config.keyboard.layout };
  if (config.user) {
    const entry: Record<string, unknown> = {
      name: config.user.name,
      groups: (config.user.groups ?? DEFAULT_USER_GROUPS).join(', '),
      shell: config.user.shell ?? '/bin/bash',
      sudo: 'ALL=(ALL) NOPASSWD:ALL',
    };
    if (hash !== undefined) {
      entry.passwd = hash;
      entry.lock_passwd = false;
    }
    if (config.ssh?.authorizedKeys) entry.ssh_authorized_keys = config.ssh.authorizedKeys;
    userData.users = [entry];
  }
  if (config.ssh?.passwordAuthentication !== undefined) userData.ssh_pwauth = config.ssh.passwordAuthentication;
  const userDataText = '#cloud-config\n' + toYaml(userData, { lineWidth: 0 });
  let networkText: string | undefined;
  if (config.wifi && config.wifi.networks.length > 0) {
    const accessPoints: Record<string, unknown> = {};
    for (const network of config.wifi.networks) {
      const psk = network.psk ?? (network.password !== undefined ? wifiPsk(network.password, network.ssid) : undefined);
      const point: Record<string, unknown> = {};
      if (psk !== undefined) {
        ctx.secrets.add(psk);
        point.password = psk;
      }
      if (network.hidden) point.hidden = true;
      accessPoints[network.ssid] = point;
    }
    // netplan v2 (cloud-init "Networking config Version 2").
    networkText = toYaml(
      { network: { version: 2, wifis: { wlan0: { dhcp4: true, 'regulatory-domain': config.wifi.country, optional: true, 'access-points': accessPoints } } } },
      { lineWidth: 0 },
    );
    await editor.ensureFile('boot', '/network-config', networkText, { summary: `${config.wifi.networks.length} Wi-Fi network(s), keys redacted` });
  }
  // A new instance-id makes cloud-init run again; derive it from the seed so equal seeds keep it.
  const instance = createHash('sha256').update(userDataText).update(networkText ?? '').digest('hex').slice(0, 16);
  await editor.ensureFile('boot', '/user-data', userDataText, { summary: 'cloud-init user-data (secrets redacted)' });
  await editor.ensureFile('boot', '/meta-data', `instance-id: piimg-${instance}\n`, { summary: `instance-id piimg-${instance}` });
}

/**
 * A new MBR disk identifier. PARTUUIDs are "<disk id>-<partition number>",
 * so cmdline.txt's root= and /etc/fstab change with it.
 */
export function wantedDiskId(ctx: RecipeContext): string | undefined {
  const setting = ctx.config.diskId;
  if (setting === undefined) return undefined;
  let id: string;
  // With a seed, "random" is derived from the whole configuration, so each device still gets its own id.
  if (setting === 'random') id = Buffer.from(ctx.editor.secretBytes(`disk id\0${createHash('sha256').update(JSON.stringify(ctx.config)).digest('hex')}`, 4)).toString('hex');
  else if (setting === 'hostname') {
    if (!ctx.config.hostname) throw new PiimgError('E_CONFIG', 'diskId: "hostname" needs hostname to be set', {});
    id = createHash('sha256').update(`piimg disk id\0${ctx.config.hostname}`).digest('hex').slice(0, 8);
  } else id = setting.replace(/^0x/i, '').toLowerCase();
  // Zero means "no identifier" to firmware and kernel.
  return id === '00000000' ? '00000001' : id;
}

export async function applyDiskId(
  ctx: RecipeContext,
  target: { diskId?: string; setDiskId?: (diskId: string) => Promise<void> | void },
): Promise<void> {
  const wanted = wantedDiskId(ctx);
  if (wanted === undefined) return;
  const current = target.diskId?.replace(/^0x/i, '').toLowerCase();
  if (!current || !target.setDiskId) throw new PiimgError('E_CONFIG', 'diskId: the image has no MBR disk identifier to change', {});
  ctx.editor.report.outputs.diskId = wanted;
  if (current === wanted) return;
  await target.setDiskId(wanted);
  const pattern = new RegExp(`PARTUUID=${current}-`, 'gi');
  const cmdline = await ctx.editor.readText('boot', '/cmdline.txt');
  if (cmdline !== undefined) {
    await ctx.editor.ensureFile('boot', '/cmdline.txt', cmdline.replace(pattern, `PARTUUID=${wanted}-`), { summary: `PARTUUID ${current} -> ${wanted}` });
  }
  const fstab = await ctx.editor.readText('root', '/etc/fstab');
  if (fstab !== undefined) {
    await ctx.editor.ensureFile('root', '/etc/fstab', fstab.replace(pattern, `PARTUUID=${wanted}-`), { summary: `PARTUUID ${current} -> ${wanted}` });
  }
}
