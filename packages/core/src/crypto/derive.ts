import { hkdfSync } from 'node:crypto';
import { PiimgError } from '../errors.js';

/** Shortest seed accepted: 32 characters (128 bits as hex); `openssl rand -hex 32` gives 64. */
export const MIN_SEED_CHARS = 32;

const encoder = new TextEncoder();
/** HKDF salt (RFC 5869 §3.1): a fixed label, so piimg's derivations differ from any other use of the same seed. */
const HKDF_SALT = encoder.encode('piimg derive v1');
/** HKDF info is limited to 1024 bytes by Node. */
const MAX_PURPOSE_BYTES = 1024;

/** Checks and encodes a seed given by the user (option `seed`, environment PIIMG_SEED). */
export function parseSeed(seed: string | Uint8Array): Uint8Array {
  const bytes = typeof seed === 'string' ? encoder.encode(seed) : seed;
  if (bytes.length < MIN_SEED_CHARS) {
    throw new PiimgError('E_CONFIG', `the seed (PIIMG_SEED) must be at least ${MIN_SEED_CHARS} characters; make one with: openssl rand -hex 32`, {});
  }
  return bytes;
}

/**
 * `byteLength` bytes derived from `key` for one purpose by HKDF-SHA512
 * (RFC 5869). Different purposes give independent bytes; the same key and
 * purpose always give the same bytes.
 */
export function deriveBytes(key: Uint8Array, purpose: string, byteLength: number): Uint8Array {
  const info = encoder.encode(purpose);
  if (info.length > MAX_PURPOSE_BYTES) throw new PiimgError('EINVAL', 'derivation purpose too long', {});
  return new Uint8Array(hkdfSync('sha512', key, HKDF_SALT, info, byteLength));
}
