import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { piimg } from './support/cli.js';
import { fixturePath, rawFixture, testCacheDir } from './support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { PIIMG_CACHE_DIR: testCacheDir };
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('piimg usage', () => {
  it('prints help with every command and the exit codes', async () => {
    const result = await piimg(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['inject', 'info', 'verify', 'ls', 'cat', 'cp', 'diff']) expect(result.stdout).toContain(`  ${command}`);
    expect(result.stdout).toContain('Exit status');
  });

  it('usage errors exit 1 and say what is wrong', async () => {
    expect((await piimg([])).code).toBe(1);
    const unknown = await piimg(['frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const badOption = await piimg(['info', '--colour', 'x.img']);
    expect(badOption.code).toBe(1);
    expect(badOption.stderr).toContain('--colour');
    expect((await piimg(['info'])).code).toBe(1);
    for (const command of ['inject', 'info', 'verify', 'ls', 'cat', 'cp', 'diff']) {
      const help = await piimg([command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: piimg ${command}`);
    }
  });
});

describe('piimg info', () => {
  it('prints stable JSON for the example image', async () => {
    const result = await piimg(['info', fixturePath('pi-bookworm'), '--json'], env);
    expect(result.code).toBe(0);
    const info = JSON.parse(result.stdout);
    expect(info).toMatchObject({ scheme: 'mbr', sectorSize: 512, diskId: '5e3da7a1', compression: 'xz' });
    expect(info.partitions).toHaveLength(2);
    expect(info.partitions[0]).toMatchObject({ number: 1, firstLba: 8192, type: '0x0c', partUuid: '5e3da7a1-01', filesystem: { type: 'fat32', label: 'bootfs' } });
    expect(info.partitions[1].filesystem).toMatchObject({ type: 'ext4', label: 'rootfs' });
    expect(info.partitions[1].filesystem.features).toContain('metadata_csum');
  });

  it('names the release and the first-boot mechanisms it finds in the image', async () => {
    const json = await piimg(['info', fixturePath('pi-trixie'), '--json'], env);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).release).toEqual({
      id: 'debian',
      version: 13,
      codename: 'trixie',
      flavour: 'Raspberry Pi OS',
      network: 'networkmanager',
      bootMount: '/boot/firmware',
      firstBoot: ['cloud-init NoCloud', 'userconf rename-user'],
      firstBootPresets: true,
    });
    const text = await piimg(['info', fixturePath('pi-trixie')], env);
    expect(text.stdout).toMatch(/^release: debian 13 trixie \(Raspberry Pi OS\)/m);
    expect(text.stdout).toMatch(/^first boot: cloud-init NoCloud, userconf rename-user; systemd presets/m);
    const bullseye = JSON.parse((await piimg(['info', fixturePath('pi-bullseye'), '--json'], env)).stdout).release;
    expect(bullseye).toMatchObject({ id: 'raspbian', version: 11, codename: 'bullseye', network: 'wpa_supplicant', bootMount: '/boot' });
    expect(bullseye.firstBoot).toContain('firstboot init= script');
  });

  it('prints a readable table', async () => {
    const result = await piimg(['info', fixturePath('pi-gpt')], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/GPT, disk id 8f1f1e4c-1b2a-4c3d-9e8f-0a1b2c3d4e5f, 512-byte sectors/);
    expect(result.stdout).toMatch(/"BOOT".*fat32\s+BOOT/);
    expect(result.stdout).not.toMatch(/\u001b\[/); // no colors when not on a terminal
  });

  it('bad and missing images exit 2 and 5 with the error code', async () => {
    const garbage = join(dir, 'garbage.img');
    writeFileSync(garbage, Buffer.alloc(4096, 0xee));
    const bad = await piimg(['info', garbage]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('[E_NO_PARTITION_TABLE]');
    const missing = await piimg(['info', join(dir, 'nope.img')]);
    expect(missing.code).toBe(5);
  });
});

describe('piimg ls, cat, cp and diff on the boot partition', () => {
  let base: string;
  beforeAll(async () => {
    base = await rawFixture('pi-bookworm', join(dir, 'boot'));
  });

  it('lists and prints boot files', async () => {
    const listing = await piimg(['ls', base, 'boot:/']);
    expect(listing.code).toBe(0);
    expect(listing.stdout.split('\n')).toEqual(expect.arrayContaining(['cmdline.txt', 'config.txt', 'overlays/']));
    const cat = await piimg(['cat', base, '1:/cmdline.txt']);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toContain('root=PARTUUID=5e3da7a1-02');
    const missing = await piimg(['cat', base, 'boot:/nope.txt']);
    expect(missing.code).toBe(5);
    expect(missing.stderr).toContain('ENOENT');
    const notPartPath = await piimg(['ls', base, '/etc']);
    expect(notPartPath.code).toBe(1);
  });

  it('copies into a new image, leaves the base alone, and diff sees exactly that', async () => {
    const before = sha256(base);
    const host = join(dir, 'hello.txt');
    writeFileSync(host, 'hello from the host\n');
    const out = join(dir, 'boot', 'out.img');
    expect((await piimg(['cp', base, host, 'boot:/hello.txt'])).code).toBe(1); // neither -o nor --in-place
    const copy = await piimg(['cp', base, host, 'boot:/hello.txt', '-o', out]);
    expect(copy.stderr).toBe('');
    expect(copy.code).toBe(0);
    expect(sha256(base)).toBe(before);
    expect((await piimg(['cat', out, 'boot:/hello.txt'])).stdout).toBe('hello from the host\n');
    const diff = await piimg(['diff', base, out, '--json']);
    expect(diff.code).toBe(10);
    const result = JSON.parse(diff.stdout);
    expect(result.added).toEqual([{ partition: 1, path: '/hello.txt', type: 'file' }]);
    expect(result.removed).toEqual([]);
    expect((await piimg(['diff', base, base])).code).toBe(0);
  });

  it('copies a directory out with -r', async () => {
    const target = join(dir, 'extracted');
    mkdirSync(target);
    const result = await piimg(['cp', base, 'boot:/overlays', join(target, 'overlays'), '-r']);
    expect(result.code).toBe(0);
    expect(existsSync(join(target, 'overlays', 'vc4-kms-v3d.dtbo'))).toBe(true);
    expect(readFileSync(join(target, 'overlays', 'vc4-kms-v3d.dtbo')).length).toBe(3000);
  });
});

describe('piimg verify', () => {
  it('checks both filesystems of a clean image', async () => {
    const result = await piimg(['verify', fixturePath('pi-bookworm'), '--json'], env);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.clean).toBe(true);
    expect(report.partitions.map((p: { filesystem: string; checked: boolean }) => [p.filesystem, p.checked])).toEqual([
      ['fat32', true],
      ['ext4', true],
    ]);
  });

  it('reports a damaged FAT with exit 4, and inject writes nothing from such a base', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'damaged'));
    const bytes = readFileSync(base);
    const bootOffset = 8192 * 512;
    const reserved = bytes.readUInt16LE(bootOffset + 0x0e);
    const fatSectors = bytes.readUInt32LE(bootOffset + 0x24);
    // The second FAT copy no longer matches the first: fsck.fat -n reports "FATs differ".
    const secondFatEntry = bootOffset + (reserved + fatSectors) * 512 + 4 * 40;
    bytes.writeUInt32LE(0x0ffffff7, secondFatEntry);
    writeFileSync(base, bytes);
    const verify = await piimg(['verify', base]);
    expect(verify.code).toBe(4);
    expect(verify.stdout).toMatch(/p1 fat32: PROBLEMS/);
    expect(verify.stdout).toMatch(/p2 ext4: clean/);
    const config = join(dir, 'damaged', 'device.yaml');
    writeFileSync(config, 'hostname: dev-1\n');
    const out = join(dir, 'damaged', 'out.img');
    const inject = await piimg(['inject', base, '-o', out, '--config', config], env);
    expect(inject.code).toBe(4);
    expect(inject.stderr).toContain('nothing was written');
    expect(existsSync(out)).toBe(false);
  });
});

describe('piimg cp into the root filesystem', () => {
  it('resolves owner names through the image, not the host', async () => {
    const base = await rawFixture('pi-bookworm', join(dir, 'owner'));
    const host = join(dir, 'owner', 'note.txt');
    writeFileSync(host, 'note\n');
    const out = join(dir, 'owner', 'out.img');
    const copy = await piimg(['cp', base, host, 'root:/home/pi/note.txt', '--owner', 'pi:pi', '--mode', '0600', '-o', out]);
    expect(copy.stderr).toBe('');
    expect(copy.code).toBe(0);
    const listing = JSON.parse((await piimg(['ls', out, 'root:/home/pi/note.txt', '--json'])).stdout);
    expect(listing[0]).toMatchObject({ uid: 1000, gid: 1000, mode: 0o600, size: 5 });
    const unknown = await piimg(['cp', base, host, 'root:/x.txt', '--owner', 'nosuchuser', '-o', out]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('nosuchuser');
    const huge = await piimg(['cp', base, host, 'root:/x.txt', '--owner', '99999999999:0', '-o', out]);
    expect(huge.code).toBe(1);
    expect(huge.stderr).toContain('out of range');
  });
});
