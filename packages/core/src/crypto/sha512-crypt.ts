import * as nodeCrypto from 'node:crypto';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { PiimgError } from '../errors.js';

/**
 * SHA-512 based crypt(3), the `$6$` scheme accepted by every Raspberry Pi OS
 * release. Ref: Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512"
 * (sha-crypt.txt, 2008); step numbers below follow its algorithm description.
 */
const ROUNDS_DEFAULT = 5000;
const ROUNDS_MIN = 1000;
const ROUNDS_MAX = 999_999_999;
const SALT_MAX_CHARS = 16;
const ALPHABET = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const encoder = new TextEncoder();

function sha512(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash('sha512');
  for (const part of parts) hash.update(part);
  return new Uint8Array(hash.digest());
}

/** Repeats `block` (a 64-byte digest) until `length` bytes are filled. */
function stretch(block: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += block.length) {
    out.set(block.subarray(0, Math.min(block.length, length - offset)), offset);
  }
  return out;
}

function sha512CryptDigest(password: Uint8Array, salt: Uint8Array, rounds: number): Uint8Array {
  // Steps 4-8: digest B = SHA512(P || S || P).
  const digestB = sha512(password, salt, password);
  // Steps 1-3, 9-12: digest A.
  const hashA = createHash('sha512');
  hashA.update(password);
  hashA.update(salt);
  hashA.update(stretch(digestB, password.length));
  for (let length = password.length; length > 0; length >>>= 1) {
    hashA.update(length & 1 ? digestB : password);
  }
  const digestA = new Uint8Array(hashA.digest());
  // Steps 13-16: sequence P from DP = SHA512(P repeated |P| times).
  const hashDP = createHash('sha512');
  for (let i = 0; i < password.length; i++) hashDP.update(password);
  const sequenceP = stretch(new Uint8Array(hashDP.digest()), password.length);
  // Steps 17-20: sequence S from DS = SHA512(S repeated 16 + A[0] times).
  const hashDS = createHash('sha512');
  for (let i = 0; i < 16 + digestA[0]!; i++) hashDS.update(salt);
  const sequenceS = stretch(new Uint8Array(hashDS.digest()), salt.length);
  // Step 21: the rounds.
  let digestC = digestA;
  if (oneShot !== undefined) return stretchRounds(oneShot, digestA, sequenceP, sequenceS, rounds);
  for (let round = 0; round < rounds; round++) {
    const hash = createHash('sha512');
    hash.update(round & 1 ? sequenceP : digestC);
    if (round % 3 !== 0) hash.update(sequenceS);
    if (round % 7 !== 0) hash.update(sequenceP);
    hash.update(round & 1 ? digestC : sequenceP);
    digestC = new Uint8Array(hash.digest());
  }
  return digestC;
}

