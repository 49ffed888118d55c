import { PiimgError } from '../errors.js';
import { sha512Crypt, verifySha512Crypt } from '../crypto/sha512-crypt.js';
import { AccountTable, readAccounts, writeAccounts, type Accounts } from './accounts.js';
import { disableUnit, enableUnit, findUnit, maskUnit, SYSTEM_UNIT_DIR } from './systemd.js';
import type { RecipeContext } from './types.js';

/** The groups pi-gen gives the first user (stage1/01-sys-tweaks, FIRST_USER_GROUPS). */
export const DEFAULT_USER_GROUPS = [
  'adm', 'dialout', 'cdrom', 'audio', 'users', 'sudo', 'video', 'games', 'plugdev', 'input', 'gpio', 'spi', 'i2c', 'netdev', 'render',
];
const FIRST_UID = 1000;
const LAST_UID = 59999;
const MAX_SKEL_ENTRIES = 10_000;
const NOLOGIN_SHELLS = new Set(['/usr/sbin/nologin', '/sbin/nologin', '/bin/false', '/usr/bin/false']);
/** userconf-pi's first user, which rename-user gives the configured name (uid 1000 since Raspbian). */
const PLACEHOLDER_UID = '1000';

function daysSinceEpoch(date: Date): number {
  return Math.floor(date.getTime() / 86_400_000);
}

function freeId(taken: Set<number>, from: number): number {
  for (let id = from; id <= LAST_UID; id++) if (!taken.has(id)) return id;
  throw new PiimgError('E_IMAGE', 'no free uid/gid left between 1000 and 59999', {});
}

/** The user who owns authorized_keys: the configured one, else the first regular user of the image. */
export function loginUser(ctx: RecipeContext, accounts: Accounts): string[] | undefined {
  if (ctx.config.user) return accounts.passwd.get(ctx.config.user.name);
  return accounts.passwd.entries().find((fields) => {
    const uid = Number(fields[2]);
    return uid >= FIRST_UID && uid <= LAST_UID;
  });
}

/** A shadow password field that no password matches: "!" (locked, passwd -l) or "*". */
function locked(hash: string | undefined): boolean {
  return hash === undefined || hash.startsWith('!') || hash.startsWith('*');
}

async function renameFlowPresent(ctx: RecipeContext): Promise<boolean> {
  return (await findUnit(ctx.editor, 'userconfig.service')) !== undefined || (await ctx.editor.exists('root', '/usr/bin/rename-user'));
}

/**
 * The unconfigured first user of Raspberry Pi OS (Bookworm and later): uid 1000 with a
 * locked password, waiting for userconf-pi's wizard or cloud-init's rename-user to name it.
 * Recognised by the locked password plus a nologin shell (Trixie 2026) or the rename flow
 * being installed; a real configured user has a usable password.
 */
export async function placeholderUser(ctx: RecipeContext, accounts: Accounts): Promise<string[] | undefined> {
  const entry = accounts.passwd.entries().find((fields) => fields[2] === PLACEHOLDER_UID);
  if (!entry || !locked(accounts.shadow.get(entry[0]!)?.[1])) return undefined;
  if (NOLOGIN_SHELLS.has(entry[6] ?? '') || (await renameFlowPresent(ctx))) return entry;
  return undefined;
}

/** The placeholder that the configured user replaces, when it is one (see placeholderUser). */
export async function placeholderToRename(ctx: RecipeContext, accounts: Accounts): Promise<string[] | undefined> {
  const user = ctx.config.user;
  if (!user || accounts.passwd.get(user.name)) return undefined;
  if (user.uid !== undefined && String(user.uid) !== PLACEHOLDER_UID) return undefined;
  const placeholder = await placeholderUser(ctx, accounts);
  if (!placeholder || accounts.group.get(user.name)) return undefined;
  return placeholder;
}

/**
 * Gives the placeholder account the configured name, as userconf-pi's rename-user does
 * (usermod -l, usermod -m -d, groupmod -n): passwd, shadow, its own group and every
 * membership in group and gshadow, subuid and subgid, the home directory, and the
 * 010_pi-nopasswd sudoers line of older images. uid, gid and the files' owners stay.
 */
