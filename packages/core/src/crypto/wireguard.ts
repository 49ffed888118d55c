import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { PiimgError } from '../errors.js';

/** PKCS#8 prefix of an X25519 private key (RFC 8410 §7): the 32 key bytes follow. */
const PKCS8_X25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);
const KEY_BYTES = 32;

/** A WireGuard key pair. */
export interface WireguardKeyPair {
  /** Base64 of the 32-byte X25519 private key, as `wg genkey` prints it. */
  privateKey: string;
  /** Base64 of the 32-byte public key, as `wg pubkey` prints it. */
  publicKey: string;
}

/** Decodes a WireGuard key: base64 of exactly 32 bytes. */
export function decodeWireguardKey(keyBase64: string, what = 'WireGuard key'): Uint8Array {
  if (!/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(keyBase64)) {
    throw new PiimgError('EINVAL', `${what} must be 44 characters of base64 (32 bytes)`, {});
  }
  return new Uint8Array(Buffer.from(keyBase64, 'base64'));
}

/** The public key of a base64 X25519 private key. */
export function wireguardPublicKey(privateKeyBase64: string): string {
  const raw = decodeWireguardKey(privateKeyBase64, 'WireGuard private key');
  const der = new Uint8Array(PKCS8_X25519_PREFIX.length + KEY_BYTES);
  der.set(PKCS8_X25519_PREFIX);
  der.set(raw, PKCS8_X25519_PREFIX.length);
  const privateKey = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return Buffer.from(spki.subarray(spki.length - KEY_BYTES)).toString('base64');
}

/**
 * A new X25519 key pair. The private key is clamped as `wg genkey` does
 * (RFC 7748 §5), so it is byte-identical to what the WireGuard tools store.
 */
export function generateWireguardKeyPair(
  options: { random?: (byteLength: number) => Uint8Array } = {},
): WireguardKeyPair {
  const bytes = (options.random ?? ((n: number) => new Uint8Array(randomBytes(n))))(KEY_BYTES).slice(0, KEY_BYTES);
  if (bytes.length !== KEY_BYTES) throw new PiimgError('EINVAL', 'random source returned too few bytes', {});
  bytes[0]! &= 248;
  bytes[31]! &= 127;
  bytes[31]! |= 64;
  const privateKey = Buffer.from(bytes).toString('base64');
  return { privateKey, publicKey: wireguardPublicKey(privateKey) };
}
