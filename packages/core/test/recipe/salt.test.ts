import { describe, expect, it } from 'vitest';
import { deriveBytes } from '../../src/crypto/derive.js';
import { parseSha512Crypt, randomSalt, sha512Crypt } from '../../src/crypto/index.js';

// crypt(5): salt characters are [./0-9A-Za-z]; sha512-crypt uses at most 16 (sha-crypt.txt).
const CRYPT_ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const DRAWS = 800;

/** Counts of each character over all salts; fails on a wrong length or a foreign character. */
function tally(salts: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const salt of salts) {
    expect(salt).toMatch(/^[./0-9A-Za-z]{16}$/);
    for (const char of salt) counts.set(char, (counts.get(char) ?? 0) + 1);
  }
  return counts;
}

function expectFullAlphabet(salts: string[]): void {
  const counts = tally(salts);
  expect([...counts.keys()].sort().join('')).toBe([...CRYPT_ALPHABET].sort().join(''));
  // 12,800 characters, 200 expected per character (standard deviation ~14): a biased
  // mapping (a modulus that is not 64, a half-used byte) lands far outside.
  for (const [char, count] of counts) {
    expect(count, char).toBeGreaterThan(120);
    expect(count, char).toBeLessThan(280);
  }
}

describe('sha512-crypt salts', () => {
  it('are 16 characters that cover the whole 64-character crypt alphabet evenly', () => {
    expectFullAlphabet(Array.from({ length: DRAWS }, () => randomSalt()));
  });

  it('are what sha512Crypt writes when no salt is given', () => {
    const salts = Array.from({ length: DRAWS / 8 }, () => parseSha512Crypt(sha512Crypt('pw', { rounds: 1000 }))!.salt);
    expect(new Set(salts).size).toBe(salts.length);
    // 1,600 characters, 25 expected per character: all 64 show up.
    expect(tally(salts).size).toBe(64);
  });

  it('cover the alphabet evenly when derived (SOURCE_DATE_EPOCH, seed)', () => {
    const key = new TextEncoder().encode('SOURCE_DATE_EPOCH=1700000000');
    expectFullAlphabet(Array.from({ length: DRAWS }, (_, i) => randomSalt((n) => deriveBytes(key, `salt\0sha512-crypt\0user${i}\0host`, n))));
  });
});
