import { mkdir, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/index.js';
import { isPiimgError, type PiimgError } from '../../src/errors.js';
import { applyConfig } from '../../src/recipe/index.js';
import { bookwormRoot, bootVolume, counterRandom, fixedClock } from '../recipe/fixtures.js';

let top: string;
let root: string;

beforeAll(async () => {
  top = await mkdtemp(join(tmpdir(), 'piimg-confine-'));
  root = join(top, 'configs');
  await mkdir(join(root, 'tree', 'sub'), { recursive: true });
  await writeFile(join(root, 'tree', 'sub', 'ok.txt'), 'inside\n');
  await writeFile(join(top, 'outside.txt'), 'outside secret\n');
  await symlink(join(top, 'outside.txt'), join(root, 'link-out'));
  await symlink('tree/sub/ok.txt', join(root, 'link-in'));
});
afterAll(() => rm(top, { recursive: true, force: true }));

async function loadError(source: string): Promise<PiimgError> {
  const path = join(root, 'device.yaml');
  await writeFile(path, `files:\n  - source: ${JSON.stringify(source)}\n    target: /etc/x\n`);
  try {
    await loadConfig(path, { sourceRoot: root });
  } catch (error) {
    if (isPiimgError(error)) return error;
    throw error;
  }
  throw new Error(`${source} was accepted`);
}

describe('files[].source with a source root', () => {
  it('refuses paths that climb out, absolute paths and symlinks that lead out, naming the entry', async () => {
    const climb = await loadError('../../../../etc/passwd');
    expect(climb.code).toBe('E_CONFIG');
    // Sources are absolute once loaded: the message names the entry and the path it resolved to.
    expect(climb.message).toContain('files[0].source: /etc/passwd is outside the source root');
    expect((await loadError('/etc/passwd')).message).toContain('files[0].source: /etc/passwd is outside the source root');
    expect((await loadError(join(top, 'outside.txt'))).message).toContain('is outside the source root');
    expect((await loadError('./link-out')).message).toContain(`files[0].source: ${join(root, 'link-out')} leads outside the source root`);
    expect((await loadError('./missing')).message).toContain('does not exist');
    // parseConfig checks the same.
    expect(() => parseConfig({ files: [{ source: '../outside.txt', target: '/x' }] }, { baseDir: root, sourceRoot: root })).toThrow(/outside the source root/);
  });

  it('accepts sources inside the root, also through symlinks that stay inside', async () => {
    const path = join(root, 'good.yaml');
    await writeFile(path, 'files:\n  - { source: ./tree, target: /opt/tree }\n  - { source: ./link-in, target: /etc/y }\n');
    const loaded = await loadConfig(path, { sourceRoot: root });
    expect(loaded.config.files).toHaveLength(2);
    // Without a source root, the CLI user's own choice stands.
    await writeFile(path, `files:\n  - { source: ../outside.txt, target: /etc/z }\n`);
    expect((await loadConfig(path)).config.files).toHaveLength(1);
  });

  it('applyConfig checks every file of a tree again: a symlink swapped in after loading is refused', async () => {
    const tree = join(root, 'swap');
    await mkdir(join(tree, 'dir'), { recursive: true });
    await writeFile(join(tree, 'dir', 'a.txt'), 'a\n');
    const path = join(root, 'swap.yaml');
    await writeFile(path, 'files:\n  - { source: ./swap, target: /opt/swap }\n');
    const loaded = await loadConfig(path, { sourceRoot: root });
    // After the check, the tree's directory becomes a symlink to outside (a race a service must survive).
    await rm(join(tree, 'dir'), { recursive: true });
    await symlink(top, join(tree, 'dir'));
    const boot = await bootVolume();
    const rootVolume = await bookwormRoot();
    // A symlink inside a tree is copied as a link, never read through: allowed.
    await applyConfig({ boot, root: rootVolume }, loaded, { now: fixedClock, random: counterRandom() });
    expect(await rootVolume.readlink('/opt/swap/dir')).toBe(top);
    // The source itself swapped for a symlink that leads out: refused at apply time.
    await rm(tree, { recursive: true });
    await symlink(top, tree);
    await expect(applyConfig({ boot: await bootVolume(), root: await bookwormRoot() }, loaded, { now: fixedClock, random: counterRandom() })).rejects.toMatchObject({
      code: 'E_CONFIG',
      message: expect.stringContaining('files[0].source'),
    });
    await unlink(tree);
  });
});

const HASHES = [
  '$y$j9T$saltsaltsaltsalt$Mkop2YSmqnE/srxZXCgSM8Zno4NJ3fN6dZnE9U8QZpC',
  '$gy$j9T$saltsaltsaltsalt$z6UXaMxpKPuAotyF.N7rqUDZTrOeE5bDf/s6akmZofA',
  '$7$CU..../....saltsaltsalt$DxhIhX7lh4V.cf70uLX6khKOqRT5IMoihMurak9tHO3',
  '$2b$05$abcdefghijklmnopqrstuuHIrMEWpUCQe2YqFR3sXwQ75u4od..9q',
  '$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/',
  '$6$rounds=5000$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/',
  '$5$saltsalt$0rl.MZtoLLPP3X0Rdl8riRnphIcAXJY27/aOAyK2hB5',
  '!$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/',
  '!',
  '*',
  '!*',
];

describe('user.passwordHash', () => {
  it('accepts well-formed crypt(5) hashes (made by libxcrypt) and lock strings', () => {
    for (const hash of HASHES) expect(parseConfig({ user: { name: 'pi', passwordHash: hash } }).user?.passwordHash).toBe(hash);
  });

  it('refuses anything else with E_CONFIG, without echoing the value', () => {
    const bad = [
      '$6$SECRET7notahash',
      '$6$saltsalt$' + 'x'.repeat(85),
      '$6$salt:salt$' + 'x'.repeat(86),
      '$2b$03$abcdefghijklmnopqrstuuHIrMEWpUCQe2YqFR3sXwQ75u4od..9q',
      '$y$j9T$salt$short',
      'SECRETplaintext',
      '',
      '!!SECRET',
      '$6$saltsalt$' + 'x'.repeat(86) + '\nroot::0:0',
    ];
    for (const hash of bad) {
      let error: unknown;
      try {
        parseConfig({ user: { name: 'pi', passwordHash: hash } });
      } catch (caught) {
        error = caught;
      }
      expect(isPiimgError(error, 'E_CONFIG'), JSON.stringify(hash)).toBe(true);
      const text = (error as PiimgError).message + JSON.stringify((error as PiimgError).data);
      expect(text).toContain('user.passwordHash');
      if (hash.length > 0) expect(text).not.toContain(hash.slice(0, 12) === '$6$saltsalt$' ? hash.slice(12, 30) : hash.slice(2));
    }
  });

  it('refuses md5crypt with a reason', () => {
    expect(() => parseConfig({ user: { name: 'pi', passwordHash: '$1$saltsalt$6SNdNaZLKst2LlSm7oPPL1' } })).toThrow(/md5crypt \(\$1\$\) is refused as too weak/);
  });
});
