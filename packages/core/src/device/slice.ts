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
  checkRange(parent.size, byteOffset, length, 'device');
  return isDevice(parent) ? new SliceDevice(parent, byteOffset, length) : new SliceReader(parent, byteOffset, length);
}