async function renamePlaceholder(ctx: RecipeContext, accounts: Accounts, from: string[], to: string): Promise<Map<string, AccountTable>> {
  const { editor } = ctx;
  const old = from[0]!;
  const oldHome = from[5] ?? '';
  const home = oldHome === `/home/${old}` ? `/home/${to}` : oldHome;
  accounts.passwd.rename(old, to);
  const entry = accounts.passwd.get(to)!;
  entry[5] = home;
  entry[6] = ctx.config.user?.shell ?? '/bin/bash';
  accounts.passwd.set(entry);
  accounts.shadow.rename(old, to);
  const ownGroup = accounts.group.get(old);
  if (ownGroup && ownGroup[2] === from[3]) {
    accounts.group.rename(old, to);
    accounts.gshadow.rename(old, to);
  }
  accounts.group.renameMember(old, to, [3]);
  accounts.gshadow.renameMember(old, to, [2, 3]);
  const subIds = new Map<string, AccountTable>();
  for (const path of ['/etc/subuid', '/etc/subgid']) {
    const text = await editor.readText('root', path);
    if (text === undefined) continue;
    const table = AccountTable.parse(path, text, 3);
    if (table.rename(old, to)) subIds.set(path, table);
  }
  if (home !== oldHome) await editor.ensureMoved('root', oldHome, home, `home of ${to} (was ${oldHome})`);
  const sudoers = '/etc/sudoers.d/010_pi-nopasswd';
  const rules = await editor.readText('root', sudoers);
  if (rules !== undefined && new RegExp(`^${old}\\s`, 'm').test(rules)) {
    await editor.ensureFile('root', sudoers, rules.replace(new RegExp(`^${old}(\\s)`, 'gm'), `${to}$1`), { summary: `sudo rule of ${to}` });
  }
  return subIds;
}

/** The hash to store: a given hash, the image's hash when it already matches the password, else a new one. */
export function chooseHash(ctx: RecipeContext, current: string | undefined): string | undefined {
  const user = ctx.config.user;
  if (!user) return undefined;
  if (user.passwordHash !== undefined) return user.passwordHash;
  if (user.password === undefined) return undefined;
  // Re-hashing would pick a new salt and change the image on every run.
  if (current !== undefined && verifySha512Crypt(user.password, current)) return current;
  return sha512Crypt(user.password, { random: ctx.editor.random });
}

function addToGroups(ctx: RecipeContext, accounts: Accounts, user: string, groups: string[], warnMissing: boolean): void {
  for (const name of groups) {
    const fields = accounts.group.get(name);
    if (!fields) {
      if (warnMissing) ctx.editor.warn(`group ${name} does not exist in the image; ${user} is not added to it`);
      continue;
    }
    const members = fields[3] ? fields[3].split(',') : [];
    if (!members.includes(user)) accounts.group.set([fields[0]!, fields[1]!, fields[2]!, [...members, user].join(',')]);
    const shadowFields = accounts.gshadow.get(name);
    if (shadowFields) {
      const shadowMembers = shadowFields[3] ? shadowFields[3].split(',') : [];
      if (!shadowMembers.includes(user)) {
        accounts.gshadow.set([shadowFields[0]!, shadowFields[1] ?? '!', shadowFields[2] ?? '', [...shadowMembers, user].join(',')]);
      }
    }
  }
}

async function copySkel(ctx: RecipeContext, from: string, to: string, uid: number, gid: number, budget: { left: number }): Promise<void> {
  const root = ctx.editor.volume('root');
  for (const entry of (await root.readdir(from)).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (--budget.left < 0) throw new PiimgError('E_LIMIT', '/etc/skel has too many entries', { path: from });
    const source = `${from}/${entry.name}`;
    const target = `${to}/${entry.name}`;
    const stats = await root.lstat(source);
    if (stats.type === 'directory') {
      await ctx.editor.ensureDir('root', target, { mode: stats.mode & 0o7777, uid, gid });
      await copySkel(ctx, source, target, uid, gid, budget);
    } else if (stats.type === 'symlink') {
      await ctx.editor.ensureSymlink('root', target, await root.readlink(source), { uid, gid });
    } else if (stats.type === 'file') {
      if (!(await ctx.editor.exists('root', target))) {
        await ctx.editor.ensureFile('root', target, await root.readFile(source), { mode: stats.mode & 0o7777, uid, gid, summary: `from /etc/skel` });
      }
    }
  }
}

