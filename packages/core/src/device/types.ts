/**
 * Block devices are synchronous on purpose: the ext4 engine (libext2fs in
 * WebAssembly) calls into them synchronously from its io_manager.
 */
export interface BlockReader {
  /** Size in bytes. */
  readonly size: number;
  /**
   * Reads `length` bytes at `byteOffset`. Throws `E_OUT_OF_RANGE` when the
   * range is not inside the device. The returned array may be a fresh copy
   * or a view the caller must not keep across writes.
   */
  read(byteOffset: number, length: number): Uint8Array;
}

export interface BlockDevice extends BlockReader {
  /** Writes `data` at `byteOffset`; a range outside the device throws `E_OUT_OF_RANGE`. */
  write(byteOffset: number, data: Uint8Array): void;
  /** Makes every write durable (an fsync for files). */
  flush(): void;
}

/** A half-open byte range [byteOffset, byteOffset + length). */
export interface ByteRange {
  byteOffset: number;
  length: number;
}
