import { describe, expect, it } from 'vitest';
import { bootMountFromFstab, editCmdline, editConfigTxt, parseInstallSection, parseOsRelease } from '../../src/recipe/index.js';
import { routeTarget } from '../../src/recipe/files.js';
import { setShellVariable } from '../../src/recipe/system.js';
import { AccountTable, resolveOwner } from '../../src/recipe/accounts.js';
import { stableUuid } from '../../src/recipe/network.js';

describe('editConfigTxt', () => {
  const base = 'dtparam=audio=on\nenable_uart=0\n\n[pi4]\nenable_uart=1\narm_boost=1\n\n[all]\ngpu_mem=64\n';

  it('changes unconditional lines only and leaves filtered sections alone', () => {
    const out = editConfigTxt(base, { set: { enable_uart: '1', gpu_mem: '128', arm_boost: '0' }, remove: [] });
    expect(out).toBe('dtparam=audio=on\nenable_uart=1\n\n[pi4]\nenable_uart=1\narm_boost=1\n\n[all]\ngpu_mem=128\narm_boost=0\n');
  });

  it('adds an [all] header before appending when the file ends inside a filter', () => {
    const out = editConfigTxt('[pi4]\narm_boost=1\n', { set: { dtoverlay: ['disable-bt'] }, remove: [] });
    expect(out).toBe('[pi4]\narm_boost=1\n[all]\ndtoverlay=disable-bt\n');
  });

  it('matches dtparam by parameter and dtoverlay by overlay name', () => {
    const text = 'dtparam=i2c_arm=off\ndtoverlay=vc4-kms-v3d\ndtoverlay=gpio-fan,gpiopin=14\n';
    const out = editConfigTxt(text, { set: { dtparam: ['i2c_arm=on', 'spi=on'], dtoverlay: ['vc4-kms-v3d,cma-256', 'w1-gpio'] }, remove: [] });
    expect(out).toBe('dtparam=i2c_arm=on\ndtoverlay=vc4-kms-v3d,cma-256\ndtoverlay=gpio-fan,gpiopin=14\ndtparam=spi=on\ndtoverlay=w1-gpio\n');
    expect(editConfigTxt(out, { set: { dtparam: ['i2c_arm=on', 'spi=on'], dtoverlay: ['vc4-kms-v3d,cma-256', 'w1-gpio'] }, remove: [] })).toBe(out);
  });

  it('removes unconditional keys and keeps comments', () => {
    expect(editConfigTxt('# camera\ncamera_auto_detect=1\n[cm4]\ncamera_auto_detect=1\n', { set: {}, remove: ['camera_auto_detect'] })).toBe(
      '# camera\n[cm4]\ncamera_auto_detect=1\n',
    );
  });
});

describe('editCmdline', () => {
  const line = 'console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait\n';
  it('replaces a single key, adds to repeated keys and drops by prefix', () => {
    expect(editCmdline(line, { append: ['fsck.repair=no', 'console=ttyAMA0', 'quiet'], remove: ['rootwait'] })).toBe(
      'console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=no console=ttyAMA0 quiet\n',
    );
    expect(editCmdline(line, { remove: ['console='] })).toBe('root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait\n');
  });
  it('is stable when applied twice and joins a multi-line file into one line', () => {
    const once = editCmdline('a b\nc\n', { append: ['quiet'] });
    expect(once).toBe('a b c quiet\n');
    expect(editCmdline(once, { append: ['quiet'] })).toBe(once);
  });
});

describe('small parsers', () => {
  it('reads [Install] sections with repeated keys and continuations', () => {
    const install = parseInstallSection('[Unit]\nWantedBy=wrong.target\n[Install]\nWantedBy=multi-user.target \\\n  graphical.target\nAlias=a.service\n# WantedBy=no.target\nAlso=b.socket\n');
    expect(install).toMatchObject({ present: true, wantedBy: ['multi-user.target', 'graphical.target'], alias: ['a.service'], also: ['b.socket'] });
    expect(parseInstallSection('[Unit]\n').present).toBe(false);
  });

  it('reads os-release and the boot mount point', () => {
    expect(parseOsRelease('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian \\"x\\""\n')).toEqual({ ID: 'debian', VERSION_ID: '12', PRETTY_NAME: 'Debian "x"' });
    expect(bootMountFromFstab('PARTUUID=1-01  /boot/firmware  vfat defaults 0 2\n')).toBe('/boot/firmware');
    expect(bootMountFromFstab('# PARTUUID=1-01 /boot vfat\nLABEL=x / ext4 defaults 0 1\n')).toBeUndefined();
  });

  it('routes targets under the boot mount point to the boot volume', () => {
    expect(routeTarget('/boot/firmware/config.txt', '/boot/firmware')).toEqual({ volume: 'boot', path: '/config.txt' });
    expect(routeTarget('/boot/firmwarex', '/boot/firmware')).toEqual({ volume: 'root', path: '/boot/firmwarex' });
    expect(routeTarget('/boot/firmware', '/boot/firmware')).toEqual({ volume: 'boot', path: '/' });
  });

  it('sets shell variables, dropping later duplicates', () => {
    expect(setShellVariable('A=1\nB=2\nA=3\n', 'A', 'x"y')).toBe('A="x\\"y"\nB=2\n');
    expect(setShellVariable('', 'LANG', 'C.UTF-8')).toBe('LANG="C.UTF-8"\n');
    expect(setShellVariable('LANG="C"\n', 'LANG', 'en_US.UTF-8', { quote: 'when-needed' })).toBe('LANG=en_US.UTF-8\n');
    expect(setShellVariable('', 'X', 'a b', { quote: 'when-needed' })).toBe('X="a b"\n');
  });

  it('resolves owners through the image tables, never the host', () => {
    const accounts = {
      passwd: AccountTable.parse('/etc/passwd', 'root:x:0:0::/root:/bin/sh\nagent:x:1234:2000::/opt:/bin/false\n', 7),
      group: AccountTable.parse('/etc/group', 'root:x:0:\nagents:x:2000:\nadm:x:4:\n', 4),
      shadow: AccountTable.parse('/etc/shadow', '', 9),
      gshadow: AccountTable.parse('/etc/gshadow', '', 4),
    };
    expect(resolveOwner(accounts, 'agent', 'owner')).toEqual({ uid: 1234, gid: 2000 });
    expect(resolveOwner(accounts, 'agent:adm', 'owner')).toEqual({ uid: 1234, gid: 4 });
    expect(resolveOwner(accounts, '5:7', 'owner')).toEqual({ uid: 5, gid: 7 });
    expect(() => resolveOwner(accounts, 'daemon', 'files[0].owner')).toThrow(/files\[0\]\.owner: user "daemon" does not exist/);
    expect(() => resolveOwner(accounts, 'agent:nope', 'owner')).toThrow(/group "nope"/);
  });

  it('keeps untouched account lines byte for byte', () => {
    const table = AccountTable.parse('/etc/group', 'root:x:0:\n# comment\nadm:x:4:pi\n', 4);
    table.set(['new', 'x', '1001', '']);
    expect(table.text()).toBe('root:x:0:\n# comment\nadm:x:4:pi\nnew:x:1001:\n');
    expect(() => table.set(['bad:name', 'x', '1', ''])).toThrow();
  });

  it('derives stable name-based UUIDs', () => {
    expect(stableUuid('a')).toBe(stableUuid('a'));
    expect(stableUuid('a')).not.toBe(stableUuid('b'));
    expect(stableUuid('a')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
