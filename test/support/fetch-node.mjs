// Fetches an official Node.js binary from the npm registry (the `node-<platform>-<arch>`
// packages the Node.js project publishes) into a cache directory outside the repository,
// and prints the path of its `node` executable. Used to run the zstd tests and bench under
// a Node whose zlib has zstd (22.15+/23.8+) while the project itself supports Node 20.
//
//   node test/support/fetch-node.mjs [VERSION]        (default 24.22.3)
//
// Cache: PIIMG_NODE_CACHE_DIR, else $XDG_CACHE_HOME/piimg-node, else ~/.cache/piimg-node.
// Exits 2 with a message on stderr when it cannot be fetched (no registry access,
// no package for this platform); callers turn that into a visible skip.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const version = process.argv[2] ?? '24.22.3';
if (!/^\d+\.\d+\.\d+$/.test(version)) {
  console.error(`fetch-node: a version is X.Y.Z, got ${version}`);
  process.exit(2);
}
const platform = process.platform === 'win32' ? 'win' : process.platform;
const name = `node-${platform}-${process.arch}`;
const cache = process.env.PIIMG_NODE_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'piimg-node');
const dir = join(cache, `${name}-${version}`);
const executable = join(dir, platform === 'win' ? 'bin/node.exe' : 'bin/node');

if (!existsSync(executable)) {
  mkdirSync(cache, { recursive: true });
  // Unpacked next to its final place and renamed: a cut-off fetch leaves no half directory.
  const work = mkdtempSync(join(cache, '.fetch-'));
  try {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    execFileSync(npm, ['pack', `${name}@${version}`, '--pack-destination', work, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
    const tarball = readdirSync(work).find((entry) => entry.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack ${name}@${version} gave no tarball`);
    execFileSync('tar', ['-xzf', join(work, tarball), '-C', work], { stdio: 'inherit' });
    renameSync(join(work, 'package'), dir);
  } catch (error) {
    console.error(`fetch-node: cannot fetch ${name}@${version}: ${error.message}`);
    process.exitCode = 2;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
if (existsSync(executable)) console.log(executable);
