import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { applyConfig } from '../../src/recipe/index.js';
import { bookwormRoot, bootVolume, counterRandom, DISK_ID, fixedClock } from '../recipe/fixtures.js';

const fleet = fileURLToPath(new URL('../../../../examples/fleet/', import.meta.url));
const env = { FLEET_PI_PASSWORD: 'pi-example-password', FLEET_WIFI_PASSWORD: 'plant-floor-pass', FLEET_LAB_WIFI_PASSWORD: 'lab-wifi-pass' };

describe('the fleet example in examples/', () => {
  it('loads every device file', async () => {
    const one = await loadConfig(`${fleet}devices/sensor-0001.yaml`, { env });
    expect(one.config.hostname).toBe('sensor-0001');
    expect(one.config.wireguard?.address).toBe('10.10.0.11/24');
    expect(one.config.files?.[2]?.content).toBe('{"device":"0001","site":"plant-1"}');
    const two = await loadConfig(`${fleet}devices/sensor-0002.yaml`, { env });
    expect(two.config.hostname).toBe('sensor-0002');
    expect(two.config.wifi?.networks.map((n) => n.ssid)).toEqual(['Lab', 'Plant-Floor']);
    expect(two.config.services).toEqual({ enable: ['agent.service'], disable: [], mask: [] });
    expect(two.config.files?.[2]?.content).toBe('{"device":"0002","site":"lab"}');
  });

  it('applies to a Bookworm image, twice without changes the second time', async () => {
    const loaded = await loadConfig(`${fleet}devices/sensor-0001.yaml`, { env });
    const root = await bookwormRoot();
    const boot = await bootVolume();
    let diskId = DISK_ID;
    const target = { root, boot, get diskId() { return diskId; }, setDiskId: (id: string) => { diskId = id; } };
    const report = await applyConfig(target, loaded, { now: fixedClock, random: counterRandom() });
    expect(report.outputs.wireguardPublicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(await root.readlink('/etc/systemd/system/multi-user.target.wants/agent.service')).toBe('/etc/systemd/system/agent.service');
    expect((await root.stat('/etc/agent/device.json')).gid).toBe(1000);
    expect(JSON.stringify(report)).not.toMatch(/pi-example-password|plant-floor-pass/);
    const again = await applyConfig(target, loaded, { now: fixedClock, random: counterRandom(5) });
    expect(again.changes).toEqual([]);
  });

  it('fails with a named field when a secret is missing from the environment', async () => {
    await expect(loadConfig(`${fleet}devices/sensor-0001.yaml`, { env: {} })).rejects.toThrow(/user\.password: environment variable FLEET_PI_PASSWORD/);
  });
});
