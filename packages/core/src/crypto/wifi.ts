import { pbkdf2Sync } from 'node:crypto';
import { PiimgError } from '../errors.js';

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
  return pbkdf2Sync(pass, ssidBytes, 4096, 32, 'sha1').toString('hex');
}
