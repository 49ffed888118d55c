import { PiimgError } from '../errors.js';
import type { ByteRange } from './types.js';

export function checkRange(size: number, byteOffset: number, length: number, what = 'device'): void {
  if (
    !Number.isSafeInteger(byteOffset) ||
    !Number.isSafeInteger(length) ||
    byteOffset < 0 ||
    length < 0 ||
    byteOffset + length > size
  ) {
    throw new PiimgError('E_OUT_OF_RANGE', `access of ${length} bytes at ${byteOffset} is outside the ${what} (${size} bytes)`, {
      byteOffset,
      length,
      size,
    });
  }
}

/** True for sorted, disjoint, in-bounds ranges (a cached list checked before use). */
export function isRangeList(value: unknown, size: number): value is ByteRange[] {
  if (!Array.isArray(value)) return false;
  let end = 0;
  for (const range of value) {
    const r = range as ByteRange;
    if (!Number.isSafeInteger(r?.byteOffset) || !Number.isSafeInteger(r?.length) || r.byteOffset < end || r.length <= 0) return false;
    end = r.byteOffset + r.length;
  }
  return end <= size;
}
