// .xz/.zst input and .xz/.gz/.zst output against the native tools, in the same run.
//
// The image (PIIMG_BENCH_XZ_MIB, default 1024 MiB) mixes what a Raspberry Pi
// OS image holds: half compressible files (a tar of /usr/lib), 15 % random
// bytes (already compressed data) and 35 % zeros (free space), behind an MBR.
// - decode: piimg opening the .img.xz into an empty cache (Blocks decoded on
//   worker threads, zeros left as holes) vs `xz -T2 -dc > file`, on a
//   multi-Block file made like pi-gen's (`xz -6 -T2`, 24 MiB Blocks); and a
//   single-Block file (`xz -6 -T1`, a quarter of the image) vs `xz -dc > file`.
// - encode: image.save(out.img.xz) vs `xz -T2 -6 -c > file`,
//   image.save(out.img.gz) vs `pigz -p2 -6 -c > file`, and
//   image.save(out.img.zst) vs `zstd -T2 -3 -c > file`; sizes compared too.
// - zstd decode: piimg opening the .img.zst it wrote vs `zstd -dc > file`.
// Targets: decode ratio <= 1.0 on the multi-Block file; encode no slower,
// .xz size within 1 % of xz's.
// PIIMG_BENCH_XZ_CASES picks cases (comma-separated: decode, xz, gzip, zstd;
// default all).
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare } from './harness.mjs';

const mib = Number(process.env.PIIMG_BENCH_XZ_MIB ?? 1024);
const runs = Number(process.env.PIIMG_BENCH_RUNS ?? 3);
const cases = new Set((process.env.PIIMG_BENCH_XZ_CASES ?? 'decode,xz,gzip,zstd').split(','));
const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-xz-'));
const sh = (script, ...args) => execFileSync('bash', ['-c', script, 'bench', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
try {
  const base = join(dir, 'base.img');
  // 16 MiB pieces: 8 of tar data, 2.4 of random, the rest zeros (holes).
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
  // An MBR with one Linux partition over the rest, so piimg opens it as an image.
  const mbr = Buffer.alloc(512);
  mbr[446 + 4] = 0x83;
  mbr.writeUInt32LE(2048, 446 + 8);
  mbr.writeUInt32LE(mib * 2048 - 2048, 446 + 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(base, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
  const xzMulti = join(dir, 'multi.img.xz');
  const xzSingle = join(dir, 'single.img.xz');
  const bytes = mib * 2 ** 20;
  const out = join(dir, 'out');
  const clean = () => rmSync(out, { recursive: true, force: true });
  if (cases.has('decode')) {
    sh('xz -6 -T2 --block-size=24MiB -c "$1" > "$2"', base, xzMulti);
    sh('head -c $(( $3 * 262144 )) "$1" | xz -6 -T1 -c > "$2"', base, xzSingle, String(mib));
    sh('sync');
    console.log(`image: ${mib} MiB; multi-Block .xz ${(statSync(xzMulti).size / 2 ** 20).toFixed(1)} MiB; load: ${execFileSync('uptime').toString().trim()}`);
    compare({
      title: `xz decode, multi-Block ${mib} MiB image vs xz -T2 -dc`,
      runs,
      bytes,
      prepare: clean,
      ours: ['node', 'bench/cases/xz-decode.mjs', xzMulti, out],
      native: ['bash', '-c', 'xz -T2 -dc "$1" > "$2"', 'xz', xzMulti, out],
    });
    compare({
      title: `xz decode, single-Block ${mib / 4} MiB image vs xz -dc`,
      runs,
      bytes: bytes / 4,
      prepare: clean,
      ours: ['node', 'bench/cases/xz-decode.mjs', xzSingle, out],
      native: ['bash', '-c', 'xz -dc "$1" > "$2"', 'xz', xzSingle, out],
    });
  } else {
    console.log(`image: ${mib} MiB; load: ${execFileSync('uptime').toString().trim()}`);
  }
  const sizes = {};
  const encode = (format, tool, ext, level) => {
    const file = `${out}.img.${ext}`;
    const result = compare({
      title: `${format} encode, ${mib} MiB image vs ${tool.join(' ')}`,
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
  if (cases.has('xz')) encode('xz', ['xz', '-T2', '-6'], 'xz', '6');
  if (cases.has('gzip')) encode('gzip', ['pigz', '-p2', '-6'], 'gz', '6');
  if (cases.has('zstd')) {
    // zstd's default level, 3, on both sides; zstd -T2 compresses in two threads as we do.
    encode('zstd', ['zstd', '-q', '-T2', '-3'], 'zst', '3');
    const ourZst = join(dir, 'ours.img.zst');
    execFileSync('node', ['bench/cases/compress.mjs', base, ourZst, 'zstd', '3', '2']);
    compare({
      title: `zstd decode, ${mib} MiB image written by piimg vs zstd -dc`,
      runs,
      bytes,
      prepare: clean,
      ours: ['node', 'bench/cases/xz-decode.mjs', ourZst, out],
      native: ['bash', '-c', 'zstd -q -dc "$1" > "$2"', 'zstd', ourZst, out],
    });
  }
  console.log(`load at the end: ${execFileSync('uptime').toString().trim()}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