/**
 * The user: an existing account gets its password changed; when uid 1000 is
 * Raspberry Pi OS's unconfigured placeholder, it is renamed to the configured
 * name (what userconf-pi and cloud-init's Raspberry Pi OS distro do); otherwise
 * a missing user is created in passwd, shadow, group and gshadow with a home
 * from /etc/skel, as adduser(8) would. Setting a user also turns off the
 * first-boot rename-user flow, which would otherwise ask for a new user on the
 * console.
 */
export async function applyUser(ctx: RecipeContext): Promise<void> {
  const user = ctx.config.user;
  if (!user) return;
  const { editor } = ctx;
  const accounts = await readAccounts(editor);
  let entry = accounts.passwd.get(user.name);
  const today = String(daysSinceEpoch(ctx.now()));
  const placeholder = entry ? undefined : await placeholderToRename(ctx, accounts);
  let subIds = new Map<string, AccountTable>();
  if (placeholder) {
    subIds = await renamePlaceholder(ctx, accounts, placeholder, user.name);
    entry = accounts.passwd.get(user.name)!;
    if (user.groups) addToGroups(ctx, accounts, user.name, user.groups, true);
  } else if (!entry) {
    const takenUids = new Set(accounts.passwd.entries().map((fields) => Number(fields[2])));
    const takenGids = new Set(accounts.group.entries().map((fields) => Number(fields[2])));
    if (user.uid !== undefined && takenUids.has(user.uid)) {
      throw new PiimgError('E_CONFIG', `user.uid: uid ${user.uid} is already used in the image`, { uid: user.uid });
    }
    const uid = user.uid ?? freeId(takenUids, FIRST_UID);
    let group = accounts.group.get(user.name);
    if (!group) {
      const gid = takenGids.has(uid) ? freeId(takenGids, FIRST_UID) : uid;
      group = [user.name, 'x', String(gid), ''];
      accounts.group.set(group);
      accounts.gshadow.set([user.name, '!', '', '']);
    }
    const gid = Number(group[2]);
    const home = `/home/${user.name}`;
    entry = [user.name, 'x', String(uid), String(gid), ',,,', home, user.shell ?? '/bin/bash'];
    accounts.passwd.set(entry);
    accounts.shadow.set([user.name, '!', today, '0', '99999', '7', '', '', '']);
    addToGroups(ctx, accounts, user.name, user.groups ?? DEFAULT_USER_GROUPS, user.groups !== undefined);
    // Debian's adduser makes homes 0700 since Bookworm (DIR_MODE), 0755 before.
    const homeMode = ctx.release.version !== undefined && ctx.release.version < 12 ? 0o755 : 0o700;
    if (!(await editor.exists('root', home))) {
      await editor.ensureDir('root', home, { mode: homeMode, uid, gid });
      if (await editor.exists('root', '/etc/skel')) await copySkel(ctx, '/etc/skel', home, uid, gid, { left: MAX_SKEL_ENTRIES });
    }
  } else {
    // The configured name is the placeholder's own: make it a usable account (a login shell).
    if (NOLOGIN_SHELLS.has(entry[6] ?? '') && (await placeholderUser(ctx, accounts))?.[0] === user.name) {
      entry[6] = user.shell ?? '/bin/bash';
      accounts.passwd.set(entry);
    }
    if (user.uid !== undefined && Number(entry[2]) !== user.uid) {
      editor.warn(`user ${user.name} exists with uid ${entry[2]}; piimg does not change the uid of an existing user`);
    }
    // An existing user joins the listed groups; memberships are never removed.
    if (user.groups) addToGroups(ctx, accounts, user.name, user.groups, true);
  }
  const shadow = accounts.shadow.get(user.name) ?? [user.name, '!', today, '0', '99999', '7', '', '', ''];
  const hash = chooseHash(ctx, shadow[1]);
  if (hash !== undefined) {
    ctx.secrets.add(hash);
    if (shadow[1] !== hash) {
      shadow[1] = hash;
      shadow[2] = today;
    }
  }
  accounts.shadow.set(shadow);
  await writeAccounts(editor, accounts, user.name);
  for (const [path, table] of subIds) await editor.ensureFile('root', path, table.text(), { summary: `subordinate ids of ${user.name}` });
  await disableRenameUserFlow(ctx);
}

