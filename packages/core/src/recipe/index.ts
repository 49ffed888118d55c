import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PiimgError } from '../errors.js';
import { defaultClock, type Volume } from '../fs/volume.js';
import { checkSources, type LoadedConfig } from '../config/load.js';
import type { DeviceConfig } from '../config/schema.js';
import { readAccounts, resolveOwner } from './accounts.js';
export { resolveImageOwner } from './accounts.js';
import { Editor, type ApplyReport } from './context.js';
import { applyBootConfig, applyDiskId, applySeeds } from './boot.js';
import { applyFiles, applyPresets, applyServices, routeTarget } from './files.js';
import { applyWifi, applyWireguard, wireguardMethod } from './network.js';
import { applyCloudInit } from './cloudinit.js';
import { detectRelease, type Release } from './release.js';
import { findUnit, unitFileName } from './systemd.js';
import { applyHostname, applyKeyboard, applyLocale, applyTimezone } from './system.js';
import type { RecipeContext } from './types.js';
import { applySsh, applyUser, loginUser, placeholderToRename } from './user.js';

export type { ApplyReport, Change, ChangeAction, VolumeName } from './context.js';
export type { Release, FirstBootMechanism } from './release.js';
export { detectRelease, parseOsRelease, bootMountFromFstab, releaseLabel } from './release.js';
export { editConfigTxt, editCmdline } from './boot.js';
export { parseInstallSection } from './systemd.js';

export interface ApplyTarget {
  boot: Volume;
  root: Volume;
  /** The current MBR disk identifier as 8 hex digits, when the image has one. */
  diskId?: string;
  /** Writes a new disk identifier into the partition table. */
  setDiskId?: (diskId: string) => Promise<void> | void;
}

export interface ApplyOptions {
  /** Clock for written timestamps and shadow's last-change day; SOURCE_DATE_EPOCH-aware by default. */
  now?: () => Date;
  /** Random source for salts, generated keys and random disk ids (tests pass a fixed one). */
  random?: (byteLength: number) => Uint8Array;
}

const UNIT_DIRS = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];

function configSecrets(config: DeviceConfig): string[] {
  const out: string[] = [];
  if (config.user?.password) out.push(config.user.password);
  if (config.user?.passwordHash) out.push(config.user.passwordHash);
  for (const network of config.wifi?.networks ?? []) {
    if (network.password) out.push(network.password);
    if (network.psk) out.push(network.psk, network.psk.toLowerCase());
  }
  if (config.wireguard && config.wireguard.privateKey !== 'generate') out.push(config.wireguard.privateKey);
  for (const peer of config.wireguard?.peers ?? []) if (peer.presharedKey) out.push(peer.presharedKey);
  return out;
}

/** Whether a files[] entry of the config installs this unit file. */
async function unitFromFiles(config: DeviceConfig, baseDir: string, unit: string): Promise<boolean> {
  const file = unitFileName(unit);
  for (const entry of config.files ?? []) {
    for (const dir of UNIT_DIRS) {
      if (entry.target === `${dir}/${file}`) return true;
      if (entry.source !== undefined && (dir === entry.target || dir.startsWith(entry.target.replace(/\/$/, '') + '/'))) {
        const relative = dir.slice(entry.target.replace(/\/$/, '').length);
        if (await stat(join(resolve(baseDir, entry.source), relative, file)).catch(() => undefined)) return true;
      }
    }
  }
  return false;
}

/**
 * Every check that depends on the image, made before the first write, so a
 * config that cannot be applied leaves the image untouched.
 */
