import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commandList } from '../packages/cli/src/commands/list.js';
import { piimg } from './support/cli.js';
import { fixturePath, rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';
import { jsonSchemaFor } from './support/json-schema.js';

// Every --json output against the JSON Schema shipped with the command (support/cli.ts checks
// each one a test prints; these run every command once so that none is left out).
const dir = mkdtempSync(join(tmpdir(), 'piimg-json-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { PIIMG_CACHE_DIR: testCacheDir };
const schemaDir = join(repoRoot, 'packages', 'cli', 'schema');

describe('--json outputs and their schemas', () => {
  it('ship one versioned schema for each command that has --json, and none for others', () => {
    const withJson = commandList.filter((c) => c.options.includes('--json')).map((c) => `${c.name}.schema.json`);
    expect(readdirSync(schemaDir).sort()).toEqual(withJson.sort());
    for (const file of withJson) {
      const schema = JSON.parse(readFileSync(join(schemaDir, file), 'utf8')) as { $schema: string; properties: { schemaVersion: { const: number } }; required: string[] };
      expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(schema.properties.schemaVersion.const).toBe(1);
      expect(schema.required).toContain('schemaVersion');
    }
  });

  it('info, verify, ls, cp (in and out) and diff match their schemas', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'base'));
    const outputs: Record<string, string> = {};
    const json = async (argv: string[], code = 0) => {
      const result = await piimg([...argv, '--json'], env);
      expect(result.stderr, argv.join(' ')).toBe('');
      expect(result.code, argv.join(' ')).toBe(code);
      outputs[argv[0]!] = result.stdout;
      return JSON.parse(result.stdout) as Record<string, unknown>;
    };
    expect(await json(['info', fixturePath('pi-bookworm')])).toMatchObject({ schemaVersion: 1, scheme: 'mbr' });
    expect(await json(['verify', base])).toMatchObject({ schemaVersion: 1, clean: true });
    const listing = await json(['ls', base, 'root:/etc', '-l']);
    expect(listing).toMatchObject({ schemaVersion: 1, path: 'root:/etc' });
    expect((listing.entries as { name: string }[]).map((e) => e.name)).toContain('hostname');
    const host = join(dir, 'note.txt');
    writeFileSync(host, 'note\n');
    const out = join(dir, 'out.img');
    expect(await json(['cp', base, host, 'root:/etc/note.txt', '-o', out])).toMatchObject({ schemaVersion: 1 });
    expect(await json(['cp', out, 'root:/etc/note.txt', join(dir, 'back.txt')])).toMatchObject({ schemaVersion: 1 });
    expect(await json(['diff', base, out], 10)).toMatchObject({ schemaVersion: 1, added: [{ partition: 2, path: '/etc/note.txt', type: 'file' }] });
    // Each of them was validated by support/cli.ts; check once more here, explicitly.
    for (const [command, text] of Object.entries(outputs)) expect(jsonSchemaFor(command)(JSON.parse(text)), command).toBe(true);
  });

  it('inject matches its schema', async () => {
    const result = await piimg(
      ['inject', fixturePath('pi-bookworm'), '-o', join(dir, 'device.img'), '--config', join(repoRoot, 'examples', 'fleet', 'devices', 'sensor-0001.yaml'), '--json'],
      { ...env, FLEET_PI_PASSWORD: 'change-me-please', FLEET_WIFI_PASSWORD: 'plant-floor-secret' },
    );
    expect(result.code).toBe(0);
    expect(jsonSchemaFor('inject')(JSON.parse(result.stdout))).toBe(true);
  });

  it('the schemas reject outputs that drift: a missing field, an undocumented one, a wrong type', async () => {
    const info = JSON.parse((await piimg(['info', fixturePath('pi-bookworm'), '--json'], env)).stdout) as Record<string, unknown>;
    const validate = jsonSchemaFor('info');
    expect(validate(info)).toBe(true);
    const { diskId: _diskId, ...missing } = info;
    expect(validate(missing)).toBe(false);
    expect(validate({ ...info, extra: 1 })).toBe(false);
    expect(validate({ ...info, size: '1' })).toBe(false);
    expect(validate({ ...info, schemaVersion: 2 })).toBe(false);
  });
});
