import { PiimgError } from '../errors.js';
import type { BlockReader } from './types.js';

/** A reader that holds something to release (a file descriptor). */
export interface ClosableReader extends BlockReader {
  /** Releases what the reader holds. */
  close(): void;
}

interface Holder {
  readonly reader: ClosableReader;
  leases: number;
}

/**
 * One lease on a read-only reader shared by several users (a base image and
 * the device images derived from it). Each user closes its own lease, once or
 * more; the reader itself closes when the last lease is closed.
 */
export class SharedReader implements BlockReader {
  readonly size: number;
  private holder: Holder | undefined;

  private constructor(holder: Holder) {
    this.holder = holder;
    this.size = holder.reader.size;
    holder.leases++;
  }

  /** The first lease on `reader`, which from now on closes with the last lease. */
  static over(reader: ClosableReader): SharedReader {
    return new SharedReader({ reader, leases: 0 });
  }

  /** Number of open leases on the shared reader (this one included). */
  get leases(): number {
    return this.holder?.leases ?? 0;
  }

  /** Another lease on the same reader; this lease must still be open. */
  share(): SharedReader {
    return new SharedReader(this.open());
  }

  private open(): Holder {
    if (this.holder === undefined) throw new PiimgError('E_CLOSED', 'the shared base is closed');
    return this.holder;
  }

  read(byteOffset: number, length: number): Uint8Array {
    return this.open().reader.read(byteOffset, length);
  }

  /** Gives up this lease; the last one closes the underlying reader. */
  close(): void {
    const holder = this.holder;
    if (holder === undefined) return;
    this.holder = undefined;
    if (--holder.leases === 0) holder.reader.close();
  }

  /** The same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
