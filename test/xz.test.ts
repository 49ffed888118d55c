import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { openImage, resolveSource } from '@piimg/core';
import { crc32 } from '../packages/core/src/partition/crc32.js';
import { decodeMultibyte, encodeIndex, encodeMultibyte, encodeStreamFooter, encodeStreamHeader, parseIndex, parseStreamFooter, parseStreamHeader, readXzIndex } from '../packages/core/src/image/xz/layout.js';
import { fixturePath, testCacheDir } from './support/fixtures.js';
import { codeOf, itRefusesHostile, sample, sha256 } from './support/compressed.js';
import { hasTool, run } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-xz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('xz container layout (The .xz File Format 1.2.1)', () => {
  it('encodes and decodes multibyte integers, headers, footers and the Index', () => {
    for (const value of [0, 1, 127, 128, 300, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      expect(decodeMultibyte(encodeMultibyte(value), 0)).toEqual({ value, next: encodeMultibyte(value).length });
    }
    expect(parseStreamHeader(encodeStreamHeader(4))).toBe(4);
    const records = [{ unpaddedSize: 1234, uncompressedSize: 24 << 20 }, { unpaddedSize: 99, uncompressedSize: 5 }];
    const index = encodeIndex(records);
    expect(index.length % 4).toBe(0);
    expect(parseIndex(index)).toEqual(records);
    expect(parseStreamFooter(encodeStreamFooter(4, index.length))).toEqual({ check: 4, indexSize: index.length });
  });

  it.skipIf(!hasTool('xz'))('reads the Index xz itself writes', () => {
    const data = sample();
    const path = join(dir, 'layout.xz');
    writeFileSync(path, execXz(['-T2', '--block-size=1MiB'], data));
    const file = readFileSync(path);
    const index = readXzIndex(file.length, (position, length) => file.subarray(position, position + length));
    expect(index.blocks).toHaveLength(6);
    expect(index.uncompressedSize).toBe(data.length);
    expect(index.blocks.map((block) => block.uncompressedSize)).toEqual(Array(6).fill(1 << 20));
  });
});

function execXz(args: string[], input: Uint8Array): Buffer {
  const result = spawnSync('xz', [...args, '-c'], { input, maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`xz ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

function rawOf(path: string): Buffer {
  return readFileSync(path);
}

describe.skipIf(!hasTool('xz'))('decoding .xz bases', () => {
  const data = sample();
  const cases: [string, () => Buffer, 'parallel' | 'stream'][] = [
    ['multi-Block (xz -T2)', () => execXz(['-T2', '-3', '--block-size=1MiB'], data), 'parallel'],
    ['Blocks not aligned to 64 KiB', () => execXz(['-T2', '-1', '--block-size=700000'], data), 'parallel'],
    ['one Block (xz without -T)', () => execXz(['-1', '-T1'], data), 'stream'],
    ['two Streams with Stream Padding', () => Buffer.concat([execXz(['-T2', '--block-size=1MiB'], data.subarray(0, 3 << 20)), Buffer.alloc(8), execXz(['-T2', '--block-size=1MiB'], data.subarray(3 << 20))]), 'parallel'],
  ];
  for (const [name, make, mode] of cases) {
    it(`${name}: the exact bytes, zeros as holes (${mode})`, async () => {
      const path = join(dir, `${name.replace(/\W+/g, '-')}.xz`);
      writeFileSync(path, make());
      const cacheDir = join(dir, `cache-${name.replace(/\W+/g, '-')}`);
      const resolved = await resolveSource(path, { cacheDir });
      expect(sha256(rawOf(resolved.rawPath))).toBe(sha256(data));
      const map = JSON.parse(readFileSync(`${resolved.rawPath}.map.json`, 'utf8')) as { byteOffset: number; length: number }[];
      // The 2 MiB of zeros at 3 MiB are not in the data map.
      expect(map.some((range) => range.byteOffset < (5 << 20) - (64 << 10) && range.byteOffset + range.length > (3 << 20) + (64 << 10))).toBe(false);
    });
  }

  /** A copy of `file` with its (single) Stream's Index records changed by `edit`, CRC32s made valid again. */
  function withIndex(file: Buffer, edit: (records: { unpaddedSize: number; uncompressedSize: number }[]) => void): Buffer {
    const footer = parseStreamFooter(file.subarray(file.length - 12));
    const indexStart = file.length - 12 - footer.indexSize;
    const records = parseIndex(file.subarray(indexStart, file.length - 12));
    edit(records);
    const index = encodeIndex(records);
    return Buffer.concat([file.subarray(0, indexStart), index, encodeStreamFooter(footer.check, index.length)]);
  }

  const multi = () => execXz(['-T2', '-3', '--block-size=1MiB'], data);

  describe('all-zero Blocks decoded once', () => {
    /** Decodes `file` on one thread (one memo, a fixed order) into a fresh file; returns the result and the bytes. */
    async function decodeOnOneThread(name: string, file: Buffer) {
      const { decodeXzBlocks } = await import('../packages/core/src/image/xz/decode.js');
      const path = join(dir, `memo-${name}.xz`);
      writeFileSync(path, file);
      const out = join(dir, `memo-${name}.img`);
      const fd = openSync(out, 'w');
      try {
        const result = await decodeXzBlocks(path, fd, { maxImageSize: 1 << 30, threads: 1 });
        return { result, bytes: readFileSync(out) };
      } finally {
        closeSync(fd);
      }
    }

    it('reuses the second of two identical zero Blocks, with the exact bytes', async () => {
      // sample(): 2 MiB of zeros at 3 MiB, so Blocks 3 and 4 are the same bytes.
      const { result, bytes } = await decodeOnOneThread('same', multi());
      expect(result?.blocksReused).toBe(1);
      expect(sha256(bytes)).toBe(sha256(data));
    });

    it('does not trust a zero Block whose Index sizes differ from the decoded one', async () => {
      // Same bytes, same Total Size, but the Index gives Block 4 another Unpadded Size: liblzma refuses it.
      const file = withIndex(multi(), (records) => (records[4]!.unpaddedSize += records[4]!.unpaddedSize % 4 === 1 ? 1 : -1));
      expect(await codeOf(decodeOnOneThread('lying', file))).toBe('E_BAD_COMPRESSED');
    });
  });
  const hostile: [string, () => Buffer, string][] = [
    ['a corrupt Index CRC32', () => {
      const file = multi();
      file.writeUInt8(file[file.length - 13]! ^ 0xff, file.length - 13);
      return file;
    }, 'E_BAD_COMPRESSED'],
    ['a truncated file', () => multi().subarray(0, 1_000_000), 'E_BAD_COMPRESSED'],
    ['an Index whose Uncompressed Size lies', () => withIndex(multi(), (records) => (records[2]!.uncompressedSize -= 1)), 'E_BAD_COMPRESSED'],
    ['an Index whose Unpadded Size lies', () => withIndex(multi(), (records) => {
      records[1]!.unpaddedSize += 4;
      records[2]!.unpaddedSize -= 4;
    }), 'E_BAD_COMPRESSED'],
    ['a Block declaring 1 TiB', () => withIndex(multi(), (records) => (records[0]!.uncompressedSize = 2 ** 40)), 'E_LIMIT'],
    ['a Block declaring 1 GiB (decoded as a stream, which finds the lie)', () => withIndex(multi(), (records) => (records[0]!.uncompressedSize = 2 ** 30)), 'E_BAD_COMPRESSED'],
    ['a Block whose filter asks for a 4 GiB dictionary', () => {
      const file = multi();
      // Block Header: size, flags, sizes, then the LZMA2 Filter Flags (ID 0x21, 1 byte of properties: dictionary size).
      const headerSize = (file[12]! + 1) * 4;
      const header = file.subarray(12, 12 + headerSize);
      const at = header.indexOf(Buffer.from([0x21, 0x01]));
      header[at + 2] = 40;
      header.writeUInt32LE(crc32(header.subarray(0, headerSize - 4)), headerSize - 4);
      return file;
    }, 'E_BAD_COMPRESSED'],
    ['garbage after the xz signature', () => Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), randomBytes(4090)]), 'E_BAD_COMPRESSED'],
  ];
  itRefusesHostile(dir, 'xz', hostile);
});

describe('compressed outputs', () => {
  it.skipIf(!hasTool('xz') || !hasTool('gzip'))('.img.xz and .img.gz decode with xz -dc, xz -T2 -dc and gzip -dc to the raw output', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    // A change in the middle of the image and one in a hole of the base.
    image.device.write(5 << 20, Buffer.from('changed by the test'));
    image.device.write(image.size - 4096, randomBytes(4096));
    const raw = join(dir, 'out.img');
    const xz = join(dir, 'out.img.xz');
    const gz = join(dir, 'out.img.gz');
    // Compressed outputs write free space as zeros: the raw output to compare with does too.
    await image.save(raw, { freeSpace: 'zero' });
    const saved = await image.save(xz, { level: 1 });
    expect(saved.format).toBe('xz');
    await image.save(gz);
    const rawHash = sha256(readFileSync(raw));
    const decode = (cmd: string, args: string[]) => {
      const result = spawnSync(cmd, args, { maxBuffer: 1 << 30 });
      expect(result.status, String(result.stderr)).toBe(0);
      return sha256(result.stdout);
    };
    expect(decode('xz', ['-dc', xz])).toBe(rawHash);
    expect(decode('xz', ['-T2', '-dc', xz])).toBe(rawHash);
    expect(decode('gzip', ['-dc', gz])).toBe(rawHash);
    // Several Blocks, each with its sizes in its header: what xz -T decodes in parallel.
    const list = run('xz', ['-lvv', '--robot', xz]).stdout;
    const blocks = list.split('\n').filter((line) => line.startsWith('block\t'));
    expect(blocks.length).toBeGreaterThan(2);
    expect(list).toMatch(/^summary\t.*\tyes\t/m);
    // The stream gives the same bytes as the file, and piimg reads its own output back.
    const chunks: Buffer[] = [];
    for await (const chunk of image.createReadStream({ format: 'xz', level: 1 })) chunks.push(chunk as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(readFileSync(xz)));
    await using again = await openImage(xz, { cacheDir: join(dir, 'cache-again') });
    expect(sha256(readFileSync(again.rawPath))).toBe(rawHash);
  });

  it('refuses unknown formats', async () => {
    await using image = await openImage(fixturePath('pi-bookworm'), { cacheDir: testCacheDir });
    expect(await codeOf(image.save(join(dir, 'x.img'), { format: 'lz4' as never }))).toBe('EINVAL');
    expect(existsSync(join(dir, 'x.img'))).toBe(false);
    expect(() => image.createReadStream({ format: 'lz4' as never })).toThrow();
  });
});

describe('CLI output formats', () => {
  it.skipIf(!hasTool('xz') || !hasTool('gzip'))('-o picks the format from the name, --format overrides, -o - streams; an unknown format is a usage error', async () => {
    const { piimg } = await import('./support/cli.js');
    const env = { PIIMG_CACHE_DIR: testCacheDir };
    // Fixed timestamps: each run must write the same image.
    const epoch = process.env.SOURCE_DATE_EPOCH;
    process.env.SOURCE_DATE_EPOCH = '1767225600';
    onTestFinished(() => {
      if (epoch === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = epoch;
    });
    const file = join(dir, 'note.txt');
    writeFileSync(file, 'hello from the cli test\n');
    const base = fixturePath('pi-bookworm');
    const out = (name: string) => join(dir, `cli-${name}`);
    for (const name of ['a.img', 'a.img.xz', 'a.img.gz']) {
      // --keep-free-space: every byte as the raw output has it.
      const result = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out(name), '--threads', '2', ...(name === 'a.img' ? [] : ['--keep-free-space'])], env);
      expect(result.code, result.stderr).toBe(0);
    }
    const rawHash = sha256(readFileSync(out('a.img')));
    const dc = (cmd: string, path: string) => sha256(spawnSync(cmd, ['-dc', path], { maxBuffer: 1 << 30 }).stdout);
    expect(dc('xz', out('a.img.xz'))).toBe(rawHash);
    expect(dc('gzip', out('a.img.gz'))).toBe(rawHash);
    // --format wins over the name.
    const forced = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out('forced.img'), '--format', 'gz', '--level', '1', '--keep-free-space'], env);
    expect(forced.code, forced.stderr).toBe(0);
    expect(dc('gzip', out('forced.img'))).toBe(rawHash);
    // Standard output: raw by default, compressed with --format.
    const streamed = await piimg(['cp', base, file, 'boot:/note.txt', '-o', '-', '--format', 'xz', '--level', '0', '--keep-free-space'], env);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(sha256(spawnSync('xz', ['-dc'], { input: streamed.bytes, maxBuffer: 1 << 30 }).stdout)).toBe(rawHash);
    // Without it, free space is zeros: smaller, and the same image wherever a filesystem uses it.
    const zeroed = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out('zeroed.img.xz'), '--level', '0'], env);
    expect(zeroed.code, zeroed.stderr).toBe(0);
    const { openImage: open } = await import('@piimg/core');
    await using zeroedImage = await open(out('zeroed.img.xz'), { cacheDir: join(dir, 'cache-zeroed') });
    await using rawImage = await open(out('a.img'), { cacheDir: join(dir, 'cache-zeroed') });
    const zeroedBytes = readFileSync(zeroedImage.rawPath);
    const rawBytes = readFileSync(out('a.img'));
    for (const range of await rawImage.usedRanges()) {
      expect(zeroedBytes.subarray(range.byteOffset, range.byteOffset + range.length).equals(rawBytes.subarray(range.byteOffset, range.byteOffset + range.length))).toBe(true);
    }
    expect((await zeroedImage.verify()).every((finding) => finding.clean)).toBe(true);
    const rawStreamed = await piimg(['cp', base, file, 'boot:/note.txt', '-o', '-'], env);
    expect(sha256(rawStreamed.bytes)).toBe(rawHash);
    // An unknown format: a usage error before anything is done.
    const lz4 = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out('a.img.lz4'), '--format', 'lz4'], env);
    expect(lz4.code).toBe(1);
    expect(lz4.stderr).toContain('unknown output format');
    expect(existsSync(out('a.img.lz4'))).toBe(false);
    const badLevel = await piimg(['cp', base, file, 'boot:/note.txt', '-o', out('b.img.gz'), '--level', '0'], env);
    expect(badLevel.code).toBe(1);
  });

  it('refuses to write an image to a terminal', async () => {
    const { main } = await import('../packages/cli/src/index.js');
    const { Writable } = await import('node:stream');
    const sink = () => Object.assign(new Writable({ write: (_chunk, _encoding, callback) => callback() }), { isTTY: true });
    const stderr = sink();
    let message = '';
    stderr.write = ((chunk: string) => ((message += chunk), true)) as never;
    const file = join(dir, 'tty.txt');
    writeFileSync(file, 'x');
    const code = await main(['cp', fixturePath('pi-bookworm'), file, 'boot:/tty.txt', '-o', '-'], { stdout: sink(), stderr, env: { ...process.env, PIIMG_CACHE_DIR: testCacheDir }, cwd: process.cwd() });
    expect(code).toBe(1);
    expect(message).toContain('terminal');
  });
});
