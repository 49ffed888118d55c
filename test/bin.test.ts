import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturePath, repoRoot } from './support/fixtures.js';
import { assertJsonOutput } from './support/json-schema.js';

// The built command, as users run it: `npm test` builds first, so this checks the shipped bundle
// (module interop, the committed .wasm files and their loading) and not only the sources.
const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
const dir = mkdtempSync(join(tmpdir(), 'piimg-bin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function piimg(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], {
    cwd: repoRoot,
    env: { ...process.env, PIIMG_CACHE_DIR: join(dir, 'cache'), ...env },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
if (!built) console.warn('\n*** SKIPPED: the built piimg command is not there; `npm test` builds it first ***\n');

describe.skipIf(!built)('the built piimg command', () => {
  it('runs the README example with no other program on PATH: inject, then verify and diff the result', () => {
    const out = join(dir, 'device.img');
    // "Nothing but Node": an empty PATH, so any native tool the command tried to run would fail.
    const noTools = join(dir, 'no-tools');
    mkdirSync(noTools, { recursive: true });
    const inject = piimg(
      ['inject', fixturePath('pi-bookworm'), '-o', out, '--config', join(repoRoot, 'examples', 'fleet', 'devices', 'sensor-0001.yaml'), '--json'],
      { FLEET_PI_PASSWORD: 'change-me-please', FLEET_WIFI_PASSWORD: 'plant-floor-secret', PATH: noTools },
    );
    expect(inject.stderr).toBe('');
    expect(inject.code).toBe(0);
    assertJsonOutput('inject', inject.stdout);
    const report = JSON.parse(inject.stdout);
    expect(report.verified).toBe(true);
    expect(inject.stdout).not.toContain('change-me-please');
    expect(inject.stdout).not.toContain('plant-floor-secret');
    const verify = piimg(['verify', out, '--json'], { PATH: noTools });
    expect(verify.code).toBe(0);
    assertJsonOutput('verify', verify.stdout);
    expect(JSON.parse(verify.stdout).clean).toBe(true);
    const diff = piimg(['diff', fixturePath('pi-bookworm'), out, '--json'], { PATH: noTools });
    expect(diff.code).toBe(10);
    assertJsonOutput('diff', diff.stdout);
    expect(JSON.parse(diff.stdout).changed).toEqual(expect.arrayContaining([expect.objectContaining({ partition: 2, path: '/etc/hostname' })]));
  });

  it('prints its version and exits 1 on a usage error', () => {
    expect(piimg(['--version']).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(piimg(['inject']).code).toBe(1);
  });
});
