import { pbkdf2Sync } from 'node:crypto';
import { PiimgError } from '../errors.js';

/** Recent keys: a fleet's devices share their networks, and each key costs 4096 HMAC rounds (a few ms). */
const recent = new Map<string, string>();
const RECENT_MAX = 32;

/**
 * The WPA/WPA2 pre-shared key: PBKDF2-HMAC-SHA1(passphrase, ssid, 4096
 * iterations, 32 bytes), as 64 lower-case hex digits.
 * Ref: IEEE 802.11i-2004 Annex H.4.
 */
export function wifiPsk(passphrase: string, ssid: string): string {
  const pass = new TextEncoder().encode(passphrase);
  const ssidBytes = new TextEncoder().encode(ssid);
  // 802.11i §H.4.1: the passphrase is 8..63 printable ASCII characters, the SSID 1..32 octets.
  if (!/^[\x20-\x7e]{8,63}$/.test(passphrase)) {
    throw new PiimgError('EINVAL', 'a WPA passphrase is 8 to 63 printable ASCII characters', {});
  }
  if (ssidBytes.length < 1 || ssidBytes.length > 32) {
    throw new PiimgError('EINVAL', 'an SSID is 1 to 32 bytes', { ssid });
  }
  const key = `${ssid}\0${passphrase}`;
  let psk = recent.get(key);
  if (psk === undefined) {
    psk = pbkdf2Sync(pass, ssidBytes, 4096, 32, 'sha1').toString('hex');
    if (recent.size >= RECENT_MAX) recent.delete(recent.keys().next().value!);
    recent.set(key, psk);
  }
  return psk;
}
