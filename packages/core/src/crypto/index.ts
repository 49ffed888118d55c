export { sha512Crypt, verifySha512Crypt, parseSha512Crypt, randomSalt } from './sha512-crypt.js';
export type { Sha512CryptOptions } from './sha512-crypt.js';
export { wifiPsk } from './wifi.js';
export { generateWireguardKeyPair, wireguardPublicKey, decodeWireguardKey } from './wireguard.js';
export type { WireguardKeyPair } from './wireguard.js';
