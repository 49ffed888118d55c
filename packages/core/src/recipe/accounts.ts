import { PiimgError } from '../errors.js';
import type { Volume } from '../fs/volume.js';
import { Editor } from './context.js';

/**
 * The colon-separated account databases: passwd(5), shadow(5), group(5),
 * gshadow(5). Lines we do not touch are written back byte for byte.
 */
export class AccountTable {
  private constructor(
    readonly path: string,
    private readonly lines: string[],
    private readonly fieldCount: number,
  ) {}

  static parse(path: string, text: string | undefined, fieldCount: number): AccountTable {
    const lines = (text ?? '').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return new AccountTable(path, lines, fieldCount);
  }

  private index(name: string): number {
    return this.lines.findIndex((line) => line.split(':')[0] === name);
  }

  get(name: string): string[] | undefined {
    const i = this.index(name);
    return i < 0 ? undefined : this.lines[i]!.split(':');
  }

  entries(): string[][] {
    return this.lines.filter((line) => line.trim() !== '' && !line.startsWith('#')).map((line) => line.split(':'));
  }

  set(fields: string[]): void {
    for (const field of fields) {
      if (/[:\n]/.test(field)) throw new PiimgError('EINVAL', `account field contains ":" or a newline in ${this.path}`, { path: this.path });
    }
    while (fields.length < this.fieldCount) fields.push('');
    const line = fields.join(':');
    const i = this.index(fields[0]!);
    if (i < 0) this.lines.push(line);
    else this.lines[i] = line;
  }

  /** Renames the entry `from` in place (its line keeps its position); false when there is none. */
  rename(from: string, to: string): boolean {
    const i = this.index(from);
    if (i < 0) return false;
    if (/[:,\n]/.test(to)) throw new PiimgError('EINVAL', `account name contains ":", "," or a newline in ${this.path}`, { path: this.path });
    this.lines[i] = to + this.lines[i]!.slice(from.length);
    return true;
  }

  /** Replaces `from` by `to` in the comma-separated member lists held in the given fields. */
  renameMember(from: string, to: string, fields: number[]): void {
    for (const [i, line] of this.lines.entries()) {
      if (line.trim() === '' || line.startsWith('#')) continue;
      const parts = line.split(':');
      let changed = false;
      for (const field of fields) {
        if (parts[field] === undefined || parts[field] === '') continue;
        const members = parts[field]!.split(',');
        if (!members.includes(from)) continue;
        parts[field] = members.map((member) => (member === from ? to : member)).join(',');
        changed = true;
      }
      if (changed) this.lines[i] = parts.join(':');
    }
  }

  text(): string {
    return this.lines.length === 0 ? '' : this.lines.join('\n') + '\n';
  }
}

export interface Accounts {
  passwd: AccountTable;
  shadow: AccountTable;
  group: AccountTable;
  gshadow: AccountTable;
}

export async function readAccounts(editor: Editor): Promise<Accounts> {
  return {
    passwd: AccountTable.parse('/etc/passwd', await editor.readText('root', '/etc/passwd'), 7),
    shadow: AccountTable.parse('/etc/shadow', await editor.readText('root', '/etc/shadow'), 9),
    group: AccountTable.parse('/etc/group', await editor.readText('root', '/etc/group'), 4),
    gshadow: AccountTable.parse('/etc/gshadow', await editor.readText('root', '/etc/gshadow'), 4),
  };
}

/** Writes the tables back; unchanged ones are skipped by ensureFile. */
export async function writeAccounts(editor: Editor, accounts: Accounts, user: string): Promise<void> {
  // shadow and gshadow are 0640 root:shadow on Debian; existing files keep their mode and owner.
  const shadowGid = Number(accounts.group.get('shadow')?.[2] ?? 0);
  await editor.ensureFile('root', '/etc/passwd', accounts.passwd.text(), { summary: `account ${user}` });
  await editor.ensureFile('root', '/etc/group', accounts.group.text(), { summary: `groups of ${user}` });
  if (!(await editor.exists('root', '/etc/shadow'))) {
    await editor.ensureFile('root', '/etc/shadow', accounts.shadow.text(), { mode: 0o640, gid: shadowGid, summary: 'password hashes (redacted)' });
  } else {
    await editor.ensureFile('root', '/etc/shadow', accounts.shadow.text(), { summary: 'password hashes (redacted)' });
  }
  if (accounts.gshadow.entries().length > 0 || (await editor.exists('root', '/etc/gshadow'))) {
    await editor.ensureFile('root', '/etc/gshadow', accounts.gshadow.text(), { summary: 'group passwords (redacted)' });
  }
}

/**
 * Resolves "user:group", "user" or "uid:gid" through the image's own
 * /etc/passwd and /etc/group, never the host's.
 */
export function resolveOwner(accounts: Accounts, owner: string | undefined, what: string): { uid: number; gid: number } {
  if (owner === undefined) return { uid: 0, gid: 0 };
  const [userPart, groupPart] = owner.split(':') as [string, string | undefined];
  let uid: number;
  let primaryGid: number | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = accounts.passwd.entries().find((fields) => fields[2] === userPart);
    primaryGid = entry ? Number(entry[3]) : undefined;
  } else {
    const entry = accounts.passwd.get(userPart);
    if (!entry) throw new PiimgError('E_CONFIG', `${what}: user "${userPart}" does not exist in the image's /etc/passwd`, { owner });
    uid = Number(entry[2]);
    primaryGid = Number(entry[3]);
  }
  let gid: number;
  if (groupPart === undefined) {
    if (primaryGid === undefined) throw new PiimgError('E_CONFIG', `${what}: give a group for uid ${uid} ("${uid}:gid")`, { owner });
    gid = primaryGid;
  } else if (/^\d+$/.test(groupPart)) {
    gid = Number(groupPart);
  } else {
    const entry = accounts.group.get(groupPart);
    if (!entry) throw new PiimgError('E_CONFIG', `${what}: group "${groupPart}" does not exist in the image's /etc/group`, { owner });
    gid = Number(entry[2]);
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid > 0xffffffff || gid > 0xffffffff) {
    throw new PiimgError('E_CONFIG', `${what}: owner ${owner} is out of range`, { owner });
  }
  return { uid, gid };
}

/**
 * Resolves an owner given as "user:group", "user" or "uid:gid" through the
 * image's own /etc/passwd and /etc/group (never the host's).
 */
export async function resolveImageOwner(root: Volume, owner: string): Promise<{ uid: number; gid: number }> {
  return resolveOwner(await readAccounts(new Editor(root, root)), owner, 'owner');
}
