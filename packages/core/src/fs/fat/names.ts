/**
 * Short (8.3) names: decoding, validation, the lower-case flags and basis
 * names with numeric tails. Ref: FAT spec §6.1 "File/Directory Name" and §7
 * "The Basis-Name Generation Algorithm" / "The Numeric-Tail Generation Algorithm".
 *
 * Short names are stored in an OEM code page; this module uses code page 437
 * (the DOS default, which is also what mtools and Linux assume unless told
 * otherwise). Names piimg writes keep their short part ASCII and put anything
 * else in the long name, so the code page only matters for reading.
 */
import { PiimgError } from '../../errors.js';
import { DIR_NAME_KANJI_E5, MAX_LONG_NAME, NT_LOWER_BASE, NT_LOWER_EXT } from './layout.js';

/** Code page 437, bytes 0x80-0xFF. */
export const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

function decodeOem(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += byte < 0x80 ? String.fromCharCode(byte) : CP437_HIGH[byte - 0x80];
  return out;
}

/** Characters allowed in a short name besides A-Z and 0-9 (FAT spec §6.1). */
const SHORT_SPECIALS = new Set([...'$%\'-_@~`!(){}^#&']);
/** A part of an 8.3 name that maps to a short name as it is (ASCII only, so case mapping is exact). */
const SHORT_EXACT = /^[A-Za-z0-9$%'\-_@~`!(){}^#&]*$/;
/** Characters never allowed in a long name (FAT spec §7). */
const LONG_FORBIDDEN = /[\u0000-\u001f"*/:<>?\\|]/;

/** Decodes DIR_Name into "NAME.EXT", applying the NT lower-case flags. */
export function decodeShortName(raw: Uint8Array, ntRes: number): string {
  const bytes = raw.slice(0, 11);
  if (bytes[0] === DIR_NAME_KANJI_E5) bytes[0] = 0xe5;
  let base = decodeOem(bytes.subarray(0, 8)).replace(/ +$/, '');
  let ext = decodeOem(bytes.subarray(8, 11)).replace(/ +$/, '');
  if (ntRes & NT_LOWER_BASE) base = base.toLowerCase();
  if (ntRes & NT_LOWER_EXT) ext = ext.toLowerCase();
  return ext === '' ? base : `${base}.${ext}`;
}

/** Decodes an 11-byte label field (BS_VolLab or a volume-ID entry): trailing spaces dropped. */
export function decodeShortLabel(raw: Uint8Array): string {
  return decodeOem(raw).replace(/[ \u0000]+$/, '');
}

/** Checksum of DIR_Name stored in every long-name slot. Ref: FAT spec §7 "ChkSum". */
export function shortNameChecksum(raw: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >>> 1) + raw[i]!) & 0xff;
  return sum;
}

/** Rejects names a FAT volume cannot store (EINVAL / ENAMETOOLONG). */
export function validateLongName(name: string, path: string): void {
  if (name.length === 0 || name === '.' || name === '..') {
    throw new PiimgError('EINVAL', `invalid name ${JSON.stringify(name)}`, { path });
  }
  if (name.length > MAX_LONG_NAME) {
    throw new PiimgError('ENAMETOOLONG', `name is ${name.length} UTF-16 units, FAT allows ${MAX_LONG_NAME}`, { path });
  }
  if (LONG_FORBIDDEN.test(name)) {
    throw new PiimgError('EINVAL', `name ${JSON.stringify(name)} contains a character FAT does not allow`, { path });
  }
  // Windows and Linux strip trailing dots and spaces, so such a name would not read back as given.
  if (/[. ]$/.test(name)) {
    throw new PiimgError('EINVAL', `name ${JSON.stringify(name)} ends with a dot or space, which FAT drops`, { path });
  }
}

function isShortChar(ch: string): boolean {
  return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || SHORT_SPECIALS.has(ch);
}

function pad(text: string, length: number): string {
  return text.padEnd(length, ' ');
}

function toRaw(base: string, ext: string): Uint8Array {
  const raw = new Uint8Array(11);
  const text = pad(base, 8) + pad(ext, 3);
  for (let i = 0; i < 11; i++) raw[i] = text.charCodeAt(i);
  if (raw[0] === 0xe5) raw[0] = DIR_NAME_KANJI_E5;
  return raw;
}

/**
 * When `name` can be stored as a short entry alone (8.3, each part entirely
 * upper or entirely lower case), returns its DIR_Name and DIR_NTRes flags.
 */
export function exactShortName(name: string): { raw: Uint8Array; ntRes: number } | undefined {
  const dot = name.lastIndexOf('.');
  const base = dot < 0 ? name : name.slice(0, dot);
  const ext = dot < 0 ? '' : name.slice(dot + 1);
  if (base.length === 0 || base.length > 8 || ext.length > 3) return undefined;
  if (dot >= 0 && ext.length === 0) return undefined;
  let ntRes = 0;
  const partFlag = (part: string, flag: number): boolean => {
    if (!SHORT_EXACT.test(part)) return false;
    const upper = part.toUpperCase();
    if (part === upper) return true;
    if (part === part.toLowerCase()) {
      ntRes |= flag;
      return true;
    }
    return false;
  };
  if (!partFlag(base, NT_LOWER_BASE) || !partFlag(ext, NT_LOWER_EXT)) return undefined;
  return { raw: toRaw(base.toUpperCase(), ext.toUpperCase()), ntRes };
}

/** Key for case-insensitive comparison of names. */
export function nameKey(name: string): string {
  return name.toUpperCase();
}

/** DIR_Name as an 11-character string key, for collision checks. */
export function rawKey(raw: Uint8Array): string {
  let key = '';
  for (let i = 0; i < 11; i++) key += String.fromCharCode(raw[i]!);
  return key;
}

function basisPart(text: string): { chars: string; lossy: boolean } {
  let chars = '';
  let lossy = false;
  for (const ch of text) {
    if (ch === ' ' || ch === '.') {
      lossy = true;
      continue;
    }
    // Map per character: 'ß'.toUpperCase() is 'SS', which would change the length.
    const upper = ch.toUpperCase();
    if (upper.length === 1 && isShortChar(upper)) chars += upper;
    else {
      chars += '_';
      lossy = true;
    }
  }
  return { chars, lossy };
}

/**
 * Generates a short name for a long name that needs one, unique among
 * `taken` (keys from rawKey). Ref: FAT spec §7 basis name and numeric tail;
 * tails run ~1..~999999 with the base shortened to fit, so two names never collide.
 */
export function generateShortName(longName: string, taken: (key: string) => boolean): Uint8Array {
  const trimmed = longName.replace(/^[. ]+/, '');
  const dot = trimmed.lastIndexOf('.');
  const basePart = basisPart(dot <= 0 ? trimmed : trimmed.slice(0, dot));
  const extPart = basisPart(dot <= 0 ? '' : trimmed.slice(dot + 1));
  let base = basePart.chars.slice(0, 8);
  if (base === '') base = '_';
  const ext = extPart.chars.slice(0, 3);
  const lossy = basePart.lossy || extPart.lossy || basePart.chars.length > 8 || extPart.chars.length > 3;
  if (!lossy) {
    const raw = toRaw(base, ext);
    if (!taken(rawKey(raw))) return raw;
  }
  for (let n = 1; n <= 999999; n++) {
    const tail = `~${n}`;
    const raw = toRaw(base.slice(0, 8 - tail.length) + tail, ext);
    if (!taken(rawKey(raw))) return raw;
  }
  throw new PiimgError('ENOSPC', `no free short name for ${JSON.stringify(longName)}`, { name: longName });
}
