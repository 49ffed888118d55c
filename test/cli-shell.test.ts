import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { commandList } from '../packages/cli/src/commands/list.js';
import { parseOptionSpec } from '../packages/cli/src/commands/completion.js';
import { main, version } from '../packages/cli/src/index.js';
import { progressReporter, useColor } from '../packages/cli/src/io.js';
import { piimg } from './support/cli.js';
import { fixturePath, repoRoot } from './support/fixtures.js';
import { hasTool, run } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-shell-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class Terminal extends Writable {
  isTTY = true;
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString('utf8');
    callback();
  }
}

describe('piimg --help and --version', () => {
  it('prints the version of the package, and --help lists --version and the exit codes in order', async () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'packages', 'cli', 'package.json'), 'utf8')) as { version: string };
    expect(version).toBe(pkg.version);
    expect((await piimg(['--version'])).stdout).toBe(`${pkg.version}\n`);
    expect((await piimg(['-V'])).stdout).toBe(`${pkg.version}\n`);
    const help = (await piimg(['--help'])).stdout;
    expect(help).toMatch(/^ {2}-V, --version /m);
    expect(help).toMatch(/^ {2}completion /m);
    const exitSection = help.slice(help.indexOf('Exit status:'), help.indexOf('Environment:'));
    const codes = [...exitSection.matchAll(/^ {2}(\d+) /gm)].map((m) => Number(m[1]));
    expect(codes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 10, 70, 130]);
    expect(codes).toEqual([...codes].sort((a, b) => a - b));
    expect(help).toContain('FORCE_COLOR');
  });

  const built = existsSync(join(repoRoot, 'packages', 'cli', 'lib', 'index.js'));
  it.skipIf(!built)('--version and --help load nothing from @piimg/core (the built command)', () => {
    // A resolve hook that refuses @piimg/core: the command line must still answer.
    const hooks = join(dir, 'hooks.mjs');
    writeFileSync(hooks, "export async function resolve(specifier, context, next) {\n  if (/^@piimg\\/(core|wasm)/.test(specifier)) throw new Error(`loaded ${specifier}`);\n  return next(specifier, context);\n}\n");
    const register = join(dir, 'register.mjs');
    writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
    const bin = join(repoRoot, 'packages', 'cli', 'bin', 'piimg.js');
    for (const flag of ['--version', '--help']) {
      const result = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, bin, flag], { encoding: 'utf8' });
      expect(result.stderr, flag).toBe('');
      expect(result.status, flag).toBe(0);
    }
    // The hook does refuse it: a command that needs the library fails under it (the
    // command's bundle carries @piimg/core, which loads @piimg/wasm first).
    const info = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, bin, 'info', fixturePath('pi-bookworm')], { encoding: 'utf8' });
    expect(info.stderr).toMatch(/loaded @piimg\/(core|wasm)/);
  });
});

