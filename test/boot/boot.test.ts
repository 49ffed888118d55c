/**
 * First-boot test: inject the fleet example into Raspberry Pi OS-like Bookworm and Trixie
 * images (built by build-base.sh with mmdebstrap, cached), boot each under qemu with the
 * image's own kernel, initramfs and cmdline.txt, and check from the report that the base
 * prints on its second serial port that every setting is still in effect after first boot.
 *
 * Runs only with PIIMG_BOOT_TEST=1 (.ci/run sets it): it takes minutes and needs root for a
 * cold build. Then a missing tool fails the run instead of skipping it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/fixtures.js';

const ENABLED = process.env.PIIMG_BOOT_TEST === '1';
const RELEASES = ['bookworm', 'trixie'] as const;
type BaseRelease = (typeof RELEASES)[number];

const TOOLS = ['mmdebstrap', 'qemu-system-x86_64', 'mcopy', 'sfdisk', 'mkfs.vfat', 'mkfs.ext4', 'e2fsck'];
const FLEET_ENV = { FLEET_PI_PASSWORD: 'change-me-please', FLEET_WIFI_PASSWORD: 'plant-floor-secret' };
const FLEET_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEq3BOmF5ra4v8GsQ2q6JX+8o0vzmL0aW3d1mJcJw0xS ops@example.com';
const BOOT_TIMEOUT_MS = Number(process.env.PIIMG_BOOT_TIMEOUT_S ?? 900) * 1000;
const KVM_PROGRESS_MS = 180_000;
const CACHE_DIR = process.env.PIIMG_BOOT_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'piimg-boot');
// The base's kernel and initramfs on its boot partition (build-base.sh names them as the Pi firmware does).
const KERNEL = 'kernel8.img';
const INITRAMFS = 'initramfs8';

if (!ENABLED) {
  console.warn('\n*** SKIPPED: the first-boot test (test/boot) runs with PIIMG_BOOT_TEST=1, as .ci/run does ***\n');
}

function toolPath(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function runOrThrow(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const result = spawnSync(cmd, args, {
    env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin`, ...env },
    maxBuffer: 64 * 1024 * 1024,
    cwd: repoRoot,
  });
  const stdout = result.stdout?.toString() ?? '';
  const stderr = result.stderr?.toString() ?? '';
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.status ?? result.signal}:\n${(stderr || stdout).split('\n').slice(-40).join('\n')}`);
  }
  return stdout;
}

interface Partition {
  byteOffset: number;
}

/** The MBR disk identifier (offset 440) and the primary partitions' offsets. Ref: UEFI spec §5.2.1 "Legacy MBR". */
function readMbr(path: string): { diskId: string; partitions: Partition[] } {
  const sector = Buffer.alloc(512);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, sector, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  if (sector.readUInt16LE(510) !== 0xaa55) throw new Error(`${path}: no MBR signature`);
  const partitions: Partition[] = [];
  for (let i = 0; i < 4; i++) {
    const entry = 446 + 16 * i;
    const lba = sector.readUInt32LE(entry + 8);
    if (sector[entry + 4] !== 0) partitions.push({ byteOffset: lba * 512 });
  }
  return { diskId: sector.readUInt32LE(440).toString(16).padStart(8, '0'), partitions };
}

interface Section {
  output: string;
  status: number;
}

