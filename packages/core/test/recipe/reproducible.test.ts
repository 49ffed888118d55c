import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig, type LoadedConfig } from '../../src/config/index.js';
import type { DeviceConfigInput } from '../../src/config/schema.js';
import { parseSha512Crypt, verifySha512Crypt, wireguardPublicKey } from '../../src/crypto/index.js';
import { isPiimgError } from '../../src/errors.js';
import { applyConfig } from '../../src/recipe/index.js';
import { bookwormRoot, bootVolume, DISK_ID, fixedClock } from './fixtures.js';

const SEED = 'a-seed-of-at-least-32-characters-0123456789';
const PEER_KEY = wireguardPublicKey(Buffer.alloc(32, 9).toString('base64'));

function load(input: DeviceConfigInput): LoadedConfig {
  return { config: parseConfig(input, { baseDir: '.' }), baseDir: '.', sources: [] };
}

const device = (host: string, octet: number): DeviceConfigInput => ({
  hostname: host,
  user: { name: 'pi', password: 'correct horse battery' },
  wireguard: { interface: 'wg0', privateKey: 'generate', address: `10.10.0.${octet}/24`, peers: [{ publicKey: PEER_KEY, allowedIps: ['10.10.0.0/24'] }] },
  diskId: 'random',
});

/** Applies a config to fresh volumes (no random source given: the library's own choice) and returns what it wrote. */
async function apply(input: DeviceConfigInput, options: { seed?: string } = {}) {
  const root = await bookwormRoot({ wireguard: true });
  const boot = await bootVolume();
  const disk = { id: DISK_ID };
  const report = await applyConfig(
    { root, boot, diskId: DISK_ID, setDiskId: (id) => void (disk.id = id) },
    load(input),
    { now: fixedClock, ...options },
  );
  const shadow = await root.text('/etc/shadow');
  const hash = /^pi:([^:]+):/m.exec(shadow)![1]!;
  return { report, hash, wg: await root.text('/etc/wireguard/wg0.conf'), diskId: disk.id };
}

const savedEpoch = process.env.SOURCE_DATE_EPOCH;
afterEach(() => {
  if (savedEpoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
  else process.env.SOURCE_DATE_EPOCH = savedEpoch;
});

describe('reproducible secrets', () => {
  it('draws fresh salts, keys and disk ids without a seed or SOURCE_DATE_EPOCH', async () => {
    delete process.env.SOURCE_DATE_EPOCH;
    const [a, b] = [await apply(device('dev-1', 1)), await apply(device('dev-1', 1))];
    expect(parseSha512Crypt(a.hash)!.salt).not.toBe(parseSha512Crypt(b.hash)!.salt);
    expect(a.report.outputs.wireguardPublicKey).not.toBe(b.report.outputs.wireguardPublicKey);
    expect(a.diskId).not.toBe(b.diskId);
  });

  it('derives the salt from user, host and SOURCE_DATE_EPOCH, never from the password', async () => {
    process.env.SOURCE_DATE_EPOCH = '1700000000';
    const a = await apply(device('dev-1', 1));
    const b = await apply(device('dev-1', 1));
    expect(a.hash).toBe(b.hash);
    expect(verifySha512Crypt('correct horse battery', a.hash)).toBe(true);
    const salt = parseSha512Crypt(a.hash)!.salt;
    expect(salt).toMatch(/^[./0-9A-Za-z]{16}$/);
    // Another password: same salt (it is not a function of the password), other hash.
    const other = await apply({ ...device('dev-1', 1), user: { name: 'pi', password: 'another password' } });
    expect(parseSha512Crypt(other.hash)!.salt).toBe(salt);
    // Another host or epoch: another salt, so equal passwords on two devices give unequal hashes.
    expect(parseSha512Crypt((await apply(device('dev-2', 2))).hash)!.salt).not.toBe(salt);
    process.env.SOURCE_DATE_EPOCH = '1700000001';
    expect(parseSha512Crypt((await apply(device('dev-1', 1))).hash)!.salt).not.toBe(salt);
    // Without a seed the generated key stays random.
    expect(a.report.outputs.wireguardPublicKey).not.toBe(b.report.outputs.wireguardPublicKey);
  });

  it('derives keys, disk ids and salts from a seed: equal per device, different between devices', async () => {
    delete process.env.SOURCE_DATE_EPOCH;
    const a = await apply(device('dev-1', 1), { seed: SEED });
    const b = await apply(device('dev-1', 1), { seed: SEED });
    expect(b).toEqual(a);
    const other = await apply(device('dev-2', 2), { seed: SEED });
    expect(other.report.outputs.wireguardPublicKey).not.toBe(a.report.outputs.wireguardPublicKey);
    expect(other.diskId).not.toBe(a.diskId);
    expect(parseSha512Crypt(other.hash)!.salt).not.toBe(parseSha512Crypt(a.hash)!.salt);
    const otherSeed = await apply(device('dev-1', 1), { seed: SEED.replace('a-', 'b-') });
    expect(otherSeed.report.outputs.wireguardPublicKey).not.toBe(a.report.outputs.wireguardPublicKey);
    expect(otherSeed.diskId).not.toBe(a.diskId);
    // The seed is a secret too.
    expect(JSON.stringify(a.report)).not.toContain(SEED);
  });

  it('refuses a seed shorter than 32 characters before writing', async () => {
    const error = await apply(device('dev-1', 1), { seed: 'short' }).catch((e: unknown) => e);
    expect(isPiimgError(error) && error.code).toBe('E_CONFIG');
  });
});