/** Step 22: the custom base-64 of the digest, with the spec's byte permutation. */
type OneShot = (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Uint8Array;
/** crypto.hash (Node 20.12+, 21.7+): a digest in one call, without a Hash object and its updates. */
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash;

/** The rounds of sha512CryptDigest with crypto.hash over one reused buffer: about 3x faster than a Hash per round. */
function stretchRounds(hash: OneShot, digestA: Uint8Array, sequenceP: Uint8Array, sequenceS: Uint8Array, rounds: number): Uint8Array {
  const scratch = new Uint8Array(2 * digestA.length + sequenceS.length + 2 * sequenceP.length);
  let digestC = digestA;
  for (let round = 0; round < rounds; round++) {
    const first = round & 1 ? sequenceP : digestC;
    scratch.set(first, 0);
    let length = first.length;
    if (round % 3 !== 0) {
      scratch.set(sequenceS, length);
      length += sequenceS.length;
    }
    if (round % 7 !== 0) {
      scratch.set(sequenceP, length);
      length += sequenceP.length;
    }
    const last = round & 1 ? digestC : sequenceP;
    scratch.set(last, length);
    length += last.length;
    digestC = hash('sha512', scratch.subarray(0, length), 'buffer');
  }
  return new Uint8Array(digestC);
}

function encodeDigest(digest: Uint8Array): string {
  let out = '';
  const put = (b2: number, b1: number, b0: number, chars: number): void => {
    let word = (b2 << 16) | (b1 << 8) | b0;
    for (let i = 0; i < chars; i++) {
      out += ALPHABET[word & 0x3f];
      word >>>= 6;
    }
  };
  // Groups (0,21,42), (22,43,1), (44,2,23), ...: the first index steps by 22 mod 63.
  for (let group = 0; group < 21; group++) {
    const first = (group * 22) % 63;
    put(digest[first]!, digest[(first + 21) % 63]!, digest[(first + 42) % 63]!, 4);
  }
  put(0, 0, digest[63]!, 2);
  return out;
}

/** Options of `sha512Crypt`. */
export interface Sha512CryptOptions {
  /** Salt characters (at most 16 are used); random when absent. */
  salt?: string;
  /** Rounds (clamped to 1000..999999999); the output names them only when given. */
  rounds?: number;
  /** Random source for the salt, for reproducible output in tests. */
  random?: (byteLength: number) => Uint8Array;
}

/** A salt of 16 characters from the crypt alphabet. */
export function randomSalt(random: (byteLength: number) => Uint8Array = (n) => new Uint8Array(randomBytes(n))): string {
  const bytes = random(SALT_MAX_CHARS);
  let salt = '';
  for (let i = 0; i < SALT_MAX_CHARS; i++) salt += ALPHABET[(bytes[i] ?? 0) & 0x3f];
  return salt;
}

/** Hashes a password as `$6$[rounds=N$]salt$hash`. */
export function sha512Crypt(password: string, salt?: string, rounds?: number): string;
export function sha512Crypt(password: string, options?: Sha512CryptOptions): string;
export function sha512Crypt(password: string, saltOrOptions?: string | Sha512CryptOptions, roundsArg?: number): string {
  const options: Sha512CryptOptions =
    typeof saltOrOptions === 'object' ? saltOrOptions : { salt: saltOrOptions, rounds: roundsArg };
  const salt = (options.salt ?? randomSalt(options.random)).slice(0, SALT_MAX_CHARS);
  if (/[$:\n\0]/.test(salt)) {
    throw new PiimgError('EINVAL', 'a crypt salt cannot contain "$", ":", NUL or newlines', {});
  }
  let rounds = ROUNDS_DEFAULT;
  if (options.rounds !== undefined) {
    if (!Number.isInteger(options.rounds)) throw new PiimgError('EINVAL', 'rounds must be an integer', {});
    rounds = Math.min(ROUNDS_MAX, Math.max(ROUNDS_MIN, options.rounds));
  }
  const digest = sha512CryptDigest(encoder.encode(password), encoder.encode(salt), rounds);
  const roundsPart = options.rounds !== undefined ? `rounds=${rounds}$` : '';
  return `$6$${roundsPart}${salt}$${encodeDigest(digest)}`;
}

/** Parses `$6$[rounds=N$]salt$hash`; undefined for anything else. */
export function parseSha512Crypt(hash: string): { salt: string; rounds: number | undefined; digest: string } | undefined {
  const match = /^\$6\$(?:rounds=(\d{1,9})\$)?([^$:\n]{0,16})\$([./0-9A-Za-z]{86})$/.exec(hash);
  if (!match) return undefined;
  return { rounds: match[1] === undefined ? undefined : Number(match[1]), salt: match[2]!, digest: match[3]! };
}

/**
 * True when `hash` is a `$6$` hash of `password`. Other schemes (`$y$`,
 * `$5$`, locked `!` entries) return false: they cannot be checked here.
 */
export function verifySha512Crypt(password: string, hash: string): boolean {
  const parsed = parseSha512Crypt(hash);
  if (!parsed) return false;
  const expected = encoder.encode(sha512Crypt(password, parsed.salt, parsed.rounds));
  const actual = encoder.encode(hash);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
