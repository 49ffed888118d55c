// .xz/.zst input and .xz/.gz/.zst output against the native tools, in the same run.
//
// The image (PIIMG_BENCH_XZ_MIB, default 1024 MiB; small values for CI) is laid
// out like a Raspberry Pi OS image (PIIMG_BENCH_XZ_LAYOUT=pi, the default): an
// MBR, a FAT boot partition of an eighth of the image with a fifth of it used,
// then a root partition 75 % full as pi-gen sizes it (20 % margin), its free
// space zeros at the end as zerofree leaves it. Used space is, per 16 MiB,
// 12 MiB of compressible files (a tar of /usr/lib), 2.4 MiB of random bytes
// (already compressed data) and 1.6 MiB of zeros (inode tables, gaps); about
// 38 % of the image is zeros, many of them whole 24 MiB Blocks.
// PIIMG_BENCH_XZ_LAYOUT=mixed spreads the same share of zeros in 5.6 MiB runs
// between the data, so that no Block is all zeros: pure decoding speed.
// - decode: piimg opening the .img.xz into an empty cache (Blocks decoded on
//   worker threads, zeros left as holes) vs `xz -T2 -dc > file`, on a
//   multi-Block file made like pi-gen's (`xz -6 -T2`, 24 MiB Blocks); and a
//   single-Block file (`xz -6 -T1`, a quarter of the image) vs `xz -dc > file`.
// - encode: image.save(out.img.xz) vs `xz -T2 -6 -c > file`,
//   image.save(out.img.gz) vs `pigz -p2 -6 -c > file`, and
//   image.save(out.img.zst) vs `zstd -T2 -3 -c > file`; sizes compared too.
// - zstd: also piimg opening the .img.zst it wrote vs `zstd -dc > file`.
// PIIMG_BENCH_XZ_CASES (default decode,encode,zstd) picks the cases.
// Targets: decode ratio <= 1.0 on the multi-Block file; encode no slower,
// .xz size within 1 % of xz's; peak RSS under 300 MiB.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare } from './harness.mjs';

