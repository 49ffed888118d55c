/**
 * A reader for NetworkManager keyfiles written independently of piimg's
 * writer, with GLib's GKeyFile rules as NetworkManager uses them
 * (nm-settings-keyfile(5); GLib "Desktop Entry"-style key files):
 * - `#` starts a comment line, blank lines are ignored;
 * - `[group]` starts a group; a group named twice continues the first;
 * - `key=value`, spaces around `=` dropped; a repeated key keeps the last value;
 * - a line that is none of these, or a key before any group, is an error;
 * - value escapes `\s` `\n` `\t` `\r` `\\`, and `\;` inside `;`-separated lists.
 */
export type Keyfile = Map<string, Map<string, string>>;

export function parseKeyfile(text: string): Keyfile {
  const groups: Keyfile = new Map();
  let current: Map<string, string> | undefined;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.replace(/^[ \t]+/, '').replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[([^[\]\x00-\x1f]+)\]$/.exec(line);
    if (header) {
      const name = header[1]!;
      current = groups.get(name) ?? new Map();
      groups.set(name, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`line ${index + 1}: not a key-value pair, group or comment: ${JSON.stringify(line)}`);
    if (!current) throw new Error(`line ${index + 1}: key before the first group`);
    const key = line.slice(0, eq).trimEnd();
    if (!/^[A-Za-z0-9_.\-[\]@]+$/.test(key)) throw new Error(`line ${index + 1}: invalid key ${JSON.stringify(key)}`);
    current.set(key, line.slice(eq + 1).replace(/^[ \t]+/, ''));
  }
  return groups;
}

function unescape(raw: string, list: boolean): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const next = raw[++i];
    if (next === 's') out += ' ';
    else if (next === 'n') out += '\n';
    else if (next === 't') out += '\t';
    else if (next === 'r') out += '\r';
    else if (next === '\\') out += '\\';
    else if (next === ';' && list) out += ';';
    else throw new Error(`invalid escape \\${next ?? ''} in ${JSON.stringify(raw)}`);
  }
  return out;
}

/** A string value, unescaped; undefined when the group or key is missing. */
export function keyfileString(file: Keyfile, group: string, key: string): string | undefined {
  const raw = file.get(group)?.get(key);
  return raw === undefined ? undefined : unescape(raw, false);
}

/** A `;`-separated list; the trailing separator NetworkManager writes is not an item. */
export function keyfileList(file: Keyfile, group: string, key: string): string[] | undefined {
  const raw = file.get(group)?.get(key);
  if (raw === undefined) return undefined;
  const items: string[] = [];
  let item = '';
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '\\' && i + 1 < raw.length) {
      item += raw[i]! + raw[i + 1]!;
      i++;
    } else if (raw[i] === ';') {
      items.push(unescape(item, true));
      item = '';
    } else item += raw[i];
  }
  if (item !== '') items.push(unescape(item, true));
  return items;
}

/** A boolean as GKeyFile reads it: "true"/"false" (also "1"/"0"). */
export function keyfileBoolean(file: Keyfile, group: string, key: string): boolean | undefined {
  const raw = keyfileString(file, group, key);
  if (raw === undefined) return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new Error(`[${group}] ${key}=${raw} is not a boolean`);
}

/**
 * [wifi] ssid as NetworkManager's keyfile reader takes it: a list of byte
 * values ("72;111;") when every item is a number 0-255, else the UTF-8 text.
 */
export function keyfileSsid(file: Keyfile): Uint8Array | undefined {
  const raw = file.get('wifi')?.get('ssid');
  if (raw === undefined) return undefined;
  const items = raw.replace(/;$/, '').split(';');
  if (raw.includes(';') && items.every((item) => /^\d{1,3}$/.test(item) && Number(item) <= 255)) {
    return new Uint8Array(items.map(Number));
  }
  return new TextEncoder().encode(unescape(raw, false));
}
