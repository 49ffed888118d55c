// .img.zst: output as independent zstd frames compressed on worker threads,
// and .zst bases decompressed into the cache, with `zstd` as the oracle.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { compressZstdFrame, openImage, resolveSource } from '@piimg/core';
import { zstdCompress } from '@piimg/wasm';
import { zstdBackend, type ZstdBackend } from '../packages/core/src/image/zstd/backend.js';
import { ZstdEncoderPool, zstdFrameSize } from '../packages/core/src/image/zstd/encode.js';
import { fixturePath, testCacheDir } from './support/fixtures.js';
import { codeOf, itRefusesHostile, sample, sha256 } from './support/compressed.js';
import { hasTool, run } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-zstd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function execZstd(args: string[], input: Uint8Array): Buffer {
  const result = spawnSync('zstd', [...args, '-c'], { input, maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`zstd ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** Frames of a zstd stream, walked by their headers and block headers (RFC 8878 §3.1.1). */
function frameFlags(file: Uint8Array): { contentSize: boolean; checksum: boolean }[] {
  const frames: { contentSize: boolean; checksum: boolean }[] = [];
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let at = 0;
  while (at < file.length) {
    expect(view.getUint32(at, true)).toBe(0xfd2fb528);
    const descriptor = file[at + 4]!;
    const fcsFlag = descriptor >> 6;
    const singleSegment = (descriptor >> 5) & 1;
    const checksum = ((descriptor >> 2) & 1) === 1;
    const dictIdBytes = [0, 1, 2, 4][descriptor & 3]!;
    const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
    at += 5 + (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes;
    for (let last = false; !last; ) {
      const header = file[at]! | (file[at + 1]! << 8) | (file[at + 2]! << 16);
      last = (header & 1) === 1;
      const type = (header >> 1) & 3;
      const size = header >> 3;
      at += 3 + (type === 1 ? 1 : size);
    }
    if (checksum) at += 4;
    frames.push({ contentSize: fcsFlag !== 0 || singleSegment === 1, checksum });
  }
  return frames;
}

describe('decoding .zst bases', () => {
  const data = sample();
  const cases: [string, () => Buffer][] = [
    ['zstd -3 (one frame)', () => execZstd(['-3', '-T1'], data)],
    ['zstd -T2 with a checksum', () => execZstd(['-T2', '-19', '--check'], data)],
    ['two frames from zstd', () => Buffer.concat([execZstd(['-1'], data.subarray(0, 3 << 20)), execZstd(['-1', '--no-check'], data.subarray(3 << 20))])],
    ['a pipe (no content size)', () => spawnSync('sh', ['-c', 'cat | zstd -c -3'], { input: data, maxBuffer: 1 << 30 }).stdout],
  ];
  for (const [name, make] of cases) {
    it.skipIf(!hasTool('zstd'))(`${name}: the exact bytes, zeros as holes`, async () => {
      const path = join(dir, `${name.replace(/\W+/g, '-')}.zst`);
      writeFileSync(path, make());
      const cacheDir = join(dir, `cache-${name.replace(/\W+/g, '-')}`);
      const resolved = await resolveSource(path, { cacheDir });
      expect(resolved.compression).toBe('zstd');
      expect(sha256(readFileSync(resolved.rawPath))).toBe(sha256(data));
      const map = JSON.parse(readFileSync(`${resolved.rawPath}.map.json`, 'utf8')) as { byteOffset: number; length: number }[];
      // The 2 MiB of zeros at 3 MiB are not in the data map.
      expect(map.some((range) => range.byteOffset < (5 << 20) - (64 << 10) && range.byteOffset + range.length > (3 << 20) + (64 << 10))).toBe(false);
    });
  }

  const frame = () => Buffer.from(zstdCompress(data, 3));
  const hostile: [string, () => Buffer, string][] = [
    ['a truncated file', () => frame().subarray(0, 100_000), 'E_BAD_COMPRESSED'],
    ['a file cut just before the checksum', () => frame().subarray(0, frame().length - 4), 'E_BAD_COMPRESSED'],
    ['a flipped checksum', () => {
      const file = frame();
      file[file.length - 1]! ^= 0xff;
      return file;
    }, 'E_BAD_COMPRESSED'],
    ['a corrupt block', () => {
      const file = frame();
      for (let i = 2000; i < 2100; i++) file[i] = 0x5a;
      return file;
    }, 'E_BAD_COMPRESSED'],
    ['garbage after the magic', () => Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), randomBytes(4092)]), 'E_BAD_COMPRESSED'],
    ['only the magic', () => Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'E_BAD_COMPRESSED'],
    ['a frame asking for a 2 GiB window', () => {
      // Frame Header: magic, descriptor (no single segment, no checksum, no content size),
      // Window_Descriptor exponent 21 → 2^31 bytes (RFC 8878 §3.1.1.1.2), then a raw last block.
      return Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x21, 0x00, 0x00, 0x41]);
    }, 'E_BAD_COMPRESSED'],
    ['a frame declaring 1 TiB of zeros', () => {
      // Single segment, 8-byte content size 2^40, one RLE block of 2^20 zeros: the content size lies.
      const header = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0]);
      return Buffer.concat([header, Buffer.from([((1 << 20) << 3) & 0xff | 0x03, ((1 << 20) >> 5) & 0xff, ((1 << 20) >> 13) & 0xff, 0x00])]);
    }, 'E_BAD_COMPRESSED'],
  ];
  itRefusesHostile(dir, 'zst', hostile);
});

describe('.img.zst output', () => {
  it('frames follow zstd -T job sizes: four windows, 8 MiB at the default level 3', () => {
    expect(zstdFrameSize(3)).toBe(8 << 20);
    expect(zstdFrameSize(1)).toBe(4 << 20);
    expect(zstdFrameSize(19)).toBe(32 << 20);
  });

  it.skipIf(!hasTool('zstd'))('decodes with zstd -dc and zstd -T2 -dc to the raw output; every frame has content size and checksum', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    // A change in the middle of the image and one in a hole of the base.
    image.device.write(5 << 20, Buffer.from('changed by the test'));
    image.device.write(image.size - 4096, randomBytes(4096));
    // Compressed outputs write filesystem free space as zeros (docs/compressed-output.md):
    // the raw output to compare with is saved the same way.
    const raw = join(dir, 'out.img');
    const zst = join(dir, 'out.img.zst');
    await image.save(raw, { freeSpace: 'zero' });
    const saved = await image.save(zst, { threads: 2 });
    expect(saved.format).toBe('zstd');
    const rawHash = sha256(readFileSync(raw));
    const decode = (args: string[]) => {
      const result = spawnSync('zstd', args, { maxBuffer: 1 << 30 });
      expect(result.status, String(result.stderr)).toBe(0);
      return sha256(result.stdout);
    };
    expect(decode(['-dc', zst])).toBe(rawHash);
    expect(decode(['-T2', '-dc', zst])).toBe(rawHash);
    // zstd checks every frame's checksum and content size itself.
    expect(run('zstd', ['-t', zst]).status).toBe(0);
    const file = readFileSync(zst);
    const frames = frameFlags(file);
    expect(frames.length).toBe(Math.ceil(image.size / zstdFrameSize(3)));
    expect(frames.every((frame) => frame.contentSize && frame.checksum)).toBe(true);
    // The stream gives the same bytes as the file, and piimg reads its own output back.
    const chunks: Buffer[] = [];
    for await (const chunk of image.createReadStream({ format: 'zstd', threads: 1 })) chunks.push(chunk as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(file));
    await using again = await openImage(zst, { cacheDir: join(dir, 'cache-again') });
    expect(sha256(readFileSync(again.rawPath))).toBe(rawHash);
    // Another level gives another, still valid, file.
    const nine = join(dir, 'out9.img.zst');
    await image.save(nine, { level: 9 });
    expect(decode(['-dc', nine])).toBe(rawHash);
    // freeSpace: 'keep' gives every byte of the image, the changes in free space included.
    const kept = join(dir, 'kept.img.zst');
    const keptRaw = join(dir, 'kept.img');
    await image.save(kept, { freeSpace: 'keep' });
    await image.save(keptRaw);
    expect(decode(['-dc', kept])).toBe(sha256(readFileSync(keptRaw)));
  });

  it('refuses levels outside 1-19', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    expect(await codeOf(image.save(join(dir, 'bad.img.zst'), { level: 20 }))).toBe('EINVAL');
    expect(await codeOf(image.save(join(dir, 'bad.img.zst'), { level: 0 }))).toBe('EINVAL');
    expect(existsSync(join(dir, 'bad.img.zst'))).toBe(false);
  });

  it('an aborted save leaves no output and no worker', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    image.device.write(1 << 20, randomBytes(1 << 20));
    const controller = new AbortController();
    const out = join(dir, 'aborted.img.zst');
    const saving = image.save(out, { signal: controller.signal, threads: 2, level: 19 });
    setTimeout(() => controller.abort(), 50);
    expect(await codeOf(saving)).toBe('E_ABORTED');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((name) => name.includes('aborted'))).toEqual([]);
  });
});

describe('CLI .img.zst', () => {
  it.skipIf(!hasTool('zstd'))('-o NAME.img.zst, --format zst with -o -, and --level ranges', async () => {
    const { piimg } = await import('./support/cli.js');
    const env = { PIIMG_CACHE_DIR: testCacheDir };
    const epoch = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1767225600';
    onTestFinished(() => {
      if (epoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = epoch;
    });
    const file = join(dir, 'note.txt');
    writeFileSync(file, 'hello from the zstd cli test\n');
    const base = fixturePath('pi-bookworm');
    const out = (name: string) => join(dir, `cli-${name}`);
    for (const name of ['a.img', 'a.img.zst']) {
      const result = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out(name), '--threads', '2'], env);
      expect(result.code, result.stderr).toBe(0);
    }
    const rawHash = sha256(readFileSync(out('a.img')));
    expect(sha256(spawnSync('zstd', ['-dc', out('a.img.zst')], { maxBuffer: 1 << 30 }).stdout)).toBe(rawHash);
    const streamed = await piimg(['cp', base, file, 'boot:/note.txt', '-o', '-', '--format', 'zst', '--level', '19'], env);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(sha256(spawnSync('zstd', ['-dc'], { input: streamed.bytes, maxBuffer: 1 << 30 }).stdout)).toBe(rawHash);
    // A .img.zst base is read like the others.
    const fromZst = await piimg(['cp', out('a.img.zst'), 'boot:/note.txt', join(dir, 'note-back.txt')], env);
    expect(fromZst.code, fromZst.stderr).toBe(0);
    expect(readFileSync(join(dir, 'note-back.txt'), 'utf8')).toBe('hello from the zstd cli test\n');
    const badLevel = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out('b.img.zst'), '--level', '20'], env);
    expect(badLevel.code).toBe(1);
    expect(badLevel.stderr).toContain('1-19');
  });
});

describe('zstd backends: Node\'s zlib where it has zstd, else wasm', () => {
  const nativeZstd = typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';
  if (!nativeZstd) {
    console.warn(`\n*** SKIPPED: Node ${process.version} has no zstd in node:zlib (22.15+/23.8+): the zlib-backend tests do not run here; .ci/run runs them under Node 24 (test/support/zstd-native.sh) ***\n`);
  }
  const made = new Map<ZstdBackend, Buffer>();
  // One sample and one patch for both backends, so that their outputs can be compared.
  const data = sample();
  const patch = randomBytes(3000);

  it('picks zlib when the running Node has zstd and PIIMG_ZSTD is not wasm', () => {
    console.info(`Node ${process.version} (zlib zstd ${process.versions.zstd ?? 'none'}): zstd backend ${zstdBackend()}`);
    expect(zstdBackend()).toBe(process.env.PIIMG_ZSTD === 'wasm' || !nativeZstd ? 'wasm' : 'zlib');
    // Set by test/support/zstd-native.sh, which runs this file under Node 24: a fall back to wasm there fails.
    if (process.env.PIIMG_EXPECT_ZSTD_BACKEND) expect(zstdBackend()).toBe(process.env.PIIMG_EXPECT_ZSTD_BACKEND);
    const saved = process.env.PIIMG_ZSTD;
    onTestFinished(() => {
      if (saved === undefined) delete process.env.PIIMG_ZSTD;
      else process.env.PIIMG_ZSTD = saved;
    });
    process.env.PIIMG_ZSTD = 'wasm';
    expect(zstdBackend()).toBe('wasm');
  });

  for (const backend of ['zlib', 'wasm'] as const) {
    it.skipIf(!hasTool('zstd') || (backend === 'zlib' && !nativeZstd))(`${backend}: frames made by the workers decode with zstd -dc; the workers report ${backend}`, async () => {
      const basePath = join(dir, `backend-${backend}.img`);
      writeFileSync(basePath, data);
      // Three frames: all data, data with a hole and a patch, and zeros only.
      const frames = [
        { byteOffset: 0, length: 2 << 20, baseRanges: [0, 2 << 20], patches: [] },
        { byteOffset: 2 << 20, length: 2 << 20, baseRanges: [(2 << 20) + 4096, 1 << 20], patches: [{ byteOffset: (3 << 20) + 100, data: patch }] },
        { byteOffset: 4 << 20, length: 2 << 20, baseRanges: [], patches: [] },
      ];
      const expected = Buffer.concat([data.subarray(0, 2 << 20), Buffer.alloc(4 << 20)]);
      data.copy(expected, (2 << 20) + 4096, (2 << 20) + 4096, (3 << 20) + 4096);
      patch.copy(expected, (3 << 20) + 100);
      const pool = new ZstdEncoderPool(basePath, 2, backend);
      try {
        // Level 1 (a 512 KiB window): frames longer than the window, as 8 MiB frames are at level 3,
        // where libzstd's bytes depend most on how input and output buffers are given to it.
        const pieces = await Promise.all(frames.map((frame) => pool.encode(frame, 1)));
        const file = Buffer.concat(pieces.flat());
        expect(sha256(execZstd(['-d'], file))).toBe(sha256(expected));
        expect(frameFlags(file)).toEqual(frames.map(() => ({ contentSize: true, checksum: true })));
        expect([...pool.backendsUsed]).toEqual([backend]);
        made.set(backend, file);
      } finally {
        await pool.close();
      }
    });
  }

  it.skipIf(!hasTool('zstd'))('compressZstdFrame (one frame on the calling thread): zstd -dc reads it, the same bytes on both backends', () => {
    const saved = process.env.PIIMG_ZSTD;
    onTestFinished(() => {
      if (saved === undefined) delete process.env.PIIMG_ZSTD;
      else process.env.PIIMG_ZSTD = saved;
    });
    // Text, random bytes and zeros, longer than level 1's window.
    const chunk = data.subarray(1 << 20, 4 << 20);
    const frame = Buffer.from(compressZstdFrame(chunk, 1));
    expect(sha256(execZstd(['-d'], frame))).toBe(sha256(chunk));
    expect(frameFlags(frame)).toEqual([{ contentSize: true, checksum: true }]);
    process.env.PIIMG_ZSTD = 'wasm';
    const wasm = Buffer.from(compressZstdFrame(chunk, 1));
    if (process.versions.zstd === undefined || process.versions.zstd === '1.5.7') expect(sha256(frame)).toBe(sha256(wasm));
  });

  it.skipIf(!hasTool('zstd') || !nativeZstd)('both backends write the same bytes when Node\'s libzstd is the wasm build\'s version (1.5.7)', () => {
    expect(made.size).toBe(2);
    if (process.versions.zstd !== '1.5.7') {
      console.warn(`*** Node's libzstd is ${process.versions.zstd}, the wasm build's 1.5.7: outputs may differ in bytes (both decode, checked above) ***`);
      return;
    }
    expect(sha256(made.get('zlib')!)).toBe(sha256(made.get('wasm')!));
  });
});
