import { PiimgError } from '../errors.js';
import type { Editor } from './context.js';

/**
 * Offline `systemctl enable/disable/mask`: the same symlinks systemctl makes
 * in /etc/systemd/system. Ref: systemd.unit(5) "[Install] Section Options".
 */
export const SYSTEM_UNIT_DIR = '/etc/systemd/system';
const UNIT_SEARCH_PATH = ['/etc/systemd/system', '/lib/systemd/system', '/usr/lib/systemd/system'];
const MAX_ALSO_DEPTH = 8;

/** The [Install] section of a systemd unit, as `systemctl enable` reads it. */
export interface InstallSection {
  wantedBy: string[];
  requiredBy: string[];
  alias: string[];
  also: string[];
  defaultInstance: string | undefined;
  present: boolean;
}

/** Reads the [Install] section; values are space-separated lists, repeated keys add up. */
export function parseInstallSection(text: string): InstallSection {
  const out: InstallSection = { wantedBy: [], requiredBy: [], alias: [], also: [], defaultInstance: undefined, present: false };
  let inInstall = false;
  // Backslash-newline continues a line (systemd.syntax(7)).
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) {
      inInstall = line === '[Install]';
      if (inInstall) out.present = true;
      continue;
    }
    if (!inInstall || line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const values = line.slice(eq + 1).trim().split(/\s+/).filter(Boolean);
    if (key === 'WantedBy') out.wantedBy.push(...values);
    else if (key === 'RequiredBy') out.requiredBy.push(...values);
    else if (key === 'Alias') out.alias.push(...values);
    else if (key === 'Also') out.also.push(...values);
    else if (key === 'DefaultInstance') out.defaultInstance = values[0];
  }
  return out;
}

/** "getty@tty1.service" -> template file "getty@.service"; plain names map to themselves. */
export function unitFileName(unit: string): string {
  const at = unit.indexOf('@');
  if (at < 0) return unit;
  return unit.slice(0, at + 1) + unit.slice(unit.lastIndexOf('.'));
}

/** The unit file's path in the image (the first hit of the search path), or undefined. */
export async function findUnit(editor: Editor, unit: string): Promise<string | undefined> {
  const file = unitFileName(unit);
  for (const dir of UNIT_SEARCH_PATH) {
    const path = `${dir}/${file}`;
    const stats = await editor.lstat('root', path);
    // A link to /dev/null in /etc is a mask, not a unit file.
    if (stats?.type === 'symlink' && dir === SYSTEM_UNIT_DIR && (await editor.volume('root').readlink(path)) === '/dev/null') continue;
    if (stats && (await editor.exists('root', path))) return path;
  }
  return undefined;
}

async function readInstall(editor: Editor, path: string): Promise<InstallSection> {
  return parseInstallSection((await editor.readText('root', path)) ?? '');
}

export async function enableUnit(editor: Editor, unit: string, depth = 0): Promise<void> {
  if (depth > MAX_ALSO_DEPTH) throw new PiimgError('E_LIMIT', `Also= chain of ${unit} is too deep`, { unit });
  const path = await findUnit(editor, unit);
  if (!path) throw new PiimgError('E_CONFIG', `cannot enable ${unit}: the image has no such unit file`, { unit });
  await unmaskUnit(editor, unit);
  const install = await readInstall(editor, path);
  if (!install.present || install.wantedBy.length + install.requiredBy.length + install.alias.length + install.also.length === 0) {
    editor.warn(`${unit} has no [Install] section (it is static or started by another unit); nothing to enable`);
    return;
  }
  let name = unit;
  if (/@\.[a-z]+$/.test(unit)) {
    // A bare template enables its DefaultInstance, as systemctl does.
    if (!install.defaultInstance) {
      editor.warn(`${unit} is a template without DefaultInstance; name an instance such as ${unit.replace('@.', '@name.')}`);
      return;
    }
    name = unit.replace('@.', `@${install.defaultInstance}.`);
  }
  const target = path;
  for (const wanted of install.wantedBy) await editor.ensureSymlink('root', `${SYSTEM_UNIT_DIR}/${wanted}.wants/${name}`, target);
  for (const required of install.requiredBy) await editor.ensureSymlink('root', `${SYSTEM_UNIT_DIR}/${required}.requires/${name}`, target);
  for (const alias of install.alias) {
    if (`${SYSTEM_UNIT_DIR}/${alias}` !== path) await editor.ensureSymlink('root', `${SYSTEM_UNIT_DIR}/${alias}`, target);
  }
  for (const also of install.also) await enableUnit(editor, also, depth + 1);
}

export async function disableUnit(editor: Editor, unit: string): Promise<void> {
  const root = editor.volume('root');
  if (!(await editor.exists('root', SYSTEM_UNIT_DIR))) return;
  for (const entry of await root.readdir(SYSTEM_UNIT_DIR)) {
    if (entry.type !== 'directory' || !/\.(wants|requires|upholds)$/.test(entry.name)) continue;
    const link = `${SYSTEM_UNIT_DIR}/${entry.name}/${unit}`;
    if ((await editor.lstat('root', link))?.type === 'symlink') await editor.ensureAbsent('root', link, `disabled ${unit}`);
  }
  const path = await findUnit(editor, unit);
  if (path) {
    for (const alias of (await readInstall(editor, path)).alias) {
      const link = `${SYSTEM_UNIT_DIR}/${alias}`;
      if ((await editor.lstat('root', link))?.type === 'symlink') await editor.ensureAbsent('root', link, `disabled alias of ${unit}`);
    }
  }
}

export async function maskUnit(editor: Editor, unit: string): Promise<void> {
  const path = `${SYSTEM_UNIT_DIR}/${unit}`;
  const stats = await editor.lstat('root', path);
  if (stats && stats.type !== 'symlink') {
    throw new PiimgError('E_CONFIG', `cannot mask ${unit}: ${path} is a unit file, not a link`, { unit });
  }
  await editor.ensureSymlink('root', path, '/dev/null');
}

async function unmaskUnit(editor: Editor, unit: string): Promise<void> {
  const path = `${SYSTEM_UNIT_DIR}/${unit}`;
  const stats = await editor.lstat('root', path);
  if (stats?.type === 'symlink' && (await editor.volume('root').readlink(path)) === '/dev/null') {
    editor.warn(`${unit} was masked; enabling it removed the mask`);
    await editor.ensureAbsent('root', path, `unmasked ${unit}`);
  }
}
