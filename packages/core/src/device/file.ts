import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync, type Stats } from 'node:fs';
import { PiimgError } from '../errors.js';
import { checkRange } from './range.js';
import type { BlockDevice, BlockReader } from './types.js';

/** What a path names, for messages: 'a directory', 'a FIFO'... */
export function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  return 'not a regular file';
}

function openError(path: string, error: unknown): PiimgError {
  const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
  return new PiimgError(code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `cannot open ${path}: ${code}`, { path }, { cause: error });
}

/** Reads at a file position until `target` is full; short reads are retried, EOF is an error. */
export function readFully(fd: number, target: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < target.length) {
    const count = readSync(fd, target, done, target.length - done, position + done);
    if (count === 0) {
      throw new PiimgError('E_TRUNCATED', `${path} ended at ${position + done}, expected ${target.length - done} more bytes`, {
        path,
        byteOffset: position + done,
      });
    }
    done += count;
  }
}

export function writeFully(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) {
    done += writeSync(fd, data, done, data.length - done, position + done);
  }
}

/** A read-only file. The size is taken once at open. */
export class FileReader implements BlockReader {
  readonly path: string;
  readonly size: number;
  protected fd: number | undefined;

  protected constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
    this.size = fstatSync(fd).size;
  }

  /** Opens a file read-only. */
  static open(path: string): FileReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      throw openError(path, error);
    }
    return new FileReader(path, fd);
  }

  protected handle(): number {
    if (this.fd === undefined) throw new PiimgError('E_CLOSED', `${this.path} is closed`, { path: this.path });
    return this.fd;
  }

  read(byteOffset: number, length: number): Uint8Array {
    checkRange(this.size, byteOffset, length, this.path);
    // Not zero-filled first: readFully fills every byte or throws.
    const buffer = Buffer.allocUnsafeSlow(length);
    const out = new Uint8Array(buffer.buffer, buffer.byteOffset, length);
    readFully(this.handle(), out, byteOffset, this.path);
    return out;
  }

  /** Closes the file; further reads fail. */
  close(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  /** Same as `close()`, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** A writable file of fixed size (writes past the end are refused, like a disk). */
export class FileDevice extends FileReader implements BlockDevice {
  /** Opens an existing file for reading and writing; its size stays fixed. */
  static override open(path: string): FileDevice {
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch (error) {
      throw openError(path, error);
    }
    return new FileDevice(path, fd);
  }

  write(byteOffset: number, data: Uint8Array): void {
    checkRange(this.size, byteOffset, data.length, this.path);
    writeFully(this.handle(), data, byteOffset);
  }

  flush(): void {
    fsyncSync(this.handle());
  }
}