/**
 * Turns off userconf-pi's first-boot "create a user" flow, as its
 * cancel-rename script does: userconfig.service off, the console login back
 * on tty1, and its sshd banner drop-in gone.
 */
async function disableRenameUserFlow(ctx: RecipeContext): Promise<void> {
  const { editor } = ctx;
  if (!(await findUnit(editor, 'userconfig.service'))) return;
  await disableUnit(editor, 'userconfig.service');
  await maskUnit(editor, 'userconfig.service');
  if (await findUnit(editor, 'getty@.service')) {
    const link = `${SYSTEM_UNIT_DIR}/getty.target.wants/getty@tty1.service`;
    if (!(await editor.lstat('root', link))) await enableUnit(editor, 'getty@tty1.service');
  }
  await editor.ensureAbsent('root', '/etc/ssh/sshd_config.d/rename_user.conf', 'first-boot rename-user banner removed');
  await editor.ensureAbsent('root', '/etc/xdg/autostart/piwiz.desktop', 'first-boot wizard autostart removed');
}

/**
 * SSH: the ssh.service links (what `systemctl enable ssh` makes), a
 * sshd_config.d drop-in for password logins, and authorized_keys.
 */
export async function applySsh(ctx: RecipeContext): Promise<void> {
  const ssh = ctx.config.ssh;
  if (!ssh) return;
  const { editor } = ctx;
  if (ssh.enabled) {
    if (!(await findUnit(editor, 'ssh.service'))) editor.warn('the image has no ssh.service: install openssh-server to log in over SSH');
    else {
      await enableUnit(editor, 'ssh.service');
    }
  } else {
    await disableUnit(editor, 'ssh.service');
  }
  if (ssh.passwordAuthentication !== undefined) {
    // sshd keeps the first value it reads and includes sshd_config.d/*.conf in lexical order
    // before its own settings (sshd_config(5) "Include"), so "00-" wins over cloud-init's 50-*.conf.
    await editor.ensureFile(
      'root',
      '/etc/ssh/sshd_config.d/00-piimg.conf',
      `# Written by piimg\nPasswordAuthentication ${ssh.passwordAuthentication ? 'yes' : 'no'}\nKbdInteractiveAuthentication no\n`,
      { mode: 0o644, uid: 0, gid: 0, summary: `PasswordAuthentication ${ssh.passwordAuthentication ? 'yes' : 'no'}` },
    );
  }
  if (ssh.authorizedKeys !== undefined) {
    const accounts = await readAccounts(editor);
    const entry = loginUser(ctx, accounts);
    if (!entry) throw new PiimgError('E_CONFIG', 'ssh.authorizedKeys: the image has no regular user; set user.name', {});
    const [name, , uidText, gidText, , home] = entry;
    const uid = Number(uidText);
    const gid = Number(gidText);
    if (!home || !home.startsWith('/')) throw new PiimgError('E_IMAGE', `user ${name} has no home directory in /etc/passwd`, { user: name });
    if (!(await editor.exists('root', home))) await editor.ensureDir('root', home, { mode: 0o700, uid, gid });
    // sshd's StrictModes refuses keys in group- or world-writable places: 0700 and 0600.
    await editor.ensureDir('root', `${home}/.ssh`, { mode: 0o700, uid, gid });
    const content = ssh.authorizedKeys.map((key) => key.trim()).join('\n') + (ssh.authorizedKeys.length > 0 ? '\n' : '');
    await editor.ensureFile('root', `${home}/.ssh/authorized_keys`, content, {
      mode: 0o600,
      uid,
      gid,
      summary: `${ssh.authorizedKeys.length} key(s) for ${name}`,
    });
  }
}
