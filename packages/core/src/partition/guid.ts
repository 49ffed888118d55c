import { PiimgError } from '../errors.js';

/**
 * GUIDs on disk are "mixed-endian": the first three fields (32, 16 and 16
 * bits) are little-endian, the last eight bytes are stored as written.
 * Ref: UEFI 2.10 Appendix A, "EFI_GUID"; RFC 4122 §4.1.2 for the text form.
 */
const GUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Byte order of the text form's hex pairs within the 16 on-disk bytes. */
const TEXT_TO_DISK = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15] as const;

export const GUID_LENGTH_BYTES = 16;
export const NULL_GUID = '00000000-0000-0000-0000-000000000000';

export function isGuid(text: string): boolean {
  return GUID_PATTERN.test(text);
}

/** Reads the 16 bytes at `byteOffset` and returns the lower-case text form. */
export function guidFromBytes(bytes: Uint8Array, byteOffset = 0): string {
  if (byteOffset < 0 || byteOffset + GUID_LENGTH_BYTES > bytes.length) {
    throw new PiimgError('E_OUT_OF_RANGE', `GUID at byte ${byteOffset} is outside a ${bytes.length}-byte buffer`, { byteOffset });
  }
  let hex = '';
  for (let i = 0; i < GUID_LENGTH_BYTES; i++) {
    hex += bytes[byteOffset + TEXT_TO_DISK[i]!]!.toString(16).padStart(2, '0');
  }
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Encodes a GUID in its on-disk byte order. Throws `E_INVALID_ARGUMENT` on a malformed string. */
export function guidToBytes(text: string): Uint8Array {
  if (!isGuid(text)) {
    throw new PiimgError('E_INVALID_ARGUMENT', `"${text.slice(0, 64)}" is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`, {
      value: text.slice(0, 64),
    });
  }
  const hex = text.replace(/-/g, '');
  const out = new Uint8Array(GUID_LENGTH_BYTES);
  for (let i = 0; i < GUID_LENGTH_BYTES; i++) {
    out[TEXT_TO_DISK[i]!] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  }
  return out;
}

/** A random (version 4, RFC 4122 variant) GUID, lower case. */
export function randomGuid(): string {
  const bytes = new Uint8Array(GUID_LENGTH_BYTES);
  globalThis.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
