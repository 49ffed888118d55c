import type { RecipeContext } from './types.js';

/**
 * Sets one KEY=value line of a shell-style defaults file, keeping every other
 * line. `quote: 'when-needed'` writes plain values bare, as update-locale(8)
 * does in /etc/default/locale; keyboard(5) files quote every value.
 */
export function setShellVariable(text: string, key: string, value: string, options: { quote?: 'always' | 'when-needed' } = {}): string {
  const bare = options.quote === 'when-needed' && /^[A-Za-z0-9_.@:+-]+$/.test(value);
  const line = bare ? `${key}=${value}` : `${key}="${value.replace(/(["\\$`])/g, '\\$1')}"`;
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  const pattern = new RegExp(`^\\s*${key}=`);
  const index = lines.findIndex((l) => pattern.test(l));
  if (index >= 0) {
    lines[index] = line;
    // Later duplicates would win when sourced: drop them.
    for (let i = lines.length - 1; i > index; i--) if (pattern.test(lines[i]!)) lines.splice(i, 1);
  } else {
    lines.push(line);
  }
  return lines.join('\n') + '\n';
}

/** /etc/hostname and the 127.0.1.1 line of /etc/hosts (Debian reference manual §5.1.2). */
export async function applyHostname(ctx: RecipeContext): Promise<void> {
  const hostname = ctx.config.hostname;
  if (hostname === undefined) return;
  const { editor } = ctx;
  await editor.ensureFile('root', '/etc/hostname', `${hostname}\n`, { summary: `hostname ${hostname}` });
  const hosts = (await editor.readText('root', '/etc/hosts')) ?? '127.0.0.1\tlocalhost\n';
  const lines = hosts.replace(/\n$/, '').split('\n');
  const wanted = `127.0.1.1\t${hostname}`;
  const index = lines.findIndex((line) => /^\s*127\.0\.1\.1\s/.test(line));
  if (index >= 0) lines[index] = wanted;
  else {
    const localhost = lines.findIndex((line) => /^\s*127\.0\.0\.1\s/.test(line));
    lines.splice(localhost >= 0 ? localhost + 1 : lines.length, 0, wanted);
  }
  await editor.ensureFile('root', '/etc/hosts', lines.join('\n') + '\n', { summary: `127.0.1.1 ${hostname}` });
}

/**
 * The /etc/localtime link (what systemd and glibc read, localtime(5)), and
 * /etc/timezone where the release still has it: Debian 13's tzdata no longer
 * writes one, so it is updated only when present or on releases before 13.
 */
export async function applyTimezone(ctx: RecipeContext): Promise<void> {
  const timezone = ctx.config.timezone;
  if (timezone === undefined) return;
  const { editor, release } = ctx;
  const legacy = release.version !== undefined && release.version < 13;
  if (legacy || (await editor.lstat('root', '/etc/timezone'))) {
    await editor.ensureFile('root', '/etc/timezone', `${timezone}\n`, { summary: `timezone ${timezone}` });
  }
  await editor.ensureSymlink('root', '/etc/localtime', `/usr/share/zoneinfo/${timezone}`);
}

const MAX_LINKS = 8;

/** Where a chain of symlinks ends (relative targets resolved against the link's directory). */
async function linkTarget(ctx: RecipeContext, path: string): Promise<string> {
  let current = path;
  for (let i = 0; i < MAX_LINKS; i++) {
    const stats = await ctx.editor.lstat('root', current);
    if (stats?.type !== 'symlink') return current;
    const target = await ctx.editor.volume('root').readlink(current);
    const base = target.startsWith('/') ? [] : current.split('/').slice(0, -1);
    const parts: string[] = [];
    for (const part of [...base, ...target.split('/')]) {
      if (part === '' || part === '.') continue;
      if (part === '..') parts.pop();
      else parts.push(part);
    }
    current = '/' + parts.join('/');
  }
  return current;
}

/**
 * LANG in /etc/default/locale (through its link on Debian 13) and the matching line of /etc/locale.gen.
 * The locale data itself is compiled by locale-gen on a running system;
 * C.UTF-8 and locales already compiled into the image work at once.
 */
export async function applyLocale(ctx: RecipeContext): Promise<void> {
  const locale = ctx.config.locale;
  if (locale === undefined) return;
  const { editor } = ctx;
  // Debian 13: /etc/default/locale is a link to /etc/locale.conf (systemd's locale.conf(5)); edit the file it names.
  const path = await linkTarget(ctx, '/etc/default/locale');
  const current = (await editor.readText('root', path)) ?? '';
  await editor.ensureFile('root', path, setShellVariable(current, 'LANG', locale, { quote: 'when-needed' }), { summary: `LANG=${locale}` });
  if (/^C(\.UTF-8)?$/i.test(locale)) return;
  const gen = await editor.readText('root', '/etc/locale.gen');
  if (gen === undefined) {
    editor.warn(`the image has no /etc/locale.gen; ${locale} may not be available`);
    return;
  }
  const charset = locale.includes('.') ? locale.slice(locale.indexOf('.') + 1).replace(/@.*/, '') : 'ISO-8859-1';
  const lines = gen.replace(/\n$/, '').split('\n');
  const escaped = locale.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const enabled = new RegExp(`^${escaped}\\s`);
  const commented = new RegExp(`^#\\s*${escaped}\\s`);
  if (!lines.some((line) => enabled.test(line))) {
    const index = lines.findIndex((line) => commented.test(line));
    if (index >= 0) lines[index] = lines[index]!.replace(/^#\s*/, '');
    else lines.push(`${locale} ${charset.toUpperCase() === 'UTF-8' ? 'UTF-8' : charset}`);
    const archive = await editor.exists('root', `/usr/lib/locale/${locale}`);
    if (!archive) {
      editor.warn(`${locale} is enabled in /etc/locale.gen but is not compiled in the image; run locale-gen on the device (until then programs use the C locale)`);
    }
  }
  await editor.ensureFile('root', '/etc/locale.gen', lines.join('\n') + '\n', { summary: `enabled ${locale}` });
}

/** XKB settings in /etc/default/keyboard (keyboard(5)); console and X read them. */
export async function applyKeyboard(ctx: RecipeContext): Promise<void> {
  const keyboard = ctx.config.keyboard;
  if (keyboard === undefined) return;
  const settings = typeof keyboard === 'string' ? { layout: keyboard } : keyboard;
  let text = (await ctx.editor.readText('root', '/etc/default/keyboard')) ?? '';
  text = setShellVariable(text, 'XKBLAYOUT', settings.layout);
  if (settings.model !== undefined) text = setShellVariable(text, 'XKBMODEL', settings.model);
  if (settings.variant !== undefined) text = setShellVariable(text, 'XKBVARIANT', settings.variant);
  if (settings.options !== undefined) text = setShellVariable(text, 'XKBOPTIONS', settings.options);
  await ctx.editor.ensureFile('root', '/etc/default/keyboard', text, { summary: `XKBLAYOUT=${settings.layout}` });
}
