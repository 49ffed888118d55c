import { PiimgError } from '../errors.js';
import { checkRange } from './range.js';
import type { BlockDevice, BlockReader, ByteRange } from './types.js';

class SliceReader implements BlockReader {
  constructor(
    protected readonly parent: BlockReader,
    readonly byteOffset: number,
    readonly size: number,
  ) {}

  read(byteOffset: number, length: number): Uint8Array {
    checkRange(this.size, byteOffset, length, 'slice');
    return this.parent.read(this.byteOffset + byteOffset, length);
  }
}

class SliceDevice extends SliceReader implements BlockDevice {
  write(byteOffset: number, data: Uint8Array): void {
    checkRange(this.size, byteOffset, data.length, 'slice');
    (this.parent as BlockDevice).write(this.byteOffset + byteOffset, data);
  }

  flush(): void {
    (this.parent as BlockDevice).flush();
  }
}

function isDevice(reader: BlockReader): reader is BlockDevice {
  return typeof (reader as BlockDevice).write === 'function';
}

/** A bounds-checked window of a device (a partition). Writable when the parent is. */
export function slice(parent: BlockDevice, range: ByteRange): BlockDevice;
export function slice(parent: BlockReader, range: ByteRange): BlockReader;
export function slice(parent: BlockReader, range: ByteRange): BlockReader {
  const { byteOffset, length } = range;
  if (!Number.isSafeInteger(byteOffset) || !Number.isSafeInteger(length) || byteOffset < 0 || length < 0 || byteOffset + length > parent.size) {
    throw new PiimgError('E_OUT_OF_RANGE', `slice of ${length} bytes at ${byteOffset} is outside the device (${parent.size} bytes)`, {
      byteOffset,
      length,
      size: parent.size,
    });
  }
  return isDevice(parent) ? new SliceDevice(parent, byteOffset, length) : new SliceReader(parent, byteOffset, length);
}

/** A read-only view of any device: writes are impossible by type and at run time. */
export function readOnly(reader: BlockReader): BlockReader {
  return { get size() { return reader.size; }, read: (byteOffset, length) => reader.read(byteOffset, length) };
}
