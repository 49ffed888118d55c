import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath, repoRoot } from './support/fixtures.js';

// README: "SOURCE_DATE_EPOCH ... and PIIMG_SEED: the same inputs and seed give the same image".
// The README's own command, run twice through the built CLI, compared byte for byte.
const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const dir = mkdtempSync(join(tmpdir(), 'piimg-repro-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
if (!built) console.warn('\n*** SKIPPED: the built piimg command is not there; `npm test` builds it first ***\n');

function inject(out: string, env: Record<string, string>): { publicKey: string } {
  const result = spawnSync(
    process.execPath,
    [bin, 'inject', fixturePath('pi-bookworm'), '-o', out, '--config', join(repoRoot, 'examples', 'fleet', 'devices', 'sensor-0001.yaml'), '--json'],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        PIIMG_CACHE_DIR: join(dir, 'cache'),
        FLEET_PI_PASSWORD: 'change-me-please',
        FLEET_WIFI_PASSWORD: 'plant-floor-secret',
        SOURCE_DATE_EPOCH: '1700000000',
        ...env,
      },
      encoding: 'utf8',
    },
  );
  expect(result.stderr).toBe('');
  expect(result.status).toBe(0);
  return { publicKey: JSON.parse(result.stdout).outputs.wireguardPublicKey };
}

describe.skipIf(!built)('SOURCE_DATE_EPOCH and PIIMG_SEED', () => {
  it('give byte-identical images for the README example; without the seed the generated key differs', () => {
    const seed = { PIIMG_SEED: 'fleet-seed-0123456789abcdef0123456789' };
    const [a, b, c] = ['a.img', 'b.img', 'c.img'].map((name) => join(dir, name)) as [string, string, string];
    const first = inject(a, seed);
    const second = inject(b, seed);
    expect(second.publicKey).toBe(first.publicKey);
    const imageA = readFileSync(a);
    expect(imageA.equals(readFileSync(b))).toBe(true);
    rmSync(b);
    const unseeded = inject(c, {});
    expect(unseeded.publicKey).not.toBe(first.publicKey);
    expect(imageA.equals(readFileSync(c))).toBe(false);
  });
});
