import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isPiimgError, loadConfig, openImage, type Image } from '@piimg/core';
import { fixturePath, repoRoot, testCacheDir } from './support/fixtures.js';
import { debugfsCat, e2fsck, fsckFat, type PartitionRef } from './support/oracles.js';
import { hasTool } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-derive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fleetDevice = join(repoRoot, 'examples', 'fleet', 'devices', 'sensor-0001.yaml');
const fleetEnv = { FLEET_PI_PASSWORD: 'change-me-please', FLEET_WIFI_PASSWORD: 'plant-floor-secret' };
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Descriptors of this process open on `path` (Linux only: undefined elsewhere). */
function openDescriptors(path: string): number | undefined {
  if (process.platform !== 'linux') return undefined;
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) count++;
    } catch {
      // Closed between readdir and readlink.
    }
  }
  return count;
}

async function readBack(path: string, file: string): Promise<string> {
  await using image = await openImage(path, { cacheDir: testCacheDir });
  const root = await image.mount('root', { readOnly: true });
  return text(await root.readFile(file));
}

async function partitions(image: string): Promise<{ boot: PartitionRef; root: PartitionRef }> {
  await using opened = await openImage(image);
  const ref = (p: { byteOffset: number; size: number }) => ({ image, byteOffset: p.byteOffset, size: p.size });
  return { boot: ref(opened.partition('boot')), root: ref(opened.partition('root')) };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const caught = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(isPiimgError(caught), `expected PiimgError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

describe('image.derive(): one base, many devices', () => {
  it('derived images edited and saved concurrently give independent, correct outputs; the base closes with the last image', async () => {
    const base = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    const rawPath = base.rawPath;
    // A change made before deriving is in every derived image.
    const shared = await base.mount('root');
    await shared.writeFile('/etc/fleet', 'shared\n');
    await shared.close();

    const devices = Array.from({ length: 4 }, (_, i) => `dev-${String(i + 1).padStart(4, '0')}`);
    const children = await Promise.all(devices.map(() => base.derive()));
    // A derived image holds only the changes: the parent's so far, copied, and nothing of the base.
    for (const child of children) expect(child.changes).toEqual(base.changes);
    // The parent may close first: the base stays open for the derived images.
    await base.close();
    if (openDescriptors(rawPath) !== undefined) expect(openDescriptors(rawPath)).toBe(1);
    await expectCode(base.mount('root'), 'E_CLOSED');

    const outputs = await Promise.all(
      children.map(async (child, i) => {
        const root = await child.mount('root');
        const boot = await child.mount('boot');
        // Interleaved awaits across the images: every write yields to the others.
        for (let round = 0; round < 5; round++) {
          await root.writeFile(`/etc/round-${round}`, `${devices[i]} ${round}\n`);
          await boot.writeFile(`/round-${round}.txt`, `${devices[i]} ${round}\n`);
        }
        await root.writeFile('/etc/hostname', `${devices[i]}\n`);
        const out = join(dir, `${devices[i]}.img`);
        await child.save(out);
        return out;
      }),
    );
    await Promise.all(children.slice(1).map((child) => child.close()));
    if (openDescriptors(rawPath) !== undefined) expect(openDescriptors(rawPath)).toBe(1);
    await children[0]!.close();
    if (openDescriptors(rawPath) !== undefined) expect(openDescriptors(rawPath)).toBe(0);

    for (const [i, out] of outputs.entries()) {
      expect(await readBack(out, '/etc/hostname')).toBe(`${devices[i]}\n`);
      expect(await readBack(out, '/etc/fleet')).toBe('shared\n');
      expect(await readBack(out, '/etc/round-4')).toBe(`${devices[i]} 4\n`);
      await using image = await openImage(out);
      expect((await image.verify()).every((f) => f.clean)).toBe(true);
      const boot = await image.mount('boot', { readOnly: true });
      expect(text(await boot.readFile('/round-3.txt'))).toBe(`${devices[i]} 3\n`);
    }
    if (hasTool('e2fsck') && hasTool('fsck.fat') && hasTool('debugfs')) {
      for (const [i, out] of outputs.entries()) {
        const { boot, root } = await partitions(out);
        expect(e2fsck(root).clean, e2fsck(root).output).toBe(true);
        expect(fsckFat(boot).clean).toBe(true);
        expect(debugfsCat(root, '/etc/hostname')).toBe(`${devices[i]}\n`);
      }
    }
  });

  it('edits of a derived image never show in its parent or siblings', async () => {
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    await using a = await base.derive();
    await using b = await base.derive();
    const rootA = await a.mount('root');
    await rootA.writeFile('/etc/hostname', 'only-a\n');
    await rootA.flush();
    const before = text(await (await base.mount('root', { readOnly: true })).readFile('/etc/hostname'));
    expect(before).not.toBe('only-a\n');
    expect(text(await (await b.mount('root', { readOnly: true })).readFile('/etc/hostname'))).toBe(before);
    // A grandchild starts from its parent's changes.
    await using c = await a.derive();
    expect(text(await (await c.mount('root', { readOnly: true })).readFile('/etc/hostname'))).toBe('only-a\n');
  });

  it('refuses to derive from an image opened in place', async () => {
    const raw = join(dir, 'in-place.img');
    const { copyFileSync } = await import('node:fs');
    const source = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    copyFileSync(source.rawPath, raw);
    await source.close();
    await using image = await openImage(raw, { inPlace: true });
    await expectCode(image.derive(), 'EINVAL');
  });
});

describe('image.apply(): what piimg inject does, as one call', () => {
  it('applies the README fleet example (disk id wired in) and verifies; derived devices in parallel', async () => {
    await using base = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    const ids = ['0001', '0002', '0003'];
    const results = await Promise.all(
      ids.map(async (id, i) => {
        await using device: Image = await base.derive();
        const loaded = await loadConfig(fleetDevice, { env: fleetEnv, vars: { 'device.id': id, 'device.octet': String(20 + i) } });
        const result = await device.apply(loaded);
        const out = join(dir, `sensor-${id}.img`);
        await device.save(out);
        return { out, result, diskId: device.table.diskId };
      }),
    );
    const diskIds = new Set(results.map((r) => r.diskId));
    expect(diskIds.size).toBe(ids.length);
    expect(diskIds.has(base.table.diskId)).toBe(false);
    for (const [i, { out, result, diskId }] of results.entries()) {
      expect(result.verified).toBe(true);
      expect(result.timings.verify).toBeGreaterThan(0);
      expect(result.outputs.wireguardPublicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(result.outputs.diskId).toBe(diskId);
      expect(JSON.stringify(result)).not.toContain('change-me-please');
      expect(await readBack(out, '/etc/hostname')).toBe(`sensor-${ids[i]}\n`);
      expect(await readBack(out, '/etc/fstab')).toContain(`PARTUUID=${diskId}-02`);
      if (hasTool('e2fsck')) expect(e2fsck((await partitions(out)).root).clean).toBe(true);
    }
  });

  it('verify: false skips the check; mounted volumes make apply() refuse (E_BUSY)', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    const loaded = await loadConfig(fleetDevice, { env: fleetEnv });
    const root = await image.mount('root');
    await expectCode(image.apply(loaded), 'E_BUSY');
    await root.close();
    const result = await image.apply(loaded, { verify: false });
    expect(result.verified).toBe(false);
    expect(result.timings.verify).toBeUndefined();
  });

  it('the library example of the README runs as written', async () => {
    const { readFileSync, writeFileSync } = await import('node:fs');
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## The library'));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(code, 'a ts block under "## The library"').toBeDefined();
    const work = mkdtempSync(join(dir, 'readme-'));
    // Inputs are named relative to the repository; outputs land in a scratch directory.
    const script = join(work, 'example.ts');
    writeFileSync(script, code!.replace(/'(fixtures|examples)\//g, `'${repoRoot}/$1/`));
    const saved = { cwd: process.cwd(), env: { ...process.env } };
    Object.assign(process.env, fleetEnv, { PIIMG_CACHE_DIR: testCacheDir });
    process.chdir(work);
    const log = console.log;
    console.log = () => undefined;
    try {
      await import(script);
    } finally {
      console.log = log;
      process.chdir(saved.cwd);
      process.env = saved.env;
    }
    expect(existsSync(join(work, 'sensor-0001.img'))).toBe(true);
    expect(await readBack(join(work, 'sensor-0001.img'), '/etc/hostname')).toBe('sensor-0001\n');
  });
});
