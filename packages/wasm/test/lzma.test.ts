import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isLzmaError, loadLzma, XZ_CHECK, xzDecompress } from '../src/lzma.js';

const pkg = new URL('../', import.meta.url);
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('liblzma build', () => {
  const manifest = JSON.parse(readFileSync(new URL('dist/lzma.manifest.json', pkg), 'utf8')) as {
    source: { package: string; version: string };
    piimgSources: Record<string, string>;
    outputs: Record<string, string>;
  };

  it('records xz-utils from Debian trixie and matches the committed output and sources', () => {
    expect(manifest.source).toMatchObject({ package: 'xz-utils', version: '5.8.1-1+deb13u1' });
    expect(sha256(readFileSync(new URL('dist/lzma.wasm', pkg)))).toBe(manifest.outputs['lzma.wasm']);
    expect(Object.keys(manifest.piimgSources).sort()).toEqual(
      ['build/build-lzma.sh', 'build/lib/debian-source.sh', ...readdirSync(new URL('build/lzma/', pkg)).map((name) => `build/lzma/${name}`)].sort(),
    );
    for (const [path, hash] of Object.entries(manifest.piimgSources)) expect(sha256(readFileSync(new URL(path, pkg))), path).toBe(hash);
    expect(readFileSync(new URL('LICENSES/xz-utils-COPYING.0BSD', pkg), 'utf8')).toContain('Permission to use, copy, modify');
  });

  /** One .xz Stream around one Block made by the wasm encoder, assembled by hand (Ref: The .xz File Format 1.2.1). */
  function encodeOneBlock(data: Uint8Array, preset: number): { block: Uint8Array; unpaddedSize: number; uncompressedSize: number } {
    const lzma = loadLzma();
    const encoder = lzma.blockEncoder(preset, XZ_CHECK.crc64);
    const inPtr = lzma.alloc(data.length);
    const outPtr = lzma.alloc(data.length + 65536);
    lzma.memory().set(data, inPtr);
    let produced = 0;
    for (let offset = 0, done = false; !done; ) {
      const step = encoder.code(inPtr + offset, data.length - offset, outPtr + produced, data.length + 65536 - produced, true);
      offset += step.consumed;
      produced += step.produced;
      done = step.done;
    }
    const headerPtr = lzma.alloc(1024);
    const header = encoder.blockHeader(headerPtr);
    const block = new Uint8Array(header.headerSize + produced);
    block.set(lzma.memory().subarray(headerPtr, headerPtr + header.headerSize));
    block.set(lzma.memory().subarray(outPtr, outPtr + produced), header.headerSize);
    encoder.end();
    return { block, unpaddedSize: header.unpaddedSize, uncompressedSize: header.uncompressedSize };
  }

  it('encodes a Block that decodes back, whole and with a lying size refused', () => {
    const data = new TextEncoder().encode('a Raspberry Pi image, '.repeat(5000));
    const { block, unpaddedSize, uncompressedSize } = encodeOneBlock(data, 6);
    expect(uncompressedSize).toBe(data.length);
    expect(block.length % 4).toBe(0);
    const lzma = loadLzma();
    const inPtr = lzma.alloc(block.length);
    const outPtr = lzma.alloc(data.length);
    lzma.memory().set(block, inPtr);
    lzma.decodeBlock(inPtr, block.length, { unpaddedSize, uncompressedSize }, XZ_CHECK.crc64, outPtr, 64 << 20);
    expect(sha256(lzma.memory().slice(outPtr, outPtr + data.length))).toBe(sha256(data));
    let caught: unknown;
    try {
      lzma.decodeBlock(inPtr, block.length, { unpaddedSize, uncompressedSize: uncompressedSize - 1 }, XZ_CHECK.crc64, outPtr, 64 << 20);
    } catch (error) {
      caught = error;
    }
    expect(isLzmaError(caught) && caught.code).toBe('LZMA_DATA_ERROR');
    // A memory limit below what the dictionary needs is refused before decoding.
    try {
      lzma.decodeBlock(inPtr, block.length, { unpaddedSize, uncompressedSize }, XZ_CHECK.crc64, outPtr, 1 << 20);
      caught = undefined;
    } catch (error) {
      caught = error;
    }
    expect(isLzmaError(caught) && caught.code).toBe('LZMA_MEMLIMIT_ERROR');
  });

  it('the stream decoder rejects garbage and truncation with liblzma codes', () => {
    const codeOf = (input: Uint8Array): string => {
      try {
        xzDecompress(input);
        return 'none';
      } catch (error) {
        return isLzmaError(error) ? error.code : String(error);
      }
    };
    expect(codeOf(new TextEncoder().encode('not xz at all'))).toBe('LZMA_FORMAT_ERROR');
    expect(codeOf(Uint8Array.of(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04))).toBe('LZMA_BUF_ERROR');
  });
});
