import type { RecipeContext } from './types.js';

/**
 * cloud-init reads /etc/cloud/cloud.cfg, then /etc/cloud/cloud.cfg.d/*.cfg in
 * lexical order, a later file overriding the top-level keys of an earlier one
 * (cloudinit/util.py read_conf_d, mergemanydict). "99_zz" sorts after
 * Raspberry Pi OS's 99_raspberry-pi.cfg and 99_default.cfg. User-data on the
 * boot partition (boot.seeds.cloudInit) still overrides this file.
 */
export const CLOUD_INIT_DROP_IN = '/etc/cloud/cloud.cfg.d/99_zz-piimg.cfg';
const CONFIG_DIR = '/etc/cloud/cloud.cfg.d';
const MAX_CONFIG_FILES = 256;
const MAX_CONFIG_BYTES = 1 << 20;

/** The top-level keys set by the image's own cloud-init configuration (our drop-in excluded). */
async function imageKeys(ctx: RecipeContext): Promise<Set<string>> {
  const { editor } = ctx;
  const paths = ['/etc/cloud/cloud.cfg'];
  if (await editor.exists('root', CONFIG_DIR)) {
    const names = (await editor.volume('root').readdir(CONFIG_DIR)).map((e) => e.name).filter((n) => n.endsWith('.cfg')).sort();
    for (const name of names.slice(0, MAX_CONFIG_FILES)) paths.push(`${CONFIG_DIR}/${name}`);
  }
  const keys = new Set<string>();
  for (const path of paths) {
    if (path === CLOUD_INIT_DROP_IN) continue;
    const stats = await editor.lstat('root', path);
    if (!stats || stats.size > MAX_CONFIG_BYTES) continue;
    const text = (await editor.readText('root', path)) ?? '';
    for (const match of text.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)\s*:/gm)) keys.add(match[1]!);
  }
  return keys;
}

/**
 * Keeps offline settings in effect on images with cloud-init (Trixie), whose
 * modules run at first boot, and some at every boot:
 * - hostname: set_hostname and update_hostname rewrite /etc/hostname from the
 *   datasource (meta-data local-hostname) or user-data; update_etc_hosts
 *   rewrites /etc/hosts from a template. `preserve_hostname: true` makes the
 *   first two do nothing (cc_set_hostname, cc_update_hostname) and
 *   `manage_etc_hosts: false` leaves /etc/hosts alone (cc_update_etc_hosts).
 * - user: users_groups creates the default user (Raspberry Pi OS: `pi`,
 *   lock_passwd: true), and Distro.create_user locks the password of a user
 *   that already exists unless lock_passwd is false. `users: []` asks for no
 *   users at all, so the account written offline is neither locked nor renamed.
 * - locale: cc_locale applies a default locale when none is configured, so
 *   the configured one is repeated here.
 * - timezone, keyboard: cc_timezone and cc_keyboard run only when the key is
 *   set; when the image's own configuration sets it, the configured value
 *   overrides the image's.
 * SSH password logins need nothing here: sshd keeps the first value it reads,
 * and piimg's 00-piimg.conf comes before cloud-init's 50-cloud-init.conf.
 */
export async function applyCloudInit(ctx: RecipeContext): Promise<void> {
  if (!ctx.release.cloudInit) return;
  const { config, editor } = ctx;
  const keys = await imageKeys(ctx);
  const lines: string[] = [];
  if (config.hostname !== undefined) lines.push('preserve_hostname: true', 'manage_etc_hosts: false');
  if (config.user !== undefined) lines.push('users: []');
  if (config.locale !== undefined) lines.push(`locale: ${config.locale}`);
  if (config.timezone !== undefined && keys.has('timezone')) lines.push(`timezone: ${config.timezone}`);
  if (config.keyboard !== undefined && keys.has('keyboard')) {
    const keyboard = typeof config.keyboard === 'string' ? { layout: config.keyboard } : config.keyboard;
    lines.push('keyboard:', `  layout: "${keyboard.layout}"`);
    if (keyboard.model !== undefined) lines.push(`  model: "${keyboard.model}"`);
    if (keyboard.variant !== undefined) lines.push(`  variant: "${keyboard.variant}"`);
    if (keyboard.options !== undefined) lines.push(`  options: "${keyboard.options}"`);
  }
  if (lines.length === 0) return;
  const text = ['# Written by piimg: settings made offline in this image stay in effect after', "# cloud-init's first boot.", ...lines, ''].join('\n');
  await editor.ensureFile('root', CLOUD_INIT_DROP_IN, text, { mode: 0o644, uid: 0, gid: 0, summary: lines.filter((l) => !l.startsWith(' ')).map((l) => l.slice(0, l.indexOf(':'))).join(', ') });
}
