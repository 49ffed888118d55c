import { PiimgError } from '../errors.js';

/**
 * Splits an absolute volume path into its components, resolving "." and ".."
 * lexically and never above the root. Rejects NUL bytes and relative paths.
 */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new PiimgError('EINVAL', `path must be absolute: ${JSON.stringify(path)}`, { path });
  }
  if (path.includes('\0')) {
    throw new PiimgError('EINVAL', 'path contains a NUL byte', { path });
  }
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts;
}

/** The absolute form of a volume path: "." and ".." resolved lexically, never above "/", no trailing slash. */
export function normalizePath(path: string): string {
  return '/' + splitPath(path).join('/');
}

export function parentAndName(path: string): { parent: string; name: string } {
  const parts = splitPath(path);
  const name = parts.pop();
  if (name === undefined) {
    throw new PiimgError('EINVAL', 'the root directory has no name', { path });
  }
  return { parent: '/' + parts.join('/'), name };
}

/** Why a directory entry name read from an image cannot be used as a path component. */
export type BadNameReason = 'empty' | 'dot' | 'slash' | 'nul';

/**
 * A directory entry name read from an image must be one path component:
 * non-empty, not "." or "..", without "/" or NUL. Anything else would let a
 * crafted image name a different file, or a place outside an extraction
 * directory on the host, once the name is joined into a path.
 */
export function entryNameProblem(name: string): BadNameReason | undefined {
  if (name.length === 0) return 'empty';
  if (name === '.' || name === '..') return 'dot';
  if (name.includes('/')) return 'slash';
  if (name.includes('\0')) return 'nul';
  return undefined;
}

/** A name left out of a directory listing because it is not one path component. */
export interface BadEntryName {
  /** The directory holding the entry. */
  dir: string;
  /** The name as read, escaped for display (see escapeName). */
  name: string;
  reason: BadNameReason;
}

/** Options of `Volume.readdir`. */
export interface ReaddirOptions {
  /**
   * Called for every entry whose name is not a single path component
   * ("", ".", "..", or holding "/" or NUL). Such entries are never
   * returned by readdir, with or without this callback.
   */
  onBadName?: (bad: BadEntryName) => void;
}

/** Keeps the usable names, reporting the others. */
export function filterEntryNames<T extends { name: string }>(dir: string, entries: T[], options: ReaddirOptions = {}): T[] {
  return entries.filter((entry) => {
    const reason = entryNameProblem(entry.name);
    if (reason === undefined) return true;
    options.onBadName?.({ dir, name: escapeName(entry.name), reason });
    return false;
  });
}

// ---- names that are not valid UTF-8 ----
//
// ext4 names are bytes. Names that are valid UTF-8 become ordinary strings;
// every byte of a name that is not valid UTF-8 becomes the lone surrogate
// U+DC00 + byte (as Python's "surrogateescape" does). Valid UTF-8 never
// decodes to a lone surrogate, so the mapping is reversible and such a name
// can be passed back into any volume call unchanged.

const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Length of the valid UTF-8 sequence at `at`, or 0. Ref: Unicode 15 §3.9 Table 3-7. */
function utf8SequenceLength(bytes: Uint8Array, at: number): number {
  const b0 = bytes[at]!;
  if (b0 < 0x80) return 1;
  const cont = (i: number, low = 0x80, high = 0xbf): boolean => at + i < bytes.length && bytes[at + i]! >= low && bytes[at + i]! <= high;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const low = b0 === 0xe0 ? 0xa0 : 0x80;
    const high = b0 === 0xed ? 0x9f : 0xbf;
    return cont(1, low, high) && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const low = b0 === 0xf0 ? 0x90 : 0x80;
    const high = b0 === 0xf4 ? 0x8f : 0xbf;
    return cont(1, low, high) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/** Decodes name bytes; bytes that are not valid UTF-8 become U+DC80..U+DCFF. */
export function decodeNameBytes(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    let out = '';
    for (let at = 0; at < bytes.length; ) {
      const length = utf8SequenceLength(bytes, at);
      if (length === 0) {
        out += String.fromCharCode(0xdc00 + bytes[at]!);
        at += 1;
      } else {
        out += strictDecoder.decode(bytes.subarray(at, at + length));
        at += length;
      }
    }
    return out;
  }
}

/** The inverse of decodeNameBytes. Any other lone surrogate cannot be stored: EINVAL. */
export function encodeNameBytes(name: string, path = name): Uint8Array {
  if (!/[\ud800-\udfff]/.test(name)) return encoder.encode(name);
  const out: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < name.length) {
      const next = name.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out.push(...encoder.encode(name.slice(i, i + 2)));
        i += 1;
        continue;
      }
    }
    if (unit >= 0xdc80 && unit <= 0xdcff) out.push(unit - 0xdc00);
    else if (unit >= 0xd800 && unit <= 0xdfff) throw new PiimgError('EINVAL', 'name holds a lone UTF-16 surrogate', { path });
    else out.push(...encoder.encode(name[i]!));
  }
  return Uint8Array.from(out);
}

/** True when the name came from bytes that are not valid UTF-8 (see decodeNameBytes). */
export function hasEscapedBytes(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < name.length && (name.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      i += 1;
      continue;
    }
    if (unit >= 0xdc80 && unit <= 0xdcff) return true;
  }
  return false;
}

/**
 * A name or path made safe to print: bytes that were not valid UTF-8 as
 * `\xNN`, control characters (which could drive a terminal) as `\xNN` or `\u00NN`, other
 * lone surrogates as `\uNNNN`, and the backslash itself as `\\`.
 */
export function escapeName(name: string): string {
  let out = '';
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < name.length && (name.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      out += name.slice(i, i + 2);
      i += 1;
    } else if (unit >= 0xdc80 && unit <= 0xdcff) out += `\\x${(unit - 0xdc00).toString(16).padStart(2, '0')}`;
    else if (unit >= 0xd800 && unit <= 0xdfff) out += `\\u${unit.toString(16).padStart(4, '0')}`;
    else if (unit < 0x20 || unit === 0x7f) out += `\\x${unit.toString(16).padStart(2, '0')}`;
    else if (unit >= 0x80 && unit <= 0x9f) out += `\\u${unit.toString(16).padStart(4, '0')}`;
    else if (unit === 0x5c) out += '\\\\';
    else out += name[i];
  }
  return out;
}
