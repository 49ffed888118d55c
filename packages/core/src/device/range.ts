import { PiimgError } from '../errors.js';

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