describe('piimg completion', () => {
  const script = async (shell: string) => {
    const result = await piimg(['completion', shell]);
    expect(result.code).toBe(0);
    return result.stdout;
  };

  it('lists for each command exactly the options its help documents', async () => {
    for (const entry of commandList) {
      const help = (await piimg([entry.name, '--help'])).stdout;
      expect(help, entry.name).toContain(`Usage: piimg ${entry.name}`);
      const documented = new Set([...help.slice(help.indexOf('Options:')).matchAll(/^\s+(?:-\w, )?--([a-z][a-z-]*)/gm)].map((m) => m[1]));
      expect(new Set(entry.options.map((o) => parseOptionSpec(o).long)), entry.name).toEqual(documented);
      expect((await (await entry.load()).name), entry.name).toBe(entry.name);
    }
  });

  it('prints a bash script that bash accepts and that completes commands and options', async () => {
    const bash = await script('bash');
    const path = join(dir, 'piimg.bash');
    writeFileSync(path, bash);
    if (!hasTool('bash')) return;
    run('bash', ['-n', path]);
    const complete = (words: string[]) =>
      run('bash', ['-c', `source "$0"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _piimg; printf '%s\\n' "\${COMPREPLY[@]}"`, path]).stdout.split('\n').filter(Boolean);
    expect(complete(['piimg', ''])).toEqual(expect.arrayContaining([...commandList.map((c) => c.name), '--version', '--help']));
    expect(complete(['piimg', 'in'])).toEqual(['inject', 'info']);
    expect(complete(['piimg', 'inject', '--c'])).toEqual(['--config']);
    expect(complete(['piimg', 'completion', ''])).toEqual(['bash', 'zsh', 'fish']);
  });

  it('prints zsh and fish scripts naming every command and option', async () => {
    const zsh = await script('zsh');
    const fish = await script('fish');
    expect(zsh.startsWith('#compdef piimg\n')).toBe(true);
    for (const entry of commandList) {
      expect(zsh).toContain(`'${entry.name}:`);
      expect(zsh).toContain(`    ${entry.name}) _arguments`);
      expect(fish).toContain(`-n __fish_use_subcommand -a ${entry.name} -d`);
      for (const option of entry.options.map(parseOptionSpec)) {
        expect(zsh, `${entry.name} --${option.long}`).toContain(`--${option.long}`);
        expect(fish, `${entry.name} --${option.long}`).toMatch(new RegExp(`__fish_seen_subcommand_from ${entry.name}'.* -l ${option.long}\\b`));
      }
    }
    // The shells' own syntax check where they are installed (they are not oracles CI installs).
    for (const [shell, text] of [['zsh', zsh], ['fish', fish]] as const) {
      const path = join(dir, `piimg.${shell}`);
      writeFileSync(path, text);
      if (spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0) run(shell, ['-n', path]);
    }
  });

  it('refuses an unknown shell with a usage error', async () => {
    const result = await piimg(['completion', 'tcsh']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("unknown shell 'tcsh'");
  });
});

describe('colors and progress', () => {
  it('honours NO_COLOR (when not empty) and FORCE_COLOR, which wins as in Node', () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    expect(useColor(tty, {})).toBe(true);
    expect(useColor(pipe, {})).toBe(false);
    expect(useColor(tty, { NO_COLOR: '1' })).toBe(false);
    expect(useColor(tty, { NO_COLOR: '' })).toBe(true);
    expect(useColor(tty, { TERM: 'dumb' })).toBe(false);
    expect(useColor(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(useColor(pipe, { FORCE_COLOR: '' })).toBe(true);
    expect(useColor(tty, { FORCE_COLOR: '0' })).toBe(false);
    expect(useColor(tty, { FORCE_COLOR: 'false' })).toBe(false);
    expect(useColor(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' })).toBe(true);
  });

  it('FORCE_COLOR colors the output of a command that is not on a terminal', async () => {
    const plain = await piimg(['verify', fixturePath('pi-bookworm')], { FORCE_COLOR: '0' });
    expect(plain.stdout).not.toMatch(/\u001b\[/);
    const forced = await piimg(['verify', fixturePath('pi-bookworm')], { FORCE_COLOR: '1' });
    expect(forced.stdout).toMatch(/\u001b\[32mclean\u001b\[0m/);
  });

  it('clears the progress line of a phase without a total (first open of an .xz on a terminal)', async () => {
    const stderr = new Terminal();
    const stdout = new Terminal();
    // The library reads PIIMG_CACHE_DIR from the process: a fresh cache makes it decompress.
    const saved = process.env.PIIMG_CACHE_DIR;
    process.env.PIIMG_CACHE_DIR = join(dir, 'fresh-cache');
    try {
      expect(await main(['info', fixturePath('pi-bookworm')], { stdout, stderr, env: process.env, cwd: dir })).toBe(0);
    } finally {
      if (saved === undefined) delete process.env.PIIMG_CACHE_DIR;
      else process.env.PIIMG_CACHE_DIR = saved;
    }
    expect(stderr.text).toContain('decompress: ');
    // Whatever was drawn, the last thing written takes the line off the terminal.
    expect(stderr.text.endsWith('\r\u001b[2K')).toBe(true);
    expect(stderr.text.split('\r').pop()).toBe('\u001b[2K');
  });

  it('draws nothing and clears nothing when progress never showed', () => {
    const stderr = new Terminal();
    const report = progressReporter({ stdout: new Terminal(), stderr, env: {}, cwd: dir }, true)!;
    report.clear();
    expect(stderr.text).toBe('');
    report({ phase: 'decompress', bytesDone: 1 << 20 });
    report.clear();
    expect(stderr.text).toBe('\r\u001b[2Kdecompress: 1.0 MiB\r\u001b[2K');
  });
});
