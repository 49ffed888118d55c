#!/usr/bin/env node
// Mutation fuzzer for piimg's parsers and writers: MBR, EBR, GPT, FAT (BPB,
// FSInfo, FAT, directory entries, long names), ext4 (superblock with its
// checksum recomputed, group descriptors, inodes, extent trees, directory
// blocks and htree roots, bitmaps; with and without metadata_csum) and the
// .xz/.gz/.zip/.zst readers.
//
// Oracle: a case may end normally or with a PiimgError (its code is counted);
// any other exception, a case running longer than --case-timeout, or the
// process growing past --max-rss fails. When an edit of a mutated filesystem
// succeeds on an input the native checker finds clean, the output must be
// clean under fsck.fat -n / e2fsck -fn.
//
//   node test/fuzz/run.mjs --seed N --time 3600          a long run
//   node test/fuzz/run.mjs --seed N --case K --target T  replays one case
//   npm run fuzz -- --time 120                           what CI runs (needs `npm run build`)
//
// Needs the built library (packages/core/lib), mkfs tools (mke2fs), the
// native checkers (fsck.fat, e2fsck), xz and the fixtures in fixtures/images.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { MemoryDevice, crc32, formatFat, mountFat, resolveSource } from '../../packages/core/lib/index.js';
import { zstdCompress } from '../../packages/wasm/lib/index.js';
import { EXT4_TARGETS, FAT_TARGETS, caseSeed, rng } from './mutate.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');
const ALL_TARGETS = ['mbr', 'ebr', 'gpt', ...FAT_TARGETS, ...EXT4_TARGETS, 'xz', 'gz', 'zip', 'zst'];

function parseArgs(argv) {
  const options = { seed: undefined, time: 60, cases: Infinity, targets: ALL_TARGETS, case: undefined, caseTimeout: 30_000, maxRss: 2048 };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--seed': options.seed = Number(value()) >>> 0; break;
      case '--time': options.time = Number(value()); break;
      case '--cases': options.cases = Number(value()); break;
      case '--target': options.targets = value().split(','); break;
      case '--case': options.case = Number(value()); break;
      case '--case-timeout': options.caseTimeout = Number(value()) * 1000; break;
      case '--max-rss': options.maxRss = Number(value()); break;
      case '--help':
        console.log('usage: node test/fuzz/run.mjs [--seed N] [--time SECONDS] [--cases N] [--target T,...] [--case K] [--case-timeout SECONDS] [--max-rss MiB]');
        console.log(`targets: ${ALL_TARGETS.join(', ')}`);
        process.exit(0);
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  for (const target of options.targets) if (!ALL_TARGETS.includes(target)) throw new Error(`unknown target ${target}; targets: ${ALL_TARGETS.join(', ')}`);
  options.seed ??= (Date.now() ^ (process.pid << 16)) >>> 0;
  return options;
}