async function preflight(ctx: RecipeContext, target: ApplyTarget): Promise<void> {
  const { config, editor } = ctx;
  const problems: string[] = [];
  if (config.timezone && !(await editor.exists('root', `/usr/share/zoneinfo/${config.timezone}`))) {
    problems.push(`timezone: ${config.timezone} is not in the image's /usr/share/zoneinfo`);
  }
  for (const [index, unit] of (config.services?.enable ?? []).entries()) {
    if (!(await findUnit(editor, unit)) && !(await unitFromFiles(config, ctx.baseDir, unit))) {
      problems.push(`services.enable[${index}]: the image has no unit file for ${unit}`);
    }
  }
  const accounts = await readAccounts(editor);
  const newUser = config.user && !accounts.passwd.get(config.user.name) ? config.user.name : undefined;
  const renamed = (await placeholderToRename(ctx, accounts))?.[0];
  for (const [index, entry] of (config.files ?? []).entries()) {
    if (!entry.owner) continue;
    const [user, group] = entry.owner.split(':') as [string, string | undefined];
    if (renamed !== undefined && (user === renamed || group === renamed)) {
      problems.push(`files[${index}].owner: ${renamed} is the image's unconfigured first user, renamed to ${config.user!.name}; use that name`);
      continue;
    }
    if (!/^\d+$/.test(user) && !accounts.passwd.get(user) && user !== newUser) {
      problems.push(`files[${index}].owner: user "${user}" does not exist in the image's /etc/passwd`);
    }
    if (group !== undefined && !/^\d+$/.test(group) && !accounts.group.get(group) && group !== newUser) {
      problems.push(`files[${index}].owner: group "${group}" does not exist in the image's /etc/group`);
    }
    if (group === undefined && /^\d+$/.test(user) && !accounts.passwd.entries().some((f) => f[2] === user)) {
      problems.push(`files[${index}].owner: uid ${user} has no /etc/passwd entry; give the group too ("${user}:gid")`);
    }
    if (routeTarget(entry.target, ctx.release.bootMount).volume === 'boot' && entry.owner !== undefined && !/^0(:0)?$/.test(entry.owner)) {
      editor.warn(`files[${index}]: ${entry.target} is on the FAT boot partition, which has no owners; owner ignored`);
    }
  }
  for (const [index, entry] of (config.files ?? []).entries()) {
    const { volume, path } = routeTarget(entry.target, ctx.release.bootMount);
    const existing = await editor.lstat(volume, path).catch(() => undefined);
    const sourceIsDir = entry.source !== undefined && (await stat(resolve(ctx.baseDir, entry.source)).catch(() => undefined))?.isDirectory();
    if (existing?.type === 'directory' && !sourceIsDir) problems.push(`files[${index}].target: ${entry.target} is a directory in the image`);
    if (existing && existing.type !== 'directory' && existing.type !== 'symlink' && sourceIsDir) {
      problems.push(`files[${index}].target: ${entry.target} is a file in the image, but the source is a directory`);
    }
  }
  if (config.ssh?.authorizedKeys && !config.user && !loginUser(ctx, accounts)) {
    problems.push('ssh.authorizedKeys: the image has no regular user; set user.name');
  }
  if (config.boot?.seeds?.userconf && !(config.user?.password || config.user?.passwordHash)) {
    problems.push('boot.seeds.userconf: needs user.name with password or passwordHash');
  }
  if (config.diskId !== undefined) {
    if (!target.diskId || !target.setDiskId) problems.push('diskId: the image has no MBR disk identifier to change');
    if (config.diskId === 'hostname' && !config.hostname) problems.push('diskId: "hostname" needs hostname to be set');
  }
  if (config.wireguard) {
    const { problem } = await wireguardMethod(ctx);
    if (problem) problems.push(problem);
  }
  const needsCmdline = config.wifi !== undefined || config.boot?.cmdline !== undefined;
  if (needsCmdline && !(await editor.exists('boot', '/cmdline.txt'))) problems.push('the boot partition has no cmdline.txt to edit');
  if (problems.length > 0) {
    throw new PiimgError('E_CONFIG', `the configuration does not fit this image:\n  ${problems.join('\n  ')}`, {
      issues: problems.map((message) => ({ path: message.slice(0, message.indexOf(':')), message })),
    });
  }
}

/**
 * Applies a device configuration to the boot (FAT) and root (ext4) volumes
 * of a Raspberry Pi OS image, directly in the files the running system
 * reads, so nothing depends on first-boot hooks. Writes happen only where the
 * image differs from the configuration: applying twice changes nothing the
 * second time (except diskId: "random", which draws a new id each run).
 */
export async function applyConfig(target: ApplyTarget, loaded: LoadedConfig, options: ApplyOptions = {}): Promise<ApplyReport> {
  const editor = new Editor(target.boot, target.root, options);
  const release: Release = await detectRelease(editor);
  const ctx: RecipeContext = {
    editor,
    config: loaded.config,
    release,
    baseDir: loaded.baseDir,
    secrets: new Set(configSecrets(loaded.config)),
    now: options.now ?? defaultClock(),
  };
  // Sources were checked by loadConfig; check again for configs built with parseConfig.
  await checkSources(loaded.config, loaded.baseDir);
  await preflight(ctx, target);
  await applyDiskId(ctx, target);
  await applyHostname(ctx);
  await applyUser(ctx);
  await applySsh(ctx);
  await applyWifi(ctx);
  await applyWireguard(ctx);
  await applyTimezone(ctx);
  await applyLocale(ctx);
  await applyKeyboard(ctx);
  await applyFiles(ctx);
  await applyServices(ctx);
  await applyPresets(ctx);
  await applyCloudInit(ctx);
  await applyBootConfig(ctx);
  await applySeeds(ctx);
  return editor.redact(ctx.secrets);
}

