import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isZstdError, loadZstd, zstdCompress, zstdDecompress } from '../src/zstd.js';

const pkg = new URL('../', import.meta.url);
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

const codeOf = (input: Uint8Array, options?: { windowLogMax?: number }): string => {
  try {
    zstdDecompress(input, options);
    return 'none';
  } catch (error) {
    return isZstdError(error) ? error.code : String(error);
  }
};

/** Compressible but not trivial data. */
function sample(size: number): Uint8Array {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = ((i * 7) % 251) ^ (i >> 12);
  return data;
}

describe('libzstd build', () => {
  const manifest = JSON.parse(readFileSync(new URL('dist/zstd.manifest.json', pkg), 'utf8')) as {
    source: { package: string; version: string };
    piimgSources: Record<string, string>;
    outputs: Record<string, string>;
  };

  it('records libzstd from Debian trixie and matches the committed output and sources', () => {
    expect(manifest.source).toMatchObject({ package: 'libzstd', version: '1.5.7+dfsg-1' });
    expect(sha256(readFileSync(new URL('dist/zstd.wasm', pkg)))).toBe(manifest.outputs['zstd.wasm']);
    expect(Object.keys(manifest.piimgSources).sort()).toEqual(
      ['build/build-zstd.sh', 'build/lib/debian-source.sh', ...readdirSync(new URL('build/zstd/', pkg)).map((name) => `build/zstd/${name}`)].sort(),
    );
    for (const [path, hash] of Object.entries(manifest.piimgSources)) expect(sha256(readFileSync(new URL(path, pkg))), path).toBe(hash);
    expect(readFileSync(new URL('LICENSES/zstd-LICENSE', pkg), 'utf8')).toContain('BSD License');
  });

  it('round-trips concatenated frames, with content size and checksum in each header', () => {
    const data = sample(3_000_000);
    const frame = zstdCompress(data, 3);
    expect(frame.length).toBeLessThan(data.length / 4);
    // Frame Header Descriptor (RFC 8878 §3.1.1.1.1): bit 2 Content_Checksum_flag, bits 6-7 Frame_Content_Size_flag.
    expect([...frame.subarray(0, 4)]).toEqual([0x28, 0xb5, 0x2f, 0xfd]);
    expect(frame[4]! & 0x04).toBe(0x04);
    expect(frame[4]! >> 6).not.toBe(0);
    const both = new Uint8Array(frame.length * 2);
    both.set(frame);
    both.set(frame, frame.length);
    const out = zstdDecompress(both);
    expect(out.length).toBe(data.length * 2);
    expect(sha256(out.subarray(data.length))).toBe(sha256(data));
  });

  it('rejects garbage, truncation, a bad checksum and a window over the limit with zstd codes', () => {
    const frame = zstdCompress(sample(1_000_000), 3);
    expect(codeOf(new TextEncoder().encode('not zstd at all'))).toBe('ZSTD_error_prefix_unknown');
    expect(codeOf(frame.subarray(0, frame.length - 3))).toBe('ZSTD_error_srcSize_wrong');
    const badChecksum = frame.slice();
    badChecksum[badChecksum.length - 1]! ^= 0xff;
    expect(codeOf(badChecksum)).toBe('ZSTD_error_checksum_wrong');
    // Level 3 compresses 3 MB with a 2 MiB window: refused under a 1 MiB limit (a frame
    // that fits the output buffer whole is decoded in place, without a window).
    expect(codeOf(zstdCompress(sample(3_000_000), 3), { windowLogMax: 20 })).toBe('ZSTD_error_frameParameter_windowTooLarge');
    const zstd = loadZstd();
    expect(() => zstd.frameEncoder(20, 0)).toThrow(/level 20/);
  });

  it('is readable by the zstd tool', ({ skip }) => {
    if (spawnSync('sh', ['-c', 'command -v zstd'], { stdio: 'ignore' }).status !== 0) {
      if (process.env.CI) throw new Error('oracle tool zstd is missing on CI: .ci/run must install it');
      console.warn('\n*** SKIPPED: the zstd oracle test needs zstd, which is not installed here ***\n');
      skip();
    }
    const data = sample(2_000_000);
    const frame = zstdCompress(data, 5);
    const both = new Uint8Array(frame.length * 2);
    both.set(frame);
    both.set(frame, frame.length);
    const result = spawnSync('zstd', ['-dc'], { input: both, maxBuffer: 64 << 20 });
    expect(result.status, result.stderr?.toString()).toBe(0);
    expect(result.stdout.length).toBe(data.length * 2);
    expect(sha256(result.stdout.subarray(0, data.length))).toBe(sha256(data));
  });
});
