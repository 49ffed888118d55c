import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeNameBytes, encodeNameBytes, entryNameProblem, escapeName, hasEscapedBytes } from '../../src/fs/path.js';

describe('entry names', () => {
  it('accepts one path component only', () => {
    expect(entryNameProblem('ok.txt')).toBeUndefined();
    expect(entryNameProblem('...')).toBeUndefined();
    expect(entryNameProblem('')).toBe('empty');
    expect(entryNameProblem('.')).toBe('dot');
    expect(entryNameProblem('..')).toBe('dot');
    expect(entryNameProblem('../../etc/passwd')).toBe('slash');
    expect(entryNameProblem('a\0b')).toBe('nul');
  });

  it('decodes any bytes reversibly, and valid UTF-8 as itself', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(Buffer.from(encodeNameBytes(decodeNameBytes(bytes)))).toEqual(Buffer.from(bytes));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 20 }), (text) => {
        const name = decodeNameBytes(new TextEncoder().encode(text));
        expect(name).toBe(text);
        expect(hasEscapedBytes(name)).toBe(false);
      }),
    );
    // Overlong forms and encoded surrogates are not UTF-8.
    expect(escapeName(decodeNameBytes(Uint8Array.of(0xc0, 0xaf, 0xed, 0xa0, 0x80, 0x41)))).toBe('\\xc0\\xaf\\xed\\xa0\\x80A');
    expect(() => encodeNameBytes('\ud800x')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('escapes what could confuse a terminal or a reader', () => {
    expect(escapeName('caf\udce9 \u001b[31m\\ \u009b é')).toBe('caf\\xe9 \\x1b[31m\\\\ \\u009b é');
  });
});
