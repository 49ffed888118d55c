import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPiimgError, PiimgError } from '../../src/errors.js';
import { deviceConfigJsonSchemaText, loadConfig, parseConfig } from '../../src/config/index.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'piimg-config-'));
  await mkdir(join(dir, 'base/agent'), { recursive: true });
  await writeFile(join(dir, 'base/agent/run'), '#!/bin/sh\n');
  await writeFile(
    join(dir, 'base/base.yaml'),
    [
      'user: { name: pi, password: "base secret" }',
      'ssh: { enabled: true, passwordAuthentication: false, authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBase admin@hub"] }',
      'wifi:',
      '  country: DE',
      '  networks: [{ ssid: Home, password: "secret-password" }, { ssid: Office, psk: "' + 'ab'.repeat(32) + '" }]',
      'timezone: Europe/Berlin',
      'files:',
      '  - { source: ./agent, target: /opt/agent, owner: "0:0", mode: "0755" }',
      'boot:',
      '  cmdline: { append: [quiet] }',
      '  config: { set: { enable_uart: "1" } }',
    ].join('\n'),
  );
  await writeFile(
    join(dir, 'dev-0001.yaml'),
    [
      'extends: base/base.yaml',
      'vars: { device: { id: "0001" } }',
      'hostname: dev-{{device.id}}',
      'wifi: { networks: [{ ssid: "Lab {{device.id}}", password: "{{env.LAB_PASS}}" }] }',
      'boot: { config: { set: { dtparam: [i2c_arm=on] } } }',
      'files:',
      '  - { target: /etc/agent/project.json, content: \'{"device":"{{device.id}}"}\' }',
      'timezone: null',
    ].join('\n'),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectConfigError(promise: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<PiimgError> {
  let caught: unknown;
  try {
    if (typeof promise === 'function') promise();
    else await promise;
  } catch (error) {
    caught = error;
  }
  expect(isPiimgError(caught, 'E_CONFIG'), String(caught)).toBe(true);
  expect((caught as PiimgError).message).toMatch(pattern);
  return caught as PiimgError;
}

describe('loadConfig', () => {
  it('merges extends: objects merge, lists replace, null removes', async () => {
    const loaded = await loadConfig(join(dir, 'dev-0001.yaml'), { env: { LAB_PASS: 'lab-password-1' } });
    const { config } = loaded;
    expect(loaded.sources).toEqual([join(dir, 'base/base.yaml'), join(dir, 'dev-0001.yaml')]);
    expect(loaded.baseDir).toBe(dir);
    expect(config.hostname).toBe('dev-0001');
    expect(config.user).toEqual({ name: 'pi', password: 'base secret' });
    expect(config.wifi?.country).toBe('DE');
    // The device's list replaced the base list.
    expect(config.wifi?.networks).toEqual([{ ssid: 'Lab 0001', password: 'lab-password-1' }]);
    expect(config.files).toEqual([{ target: '/etc/agent/project.json', content: '{"device":"0001"}' }]);
    expect(config.timezone).toBeUndefined();
    // Nested objects merged key by key.
    expect(config.boot?.config?.set).toEqual({ enable_uart: '1', dtparam: ['i2c_arm=on'] });
    expect(config.boot?.cmdline?.append).toEqual(['quiet']);
    expect(config.ssh?.authorizedKeys).toHaveLength(1);
  });

  it('resolves file sources relative to the file that names them', async () => {
    const { config } = await loadConfig(join(dir, 'base/base.yaml'));
    expect(config.files?.[0]?.source).toBe(join(dir, 'base/agent'));
  });

  it('applies PIIMG_* variables, then --set over them', async () => {
    const { config } = await loadConfig(join(dir, 'dev-0001.yaml'), {
      env: {
        LAB_PASS: 'lab-password-1',
        PIIMG_HOSTNAME: 'from-env',
        PIIMG_SSH__PASSWORD_AUTHENTICATION: 'true',
        PIIMG_WIFI__COUNTRY: 'FR',
        PIIMG_CACHE_DIR: '/tmp/ignored',
      },
      set: ['hostname=from-set', 'wireguard.address=10.10.0.5/24', 'services.enable=[agent.service]', 'vars.device.id=0002', 'user.uid=1001'],
    });
    expect(config.hostname).toBe('from-set');
    expect(config.ssh?.passwordAuthentication).toBe(true);
    expect(config.wifi?.country).toBe('FR');
    expect(config.wifi?.networks[0]?.ssid).toBe('Lab 0002');
    expect(config.wireguard?.address).toBe('10.10.0.5/24');
    expect(config.wireguard?.privateKey).toBe('generate');
    expect(config.services?.enable).toEqual(['agent.service']);
    expect(config.user?.uid).toBe(1001);
  });

  it('keeps --set values text where the schema wants text', async () => {
    const config = parseConfig({}, { set: ['hostname=0001', 'boot.config.set.enable_uart=1', 'wifi.country=DE', 'wifi.networks.0.ssid=true', 'wifi.networks.0.password=12345678'] });
    expect(config.hostname).toBe('0001');
    expect(config.boot?.config?.set).toEqual({ enable_uart: '1' });
    expect(config.wifi?.networks[0]).toEqual({ ssid: 'true', password: '12345678' });
  });

  it('lets caller variables win over the file', async () => {
    const { config } = await loadConfig(join(dir, 'dev-0001.yaml'), { env: { LAB_PASS: 'lab-password-1' }, vars: { 'device.id': '0042' } });
    expect(config.hostname).toBe('dev-0042');
  });

  it('names unknown variables and unset environment variables', async () => {
    await expectConfigError(loadConfig(join(dir, 'dev-0001.yaml')), /wifi\.networks\[0\]\.password: environment variable LAB_PASS/);
    expect(() => parseConfig({ hostname: 'x-{{nope}}' })).toThrow(/hostname: unknown variable \{\{nope\}\}/);
  });

  it('fails before anything is touched when a file source is missing', async () => {
    await writeFile(join(dir, 'missing.yaml'), 'files: [{ source: ./nowhere, target: /opt/x }]\n');
    await expectConfigError(loadConfig(join(dir, 'missing.yaml')), /files\[0\]\.source: .*nowhere does not exist/);
  });

  it('reports YAML syntax errors with the line, and extends cycles', async () => {
    await writeFile(join(dir, 'broken.yaml'), 'hostname: a\nuser: [\n');
    await expectConfigError(loadConfig(join(dir, 'broken.yaml')), /broken\.yaml \(line \d+\) is not valid YAML/);
    await writeFile(join(dir, 'leak.yaml'), 'user:\n  name: pi\n  password: "hunter2-in-yaml\n');
    const leak = await expectConfigError(loadConfig(join(dir, 'leak.yaml')), /leak\.yaml \(line \d+\) is not valid YAML/);
    expect(leak.message + JSON.stringify(leak.data) + String(leak.cause)).not.toContain('hunter2');
    await writeFile(join(dir, 'a.yaml'), 'extends: b.yaml\n');
    await writeFile(join(dir, 'b.yaml'), 'extends: a.yaml\n');
    await expectConfigError(loadConfig(join(dir, 'a.yaml')), /extends cycle/);
    await expectConfigError(loadConfig(join(dir, 'none.yaml')), /cannot read config file/);
  });

  it('reads JSON files', async () => {
    await writeFile(join(dir, 'd.json'), JSON.stringify({ hostname: 'json-host', keyboard: 'de' }));
    const { config } = await loadConfig(join(dir, 'd.json'));
    expect(config).toMatchObject({ hostname: 'json-host', keyboard: 'de' });
  });
});

describe('parseConfig validation', () => {
  it('names unknown keys with their path', async () => {
    const error = await expectConfigError(() => parseConfig({ hostnam: 'x', ssh: { enabeld: true } }), /hostnam: unknown setting/);
    expect(error.message).toMatch(/ssh\.enabeld: unknown setting/);
    expect((error.data.issues as unknown[]).length).toBe(2);
  });

  it('names wrong types and bad formats', async () => {
    const error = await expectConfigError(
      () =>
        parseConfig({
          hostname: 'bad_host',
          ssh: { enabled: 'yes', authorizedKeys: ['not a key'] },
          wifi: { country: 'de', networks: [{ ssid: 'x', password: 'short' }, { ssid: 'y', psk: 'abc' }] },
          wireguard: { privateKey: 'nope', address: '10.0.0.300/24', peers: [{ publicKey: 'x', allowedIps: [] }] },
          files: [{ target: 'relative', content: 'x' }, { target: '/a', content: 'x', mode: '999' }],
          services: { enable: ['agent'] },
          diskId: 'xyz',
          boot: { config: { set: { enable_uart: '1\ndtoverlay=evil' } } },
          user: { name: 'pi', shell: '/bin/sh:0:0' },
        }),
      /hostname: must be 1-63/,
    );
    for (const path of [
      'ssh.enabled',
      'ssh.authorizedKeys[0]',
      'wifi.country',
      'wifi.networks[0].password',
      'wifi.networks[1].psk',
      'wireguard.privateKey',
      'wireguard.address',
      'wireguard.peers[0].publicKey',
      'wireguard.peers[0].allowedIps',
      'files[0].target',
      'files[1].mode',
      'services.enable[0]',
      'diskId',
      'boot.config.set.enable_uart',
      'user.shell',
    ]) {
      expect(error.message).toContain(`\n  ${path}: `);
    }
  });

  it('never echoes secret values in errors', () => {
    try {
      parseConfig({ user: { name: 'pi', password: 'hunter2-secret', passwordHash: '$6$a$b' } });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toMatch(/user\.passwordHash: give either password or passwordHash/);
      expect(JSON.stringify((error as PiimgError).data) + (error as Error).message).not.toContain('hunter2-secret');
    }
  });

  it('requires exactly one content kind for files and rejects extends without files', () => {
    expect(() => parseConfig({ files: [{ target: '/a' }] })).toThrow(/files\[0\]: give exactly one of source, content/);
    expect(() => parseConfig({ extends: 'x.yaml' })).toThrow(/extends/);
  });

  it('fills defaults', () => {
    const config = parseConfig({ ssh: {}, wireguard: { address: ['10.0.0.2/32', 'fd00::2/128'] }, services: { enable: ['a.service'] } });
    expect(config.ssh).toEqual({ enabled: true });
    expect(config.wireguard).toMatchObject({ interface: 'wg0', privateKey: 'generate', peers: [] });
    expect(config.services).toEqual({ enable: ['a.service'], disable: [], mask: [] });
  });
});

describe('published JSON Schema', () => {
  it('is up to date (regenerate with: node packages/core/scripts/gen-schema.mjs)', async () => {
    const committed = await readFile(new URL('../../schema/device-config.schema.json', import.meta.url), 'utf8');
    expect(committed).toBe(deviceConfigJsonSchemaText());
    const schema = JSON.parse(committed) as { properties: Record<string, unknown>; additionalProperties: unknown };
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['hostname', 'user', 'wifi', 'wireguard', 'files', 'boot']));
    expect(schema.additionalProperties).toBe(false);
  });
});