const mib = Number(process.env.PIIMG_BENCH_XZ_MIB ?? 1024);
const runs = Number(process.env.PIIMG_BENCH_RUNS ?? 3);
const layout = process.env.PIIMG_BENCH_XZ_LAYOUT ?? 'pi';
const cases = (process.env.PIIMG_BENCH_XZ_CASES ?? 'decode,encode,zstd').split(',');
// PIIMG_BENCH_XZ_REPEAT=N decodes N concatenated copies of the multi-Block .xz (N times the
// image, without compressing N times as much: a large input on a slow or loaded machine).
const repeat = Number(process.env.PIIMG_BENCH_XZ_REPEAT ?? 1);
// PIIMG_BENCH_XZ_DIR keeps the generated image and .xz files there and reuses them in later runs.
const keep = process.env.PIIMG_BENCH_XZ_DIR;
const dir = keep ? join(keep, `${layout}-${mib}`) : mkdtempSync(join(tmpdir(), 'piimg-bench-xz-'));
mkdirSync(dir, { recursive: true });
const sh = (script, ...args) => execFileSync('bash', ['-c', script, 'bench', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
try {
  const base = join(dir, 'base.img');
  const bootStart = 4;
  const bootMiB = Math.max(16, Math.floor(mib / 8 / 4) * 4);
  const rootStart = bootStart + bootMiB;
  const made = existsSync(join(dir, 'single.img.xz'));
  if (made) console.log(`reusing the files in ${dir}`);
  else if (layout === 'pi') {
    // fill OUT FROM_MIB MIB: data in 16 MiB pieces (12 tar, 2.4 random, the rest zeros), from one tar stream.
    sh(
      `set -e; out=$1; mib=$2; boot_start=$3; boot_mib=$4; root_start=$5
       : > "$out"; truncate -s $(( mib * 1048576 )) "$out"
       boot_used=$(( boot_mib / 5 )); root_used=$(( (mib - root_start) * 3 / 4 ))
       (while :; do tar -c /usr/lib 2>/dev/null; done) | {
         dd of="$out" bs=1M seek=$boot_start count=$boot_used iflag=fullblock conv=notrunc status=none
         for at in $(seq $root_start 16 $(( root_start + root_used - 1 ))); do
           n=$(( root_start + root_used - at )); [ $n -gt 16 ] && n=16
           t=$(( n * 3 / 4 )); [ $t -lt 1 ] && t=1
           dd of="$out" bs=1M seek=$at count=$t iflag=fullblock conv=notrunc status=none
           head -c $(( n * 157286 )) /dev/urandom | dd of="$out" bs=1M seek=$(( at + t )) conv=notrunc status=none
         done
       }`,
      base,
      String(mib),
      String(bootStart),
      String(bootMiB),
      String(rootStart),
    );
  } else if (!made) {
    // 16 MiB pieces: 8 of tar data, 2.4 of random, the rest zeros.
    sh(
      `set -e; out=$1; pieces=$(( $2 / 16 ))
       : > "$out"; truncate -s $(( $2 * 1048576 )) "$out"
       (while :; do tar -c /usr/lib 2>/dev/null; done) | for i in $(seq 0 $(( pieces - 1 ))); do
         dd of="$out" bs=1M seek=$(( i * 16 + 1 )) count=8 iflag=fullblock conv=notrunc status=none
         head -c 2516582 /dev/urandom | dd of="$out" bs=1M seek=$(( i * 16 + 9 )) conv=notrunc status=none
       done`,
      base,
      String(mib),
    );
  }
  // An MBR (FAT boot, Linux root), so piimg opens it as an image.
  const mbr = Buffer.alloc(512);
  const entry = (n, type, startMiB, sizeMiB) => {
    mbr[446 + 16 * n + 4] = type;
    mbr.writeUInt32LE(startMiB * 2048, 446 + 16 * n + 8);
    mbr.writeUInt32LE(sizeMiB * 2048, 446 + 16 * n + 12);
  };
  if (layout === 'pi') {
    entry(0, 0x0c, bootStart, bootMiB);
    entry(1, 0x83, rootStart, mib - rootStart);
  } else entry(0, 0x83, 1, mib - 1);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(base, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
  const xzMulti = join(dir, 'multi.img.xz');
  // Share of 4 KiB pages that are zeros, and 24 MiB Blocks that are all zeros.
  const zeros = (path) => {
    const file = openSync(path, 'r');
    const chunk = Buffer.alloc(24 << 20);
    const page = Buffer.alloc(4096);
    let pages = 0;
    let blocks = 0;
    let total = 0;
    for (let read; (read = readSync(file, chunk, 0, chunk.length, total)) > 0; total += read) {
      let inBlock = 0;
      for (let at = 0; at < read; at += 4096) if (chunk.subarray(at, at + 4096).equals(page.subarray(0, Math.min(4096, read - at)))) inBlock++;
      pages += inBlock;
      if (inBlock === Math.ceil(read / 4096)) blocks++;
    }
    closeSync(file);
    return { share: (pages * 4096) / total, blocks, of: Math.ceil(total / (24 << 20)) };
  };

  const xzSingle = join(dir, 'single.img.xz');
  if (!made) sh('xz -6 -T2 --block-size=24MiB -c "$1" > "$2"', base, xzMulti);
  if (!made) sh('head -c $(( $3 * 262144 )) "$1" | xz -6 -T1 -c > "$2"', base, xzSingle, String(mib));
  sh('sync');
  const bytes = mib * 2 ** 20;
  const describe = ({ share, blocks, of }) => `${(share * 100).toFixed(0)} % zeros, ${blocks} of ${of} Blocks all zeros`;
  console.log(`image: ${mib} MiB (${layout} layout), ${describe(zeros(base))}; multi-Block .xz ${(statSync(xzMulti).size / 2 ** 20).toFixed(1)} MiB; load: ${execFileSync('uptime').toString().trim()}`);
  const out = join(dir, 'out');
  const clean = () => rmSync(out, { recursive: true, force: true });
  if (cases.includes('decode')) {
    const xzRepeated = repeat > 1 ? join(dir, `multi-x${repeat}.img.xz`) : xzMulti;
    if (repeat > 1) sh('for i in $(seq "$3"); do cat "$1"; done > "$2"', xzMulti, xzRepeated, String(repeat));
    compare({
      title: `xz decode, multi-Block ${mib * repeat} MiB ${layout} image${repeat > 1 ? ` (${repeat} Streams)` : ''} vs xz -T2 -dc`,
      runs,
      bytes: bytes * repeat,
      prepare: clean,
      ours: ['node', 'bench/cases/xz-decode.mjs', xzRepeated, out],
      native: ['bash', '-c', 'xz -T2 -dc "$1" > "$2"', 'xz', xzRepeated, out],
    });
    compare({
      title: `xz decode, single-Block ${mib / 4} MiB ${layout} image vs xz -dc`,
      runs,
      bytes: bytes / 4,
      prepare: clean,
      ours: ['node', 'bench/cases/xz-decode.mjs', xzSingle, out],
      native: ['bash', '-c', 'xz -dc "$1" > "$2"', 'xz', xzSingle, out],
    });
  }
  const sizes = {};
  const encode = (format, tool, ext, level = '6') => {
    const file = `${out}.img.${ext}`;
    const result = compare({
      title: `${format} encode, ${mib} MiB ${layout} image vs ${tool.join(' ')}`,
      runs,
      bytes,
      prepare: () => rmSync(file, { force: true }),
      ours: ['node', 'bench/cases/compress.mjs', base, file, format, level, '2'],
      native: ['bash', '-c', `${tool.join(' ')} -c "$1" > "$2"`, tool[0], base, file],
    });
    // Sizes from one more run of each, so both files exist at the end.
    execFileSync('node', ['bench/cases/compress.mjs', base, file, format, level, '2']);
    const ours = statSync(file).size;
    execFileSync('bash', ['-c', `${tool.join(' ')} -c "$1" > "$2"`, tool[0], base, file]);
    const native = statSync(file).size;
    sizes[format] = { ours, native, ratio: ours / native };
    console.log(`  size: piimg ${ours} B, ${tool[0]} ${native} B, ratio ${(ours / native).toFixed(4)}`);
    return result;
  };
  if (cases.includes('encode')) {
    encode('xz', ['xz', '-T2', '-6'], 'xz');
    encode('gzip', ['pigz', '-p2', '-6'], 'gz');
  }
  if (cases.includes('zstd')) {
    // The `node` on PATH runs our side: Node's zlib zstd from 22.15/23.8, else the wasm build
    // (PIIMG_ZSTD=wasm forces it). Under Node 24: PATH="$(dirname "$(node test/support/fetch-node.mjs)"):$PATH".
    const node = execFileSync('node', ['-p', `process.version + ' ' + (process.versions.zstd && process.env.PIIMG_ZSTD !== 'wasm' ? 'zlib zstd ' + process.versions.zstd : 'wasm zstd')`]);
    console.log(`zstd: ours runs on Node ${node.toString().trim()}`);
    // zstd's default level, 3, on both sides; zstd -T2 compresses in two threads as we do.
    encode('zstd', ['zstd', '-q', '-T2', '-3'], 'zst', '3');
    const ourZst = join(dir, 'ours.img.zst');
    execFileSync('node', ['bench/cases/compress.mjs', base, ourZst, 'zstd', '3', '2']);
    compare({
      title: `zstd decode, ${mib} MiB ${layout} image written by piimg vs zstd -dc`,
      runs,
      bytes,
      prepare: clean,
      ours: ['node', 'bench/cases/xz-decode.mjs', ourZst, out],
      native: ['bash', '-c', 'zstd -q -dc "$1" > "$2"', 'zstd', ourZst, out],
    });
  }
  console.log(`load at the end: ${execFileSync('uptime').toString().trim()}`);
} finally {
  if (!keep) rmSync(dir, { recursive: true, force: true });
}
