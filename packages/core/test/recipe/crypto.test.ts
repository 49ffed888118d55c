import { describe, expect, it } from 'vitest';
import { hasTool, run } from '../../../../test/support/tools.js';
import {
  generateWireguardKeyPair,
  sha512Crypt,
  verifySha512Crypt,
  wifiPsk,
  wireguardPublicKey,
} from '../../src/crypto/index.js';

describe('sha512Crypt', () => {
  // Test vectors from the SHA-crypt specification (sha-crypt.txt, "Test vectors").
  const vectors: Array<[string, number | undefined, string, string]> = [
    ['saltstring', undefined, 'Hello world!', '$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1'],
    ['saltstringsaltstring', 10000, 'Hello world!', '$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.'],
    ['toolongsaltstring', 5000, 'This is just a test', '$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0'],
    ['anotherlongsaltstring', 1400, 'a very much longer text to encrypt.  This one even stretches over morethan one line.', '$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1'],
    ['roundstoolow', 10, 'the minimum number is still observed', '$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.'],
  ];
  it.each(vectors)('matches the spec vector with salt %s', (salt, rounds, password, expected) => {
    expect(sha512Crypt(password, salt, rounds)).toBe(expected);
  });

  it('verifies its own hashes and rejects wrong passwords and other schemes', () => {
    const hash = sha512Crypt('raspberry', { random: () => new Uint8Array(16).fill(7) });
    expect(hash).toMatch(/^\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$/);
    expect(verifySha512Crypt('raspberry', hash)).toBe(true);
    expect(verifySha512Crypt('raspberrY', hash)).toBe(false);
    expect(verifySha512Crypt('x', '!')).toBe(false);
    expect(verifySha512Crypt('x', '$y$j9T$abc$def')).toBe(false);
    expect(verifySha512Crypt(vectors[1]![2], vectors[1]![3])).toBe(true);
  });

  it('uses a fresh random salt when none is given', () => {
    expect(sha512Crypt('a')).not.toBe(sha512Crypt('a'));
  });

  it.runIf(hasTool('openssl'))('agrees with openssl passwd -6', () => {
    for (const [password, salt] of [
      ['raspberry', 'abcdefgh'],
      ['p', 'x'],
      ['ünïcødé pass 🙂', 'ABCDEFGHIJKLMNOP'],
      ['a'.repeat(200), 'salt./09'],
    ] as const) {
      const expected = run('openssl', ['passwd', '-6', '-salt', salt, '-stdin'], { input: password + '\n' }).stdout.trim();
      expect(sha512Crypt(password, salt)).toBe(expected);
    }
  });
});

describe('wifiPsk', () => {
  // IEEE 802.11i-2004 Annex H.4.3 test vectors.
  it('matches the 802.11i vectors', () => {
    expect(wifiPsk('password', 'IEEE')).toBe('f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e');
    expect(wifiPsk('ThisIsAPassword', 'ThisIsASSID')).toBe('0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af');
  });
  it('rejects passphrases outside 8..63 printable ASCII', () => {
    expect(() => wifiPsk('short', 'x')).toThrow(/8 to 63/);
    expect(() => wifiPsk('a'.repeat(64), 'x')).toThrow(/8 to 63/);
  });
});

describe('WireGuard keys', () => {
  // RFC 7748 §6.1 (X25519 Diffie-Hellman test vector): Alice's private and public keys.
  it('derives the RFC 7748 public key', () => {
    const alicePrivate = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
    const alicePublic = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64');
    expect(wireguardPublicKey(alicePrivate)).toBe(alicePublic);
  });
  it('generates clamped, reproducible key pairs from the given random source', () => {
    const pair = generateWireguardKeyPair({ random: (n) => new Uint8Array(n).fill(0xff) });
    const raw = Buffer.from(pair.privateKey, 'base64');
    expect(raw[0]! & 7).toBe(0);
    expect(raw[31]! & 0xc0).toBe(0x40);
    expect(generateWireguardKeyPair({ random: (n) => new Uint8Array(n).fill(0xff) })).toEqual(pair);
    expect(wireguardPublicKey(pair.privateKey)).toBe(pair.publicKey);
    expect(generateWireguardKeyPair().privateKey).not.toBe(generateWireguardKeyPair().privateKey);
  });
  it('rejects keys that are not 32 bytes of base64', () => {
    expect(() => wireguardPublicKey('abc')).toThrow(/44 characters/);
  });
});