function tool(cmd, args, input) {
  const result = spawnSync(cmd, args, { env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` }, input, maxBuffer: 256 * 2 ** 20 });
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${result.stderr?.toString() ?? result.error}`);
  return result.stdout;
}

/** A stored-and-deflated .zip with one entry (APPNOTE.TXT §4.3), enough for the zip reader. */
function zipOf(name, data) {
  const packed = deflateRawSync(data);
  const nameBytes = Buffer.from(name);
  const crc = crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(8, 8);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(packed.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(8, 10);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(packed.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(nameBytes.length, 28);
  const centralAt = local.length + nameBytes.length + packed.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + nameBytes.length, 12);
  end.writeUInt32LE(centralAt, 16);
  return Buffer.concat([local, nameBytes, packed, central, nameBytes, end]);
}

async function fatBase(dir, fatType) {
  const device = new MemoryDevice(fatType === 'fat12' ? 1440 * 1024 : fatType === 'fat16' ? 4 * 2 ** 20 : 34 * 2 ** 20);
  formatFat(device, { fatType, label: 'FUZZ', clusterSize: 512 });
  const volume = await mountFat(device);
  await volume.mkdir('/overlays/deeper', { recursive: true });
  await volume.writeFile('/config.txt', 'dtparam=audio=on\n'.repeat(40));
  await volume.writeFile('/cmdline.txt', 'console=serial0,115200 root=PARTUUID=1234-02 rootwait\n');
  await volume.writeFile('/kernel8.img', new Uint8Array(9000).fill(7));
  await volume.writeFile('/overlays/Some Overlay Name.dtbo', new Uint8Array(3000).fill(3));
  await volume.writeFile('/overlays/deeper/a-rather-long-file-name-with-two-slots.txt', 'long\n');
  for (let i = 0; i < 6; i++) await volume.writeFile(`/overlays/o${i}.dtbo`, new Uint8Array(600 * i + 1).fill(i));
  await volume.close();
  const path = join(dir, `${fatType}.img`);
  writeFileSync(path, device.bytes);
  return path;
}

function ext4Base(dir, name, features) {
  const tree = join(dir, `${name}-tree`);
  mkdirSync(join(tree, 'etc'), { recursive: true });
  mkdirSync(join(tree, 'many'), { recursive: true });
  writeFileSync(join(tree, 'etc', 'hostname'), 'raspberrypi\n');
  writeFileSync(join(tree, 'etc', 'big'), Buffer.alloc(200_000, 9));
  // Enough names for an htree directory (dir_index) with 1 KiB blocks.
  for (let i = 0; i < 150; i++) writeFileSync(join(tree, 'many', `file-with-a-longer-name-${i}`), String(i));
  const path = join(dir, `${name}.img`);
  tool('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '1024', '-N', '256', '-O', features, '-E', 'nodiscard', '-U', '0c4a2b6e-6a34-4b1f-9d4e-1d9f0b7c1a10', '-d', tree, path, '8M']);
  // mke2fs -d links names one by one, without an index: e2fsck -D builds the htree (exit 1: "changed").
  spawnSync('e2fsck', ['-fyD', path], { env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
  tool('e2fsck', ['-fn', path]);
  return path;
}

async function prepare(dir, targets) {
  const bases = { fat: {}, ext4: {}, fixtures: {}, containers: {} };
  if (targets.some((t) => FAT_TARGETS.includes(t) || ['xz', 'gz', 'zip', 'zst'].includes(t))) {
    for (const fatType of ['fat12', 'fat16', 'fat32']) bases.fat[fatType] = await fatBase(dir, fatType);
  }
  if (targets.some((t) => EXT4_TARGETS.includes(t))) {
    bases.ext4['ext4 metadata_csum'] = ext4Base(dir, 'csum', 'metadata_csum,^64bit');
    bases.ext4['ext4 no metadata_csum'] = ext4Base(dir, 'nocsum', '^metadata_csum,^64bit');
  }
  if (targets.some((t) => ['mbr', 'ebr', 'gpt'].includes(t))) {
    const cacheDir = process.env.PIIMG_CACHE_DIR ?? join(tmpdir(), 'piimg-test-cache');
    for (const name of ['pi-bookworm', 'pi-bullseye', 'pi-logical', 'pi-gpt', 'pi-gpt-4k']) {
      bases.fixtures[name] = (await resolveSource(join(repoRoot, 'fixtures', 'images', `${name}.img.xz`), { cacheDir })).rawPath;
    }
  }
  if (targets.some((t) => ['xz', 'gz', 'zip', 'zst'].includes(t))) {
    const raw = readFileSync(bases.fat.fat12);
    writeFileSync(join(dir, 'small.img.xz'), tool('xz', ['-T1', '-c', '-3'], raw));
    writeFileSync(join(dir, 'small.img.gz'), gzipSync(raw));
    writeFileSync(join(dir, 'small.img.zip'), zipOf('small.img', raw));
    // Two frames with content sizes and checksums, as piimg writes .img.zst.
    const half = raw.length >> 1;
    writeFileSync(join(dir, 'small.img.zst'), Buffer.concat([zstdCompress(raw.subarray(0, half), 3), zstdCompress(raw.subarray(half), 3)]));
    for (const kind of ['xz', 'gz', 'zip', 'zst']) bases.containers[kind] = join(dir, `small.img.${kind}`);
  }
  return bases;
}

class Runner {
  constructor(bases) {
    this.bases = bases;
    this.worker = undefined;
  }
  start() {
    this.worker = new Worker(join(here, 'worker.mjs'), { workerData: { bases: this.bases }, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
    this.worker.unref();
  }
  /** Runs one case; resolves with its result, or a failure on timeout or worker death. */
  run(job, timeoutMs) {
    if (!this.worker) this.start();
    const worker = this.worker;
    return new Promise((resolve) => {
      const done = (result) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        resolve(result);
      };
      const onMessage = (message) => done(message);
      const onError = (error) => {
        this.worker = undefined;
        done({ ...job, failure: `worker died: ${error?.message ?? error}` });
      };
      const timer = setTimeout(() => {
        this.worker = undefined;
        void worker.terminate();
        done({ ...job, failure: `hang: no result within ${timeoutMs / 1000} s` });
      }, timeoutMs);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.postMessage(job);
    });
  }
  async stop() {
    await this.worker?.terminate();
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'piimg-fuzz-'));
  console.log(`piimg fuzz: seed ${options.seed}, ${options.case === undefined ? `time ${options.time} s` : `case ${options.case}`}, targets ${options.targets.join(',')}`);
  const bases = await prepare(dir, options.targets);
  const runner = new Runner(bases);
  const counts = new Map();
  const failures = [];
  const baselineRss = process.memoryUsage().rss;
  let peakRss = baselineRss;
  let cases = 0;
  const deadline = started + options.time * 1000;
  const indices = options.case === undefined ? null : [options.case];
  try {
    for (let index = indices ? indices[0] : 0; ; index++) {
      if (indices ? index !== indices[0] : Date.now() >= deadline || cases >= options.cases) break;
      // The target of case K comes from (seed, K) too, unless one target is asked for.
      const target = options.targets.length === 1 ? options.targets[0] : rng(caseSeed(options.seed, index) ^ 0x5bd1e995).pick(options.targets);
      const result = await runner.run({ target, seed: options.seed, index }, options.caseTimeout);
      cases++;
      const rss = process.memoryUsage().rss;
      peakRss = Math.max(peakRss, rss);
      if (rss - baselineRss > options.maxRss * 2 ** 20) {
        result.failure ??= `memory: process RSS grew by ${Math.round((rss - baselineRss) / 2 ** 20)} MiB`;
        await runner.stop();
        runner.worker = undefined;
      }
      const outcome = result.failure ? `FAIL ${result.failure.split(':')[0]}` : result.outcome;
      const key = `${target}\t${outcome}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (result.failure) {
        failures.push(result);
        console.log(`FAIL ${target} case ${index}: ${result.failure}\n  input: ${result.detail ?? ''}\n  replay: node test/fuzz/run.mjs --seed ${options.seed} --case ${index} --target ${target}`);
        if (result.stack) console.log(result.stack.replace(/^/gm, '    '));
        if (indices && options.targets.length > 1) break;
      } else if (indices) console.log(`${target} case ${index}: ${result.outcome}  (${result.detail ?? ''})`);
    }
  } finally {
    await runner.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  console.log(`\n${cases} cases in ${seconds} s, seed ${options.seed}, peak RSS ${Math.round(peakRss / 2 ** 20)} MiB`);
  console.log(`${'target'.padEnd(18)}${'outcome (error code)'.padEnd(40)}count`);
  for (const [key, count] of [...counts].sort()) {
    const [target, outcome] = key.split('\t');
    console.log(`${target.padEnd(18)}${outcome.padEnd(40)}${count}`);
  }
  console.log(failures.length === 0 ? 'no failures' : `${failures.length} FAILURES (replay commands above)`);
  process.exitCode = failures.length === 0 ? 0 : 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 2;
});