/** Parses the report: "@@ name", output lines, "@@rc N", between the BEGIN and END markers. */
function parseReport(text: string): Map<string, Section> {
  const begin = text.indexOf('PIIMG-REPORT-BEGIN');
  const end = text.indexOf('PIIMG-REPORT-END');
  if (begin < 0 || end < begin) throw new Error('the boot report is incomplete');
  const sections = new Map<string, Section>();
  let name: string | undefined;
  let lines: string[] = [];
  for (const raw of text.slice(begin, end).split('\n').slice(1)) {
    // nmcli colours its output even on a serial port.
    const line = raw.replace(/\r$/, '').replace(/\x1b\[[0-9;]*m/g, '');
    if (line.startsWith('@@rc ') && name !== undefined) {
      sections.set(name, { output: lines.join('\n').trim(), status: Number(line.slice(5)) });
      name = undefined;
    } else if (line.startsWith('@@ ')) {
      name = line.slice(3).trim();
      lines = [];
    } else if (name !== undefined) {
      lines.push(line);
    }
  }
  return sections;
}

function tail(path: string, lineCount: number): string {
  if (!existsSync(path)) return '(no output)';
  return readFileSync(path, 'utf8').split('\n').slice(-lineCount).join('\n');
}

/** Set once KVM failed to boot a guest in this run: the next boots go straight to TCG. */
let kvmFailed = false;

function kvmUsable(): boolean {
  try {
    const fd = openSync('/dev/kvm', 'r+');
    closeSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** Boots the image under qemu; resolves when the guest powers off. Kills it after the timeout. */
async function bootOnce(options: {
  image: string;
  kernel: string;
  initramfs: string;
  cmdline: string;
  consoleLog: string;
  reportLog: string;
  accel: 'kvm' | 'tcg';
}): Promise<'off' | 'kvm-failed'> {
  rmSync(options.consoleLog, { force: true });
  rmSync(options.reportLog, { force: true });
  const args = [
    ...['-accel', options.accel, '-m', '1024', '-smp', '2', '-nographic', '-no-reboot', '-monitor', 'none'],
    ...['-kernel', options.kernel, '-initrd', options.initramfs, '-append', options.cmdline],
    // -snapshot: the guest's writes go to a temporary overlay, so a boot that is restarted
    // (KVM fallback) starts again from the injected image, as a first boot.
    ...['-drive', `file=${options.image},format=raw,if=virtio`, '-snapshot', '-nic', 'none'],
    // ttyS0: kernel and getty; ttyS1: the report alone, so nothing interleaves with it.
    ...['-serial', `file:${options.consoleLog}`, '-serial', `file:${options.reportLog}`],
    // The password to check against /etc/shadow inside the guest, without printing any hash.
    ...['-fw_cfg', `name=opt/piimg/password,string=${FLEET_ENV.FLEET_PI_PASSWORD}`],
  ];
  // timeout(1) bounds qemu even if this process is killed before its own timer fires; it
  // passes on the SIGTERM that stops qemu here (a SIGKILL would stop timeout alone).
  const bound = String(Math.ceil(BOOT_TIMEOUT_MS / 1000) + 30);
  const qemu = spawn('timeout', ['-s', 'KILL', bound, 'qemu-system-x86_64', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  qemu.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return await new Promise((resolve, reject) => {
    let outcome: 'timeout' | 'kvm-failed' | undefined;
    const timer = setTimeout(() => {
      outcome = 'timeout';
      qemu.kill('SIGTERM');
    }, BOOT_TIMEOUT_MS);
    // Nested KVM can fail on instructions it cannot emulate: qemu then reports an internal
    // error and stops the guest, or the guest resets or hangs. A KVM boot reaches the serial
    // login prompt within seconds, so without one after KVM_PROGRESS_MS the boot restarts on TCG.
    const startedAt = Date.now();
    const watch = setInterval(() => {
      if (options.accel !== 'kvm') return;
      const stalled =
        Date.now() - startedAt > KVM_PROGRESS_MS && !(existsSync(options.consoleLog) && readFileSync(options.consoleLog, 'utf8').includes(' login:'));
      if (stderr.includes('KVM internal error') || stalled) {
        outcome = 'kvm-failed';
        qemu.kill('SIGTERM');
      }
    }, 1000);
    qemu.on('error', reject);
    qemu.on('exit', (code) => {
      clearTimeout(timer);
      clearInterval(watch);
      if (outcome === 'kvm-failed') resolve('kvm-failed');
      else if (outcome === 'timeout') {
        reject(new Error(`qemu did not power off within ${BOOT_TIMEOUT_MS / 1000} s; serial console tail:\n${tail(options.consoleLog, 60)}`));
      } else if (code !== 0) {
        reject(new Error(`qemu exited ${code}: ${stderr}\nserial console tail:\n${tail(options.consoleLog, 60)}`));
      } else resolve('off');
    });
  });
}

interface Booted {
  release: BaseRelease;
  diskId: string;
  report: Map<string, Section>;
  consoleLog: string;
}

async function buildInjectBoot(release: BaseRelease, work: string): Promise<Booted> {
  const timings: string[] = [];
  let started = Date.now();
  const base = runOrThrow('bash', [join(repoRoot, 'test/boot/build-base.sh'), release], { PIIMG_BOOT_CACHE: CACHE_DIR }).trim().split('\n').pop()!;
  timings.push(`base ${((Date.now() - started) / 1000).toFixed(0)} s`);
  // Bases of older recipes are never used again.
  for (const name of readdirSync(CACHE_DIR)) {
    if (name.startsWith(`${release}-`) && name.endsWith('.img') && join(CACHE_DIR, name) !== base) rmSync(join(CACHE_DIR, name), { force: true });
  }

  started = Date.now();
  const image = join(work, `${release}-sensor-0001.img`);
  const cli = join(repoRoot, 'packages/cli/bin/piimg.js');
  if (!existsSync(join(repoRoot, 'packages/cli/lib/index.js'))) throw new Error('the piimg CLI is not built: run npm run build');
  runOrThrow(process.execPath, [cli, 'inject', base, '-o', image, '--config', 'examples/fleet/devices/sensor-0001.yaml'], {
    ...FLEET_ENV,
    PIIMG_CACHE_DIR: join(work, 'piimg-cache'),
  });
  timings.push(`inject ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // Direct kernel boot with what the injected boot partition holds, read with mtools.
  const { diskId, partitions } = readMbr(image);
  const bootfs = `${image}@@${partitions[0]!.byteOffset}`;
  const kernel = join(work, `${release}-${KERNEL}`);
  const initramfs = join(work, `${release}-${INITRAMFS}`);
  runOrThrow('mcopy', ['-n', '-i', bootfs, `::/${KERNEL}`, kernel]);
  runOrThrow('mcopy', ['-n', '-i', bootfs, `::/${INITRAMFS}`, initramfs]);
  const cmdlineTxt = runOrThrow('mtype', ['-i', bootfs, '::/cmdline.txt']).trim();
  // The Pi's consoles become the PC's first serial port; everything else is the image's own.
  const cmdline = cmdlineTxt
    .split(/\s+/)
    .filter((arg) => arg !== 'console=tty1')
    .map((arg) => (arg.startsWith('console=serial0') ? 'console=ttyS0,115200' : arg))
    .join(' ');

  const logs = join(CACHE_DIR, 'logs');
  mkdirSync(logs, { recursive: true });
  const consoleLog = join(logs, `${release}-console.log`);
  const reportLog = join(logs, `${release}-report.log`);
  started = Date.now();
  let accel: 'kvm' | 'tcg' = (process.env.PIIMG_BOOT_ACCEL as 'kvm' | 'tcg' | undefined) ?? (kvmUsable() && !kvmFailed ? 'kvm' : 'tcg');
  if ((await bootOnce({ image, kernel, initramfs, cmdline, consoleLog, reportLog, accel })) === 'kvm-failed') {
    console.warn(`first-boot test ${release}: KVM does not run this guest here; booting with TCG`);
    kvmFailed = true;
    accel = 'tcg';
    await bootOnce({ image, kernel, initramfs, cmdline, consoleLog, reportLog, accel });
  }
  timings.push(`boot ${((Date.now() - started) / 1000).toFixed(0)} s (${accel})`);
  console.log(`first-boot test ${release}: ${timings.join(', ')}; serial logs in ${logs}`);

  let report: Map<string, Section>;
  try {
    report = parseReport(readFileSync(reportLog, 'utf8'));
  } catch (error) {
    throw new Error(`${(error as Error).message}; serial console tail:\n${tail(consoleLog, 60)}`);
  }
  return { release, diskId, report, consoleLog };
}

describe.skipIf(!ENABLED)('first boot of the fleet example', () => {
  let work = '';
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'piimg-boot-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('has every tool it needs', () => {
    const missing = TOOLS.filter((tool) => toolPath(tool) === undefined);
    expect(missing, `missing tools (.ci/run installs them): ${missing.join(', ')}`).toEqual([]);
  });

  describe.each(RELEASES)('%s', (release) => {
    let booted: Booted;
    beforeAll(async () => {
      const missing = TOOLS.filter((tool) => toolPath(tool) === undefined);
      if (missing.length > 0) throw new Error(`missing tools: ${missing.join(', ')}`);
      booted = await buildInjectBoot(release, work);
      // Each booted image is 1 GiB of sparse file: drop it once its report is in.
      for (const name of [`${release}-sensor-0001.img`]) rmSync(join(work, name), { force: true });
    }, 45 * 60_000);

    const section = (name: string): Section => {
      const found = booted.report.get(name);
      if (!found) throw new Error(`the report has no section ${name}`);
      return found;
    };
    const output = (name: string): string => section(name).output;

    it('boots from the injected disk id through root=PARTUUID, with the recipe kernel arguments', () => {
      const cmdline = output('cmdline').split(/\s+/);
      expect(cmdline, 'root=PARTUUID follows the disk id in the MBR').toContain(`root=PARTUUID=${booted.diskId}-02`);
      expect(output('root-source'), 'root filesystem').toMatch(/^\/dev\/vda2\s+ext4$/);
      expect(output('bootfs-source'), '/boot/firmware mounted through fstab (PARTUUID)').toMatch(/^\/dev\/vda1\s+vfat$/);
      expect(cmdline, 'cmdline.append from the example').toContain('quiet');
      expect(cmdline, 'Wi-Fi regulatory domain on the kernel command line').toContain('cfg80211.ieee80211_regdom=DE');
    });

    it('sets the host name and its /etc/hosts line', () => {
      expect(output('hostname'), 'hostname').toBe('sensor-0001');
      expect(output('hosts-127.0.1.1').split(/\s+/).slice(1), '127.0.1.1 line of /etc/hosts').toContain('sensor-0001');
    });

    it('makes pi (uid 1000) a usable account with the configured password', () => {
      const passwd = output('passwd-pi').split(':');
      expect(passwd[2], 'uid of pi').toBe('1000');
      expect(passwd[6], 'login shell of pi').toBe('/bin/bash');
      expect(section('passwd-1001').status, `no second user beside pi (uid 1001: ${output('passwd-1001')})`).not.toBe(0);
      expect(output('groups-pi').split(/\s+/), 'pi keeps the default groups').toEqual(expect.arrayContaining(['sudo', 'gpio', 'netdev']));
      expect(output('password'), 'shadow hash of pi checked against change-me-please').toMatch(/^scheme=\S+ match$/);
    });

    it('installs the authorized key with the modes sshd requires', () => {
      const lines = output('authorized-keys').split('\n');
      const stat = (suffix: string) => lines.find((line) => line.split(' ')[0]!.endsWith(suffix));
      expect(stat('/.ssh'), '~/.ssh mode and owner').toMatch(/ 700 1000:1000$/);
      expect(stat('/.ssh/authorized_keys'), 'authorized_keys mode and owner').toMatch(/ 600 1000:1000$/);
      expect(lines, 'authorized_keys content').toContain(FLEET_KEY);
    });

    it('runs sshd with password logins off and without the rename-user banner', () => {
      expect(output('ssh-active'), 'systemctl is-active ssh').toBe('active');
      const config = output('sshd-config').toLowerCase();
      expect(config, 'sshd -T').toContain('passwordauthentication no');
      expect(config, 'sshd -T banner (rename_user.conf removed)').toContain('banner none');
    });

    it('has the Wi-Fi profile loaded by NetworkManager and the radio enabled', () => {
      const profiles = output('nm-connections').split('\n');
      expect(profiles.some((line) => line.startsWith('Plant-Floor:802-11-wireless:')), `nmcli connection show:\n${profiles.join('\n')}`).toBe(true);
      expect(output('nm-radio-wifi'), 'nmcli radio wifi').toBe('enabled');
    });

    it('brings WireGuard wg0 up with its address', () => {
      expect(section('wg0').status, `ip -br addr show wg0: ${output('wg0')}`).toBe(0);
      expect(output('wg0').split(/\s+/), 'wg0 address').toContain('10.10.0.11/24');
    });

    it('sets the time zone, locale and keyboard this release reads', () => {
      expect(output('timezone'), 'timedatectl Timezone').toBe('Europe/Berlin');
      expect(output('localtime'), '/etc/localtime link').toMatch(/\/usr\/share\/zoneinfo\/Europe\/Berlin$/);
      if (release === 'trixie') expect(section('etc-timezone').status, 'Debian 13 has no /etc/timezone').not.toBe(0);
      else expect(output('etc-timezone'), '/etc/timezone').toBe('Europe/Berlin');
      expect(output('locale'), 'localectl System Locale').toMatch(/LANG=en_GB\.UTF-8/);
      expect(output('locale-available').toLowerCase(), 'en_GB.UTF-8 generated').toContain('en_gb.utf8');
      expect(output('keyboard'), '/etc/default/keyboard').toMatch(/^XKBLAYOUT="?de"?$/m);
    });

    it('keeps the services enabled and disabled as configured after first boot', () => {
      const [agent, bluetooth, ssh, userconfig, getty] = output('enabled').split('\n');
      expect(agent, 'agent.service is-enabled').toBe('enabled');
      expect(['disabled', 'masked'], `bluetooth.service is-enabled: ${bluetooth}`).toContain(bluetooth);
      expect(ssh, 'ssh.service is-enabled').toBe('enabled');
      expect(['disabled', 'masked'], `userconfig.service is-enabled: ${userconfig}`).toContain(userconfig);
      expect(getty, 'getty@tty1.service is-enabled (the wizard is off, the console login is back)').toBe('enabled');
      const [agentActive, bluetoothActive] = output('active').split('\n');
      expect(agentActive, 'agent.service is-active').toBe('active');
      expect(bluetoothActive, 'bluetooth.service is-active').toBe('inactive');
    });

    it('ends first boot with no failed unit and without the user wizard', () => {
      expect(output('failed'), 'systemctl --failed').toBe('');
      expect(output('system-state'), 'systemctl is-system-running').toBe('running');
      expect(section('userconfig-ran').status, 'userconfig.service ran (its marker exists)').not.toBe(0);
    });

    it.runIf(release === 'trixie')('finishes cloud-init without errors', () => {
      const status = section('cloud-init').output;
      expect(status, 'cloud-init status --long').toMatch(/^status: done$/m);
      expect(status, 'cloud-init errors').toMatch(/^errors: \[\]$/m);
      // Recoverable errors are listed as "\t- message" lines. The comment-only user-data that
      // Raspberry Pi OS ships always gives "empty cloud config"; any other one fails.
      const recoverable = [...status.matchAll(/^\s+- (.*)$/gm)].map((match) => match[1]!);
      expect(
        recoverable.filter((message) => !/empty cloud config/.test(message)),
        'cloud-init recoverable errors',
      ).toEqual([]);
    });
  });
});
