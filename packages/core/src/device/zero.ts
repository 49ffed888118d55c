/**
 * All-zero tests by memcmp against a shared zero page: a byte loop in
 * JavaScript runs at ~1 byte/ns, Buffer.compare at memory speed. Large FAT
 * tables (a 512 MiB boot partition with 512-byte clusters has 1 M entries,
 * 4 MiB of FAT) are almost all zeros: the FAT code tests spans this way and
 * decodes only the entries of spans that hold data.
 */
const ZEROS = new Uint8Array(64 << 10);

/** Whether every byte of `data` is zero. */
export function allZero(data: Uint8Array): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const part = data.subarray(at, Math.min(data.length, at + ZEROS.length));
    if (Buffer.compare(part, ZEROS.subarray(0, part.length)) !== 0) return false;
  }
  return true;
}
