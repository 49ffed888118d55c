import { checkRange } from './range.js';
import type { BlockDevice } from './types.js';

/** A device over a byte array in memory. Reads return copies. */
export class MemoryDevice implements BlockDevice {
  readonly bytes: Uint8Array;

  constructor(bytesOrSize: Uint8Array | number) {
    this.bytes = typeof bytesOrSize === 'number' ? new Uint8Array(bytesOrSize) : bytesOrSize;
  }

  get size(): number {
    return this.bytes.length;
  }

  read(byteOffset: number, length: number): Uint8Array {
    checkRange(this.size, byteOffset, length);
    return this.bytes.slice(byteOffset, byteOffset + length);
  }

  write(byteOffset: number, data: Uint8Array): void {
    checkRange(this.size, byteOffset, data.length);
    this.bytes.set(data, byteOffset);
  }

  flush(): void {}
}
