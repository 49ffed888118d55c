import type { BlockReader, ByteRange } from '../device/types.js';
import { slice } from '../device/slice.js';
export { isRangeList } from '../device/range.js';
import { readPartitionTable } from '../partition/index.js';
import { detectFilesystem, type FilesystemInfo } from './detect.js';

/** Granularity of the scan for data outside the filesystems piimg reads. */
const SCAN_BLOCK = 4096;
/**
 * The first and last MiB of every gap between partitions count as in use,
 * zeros included: that is where partition tables live (MBR and primary GPT
 * before the first partition, an EBR at the start of each logical slot, the
 * backup GPT at the end of the disk), and their checksums cover zero entries.
 */
const TABLE_AREA = 1 << 20;
const SCAN_READ = 1 << 20;

/** A partition as `usedRanges` sees it: where it lies and what it holds. */
export interface UsageArea {
  byteOffset: number;
  size: number;
  filesystem: FilesystemInfo;
}

/**
 * Appends `range` to `out`, merging with the last range when they touch.
 * Ranges must come in increasing order.
 */
function push(out: ByteRange[], byteOffset: number, length: number): void {
  if (length <= 0) return;
  const last = out[out.length - 1];
  if (last && last.byteOffset + last.length >= byteOffset) {
    last.length = Math.max(last.length, byteOffset + length - last.byteOffset);
  } else out.push({ byteOffset, length });
}

/** The non-zero SCAN_BLOCK blocks of [byteOffset, byteOffset + length). */
function scanNonZero(device: BlockReader, byteOffset: number, length: number, out: ByteRange[]): void {
  for (let done = 0; done < length; done += SCAN_READ) {
    const count = Math.min(SCAN_READ, length - done);
    const bytes = device.read(byteOffset + done, count);
    const words = bytes.byteOffset % 4 === 0 && count % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, count / 4) : undefined;
    for (let start = 0; start < count; start += SCAN_BLOCK) {
      const end = Math.min(count, start + SCAN_BLOCK);
      let zero = true;
      if (words && start % 4 === 0 && end % 4 === 0) {
        for (let i = start / 4; i < end / 4; i++) if (words[i] !== 0) { zero = false; break; }
      } else {
        for (let i = start; i < end; i++) if (bytes[i] !== 0) { zero = false; break; }
      }
      if (!zero) push(out, byteOffset + done + start, end - start);
    }
  }
}

/** Options of `usedRanges`. */
export interface UsedRangesOptions {
  /**
   * Scan what no filesystem describes (large gaps, unknown partitions) for
   * non-zero blocks (default true). False counts it all as used: nothing is
   * read, as an output that zeros free space needs (its holes are known already).
   */
  scan?: boolean;
}

/** A gap between partitions: its ends in full, the rest where it is not zeros. */
function gap(device: BlockReader, byteOffset: number, length: number, out: ByteRange[], scan = true): void {
  if (length <= 2 * TABLE_AREA || !scan) {
    push(out, byteOffset, length);
    return;
  }
  push(out, byteOffset, TABLE_AREA);
  scanNonZero(device, byteOffset + TABLE_AREA, length - 2 * TABLE_AREA, out);
  push(out, byteOffset + length - TABLE_AREA, TABLE_AREA);
}

/**
 * The byte ranges of a disk image that hold anything in use, in increasing
 * order: FAT and ext2/3/4 filesystems contribute their allocated clusters
 * and blocks with their metadata; the partition table areas count whole;
 * everything else (the rest of large gaps, swap, unknown filesystems) is in
 * use wherever it is not zeros. A range
 * outside this list may hold stale data but nothing reads it.
 */
export async function usedRanges(device: BlockReader, areas: UsageArea[], options: UsedRangesOptions = {}): Promise<ByteRange[]> {
  const scan = options.scan ?? true;
  const sorted = [...areas].sort((a, b) => a.byteOffset - b.byteOffset);
  const out: ByteRange[] = [];
  let position = 0;
  for (const area of sorted) {
    if (area.byteOffset > position) gap(device, position, area.byteOffset - position, out, scan);
    const start = Math.max(area.byteOffset, position);
    const end = Math.min(device.size, area.byteOffset + area.size);
    if (end <= start) continue;
    const reader = slice(device, { byteOffset: area.byteOffset, length: end - area.byteOffset });
    let inner: ByteRange[] | undefined;
    const type = area.filesystem.type;
    if (type === 'fat12' || type === 'fat16' || type === 'fat32') {
      const { fatUsedRanges } = await import('../fs/fat/usage.js');
      inner = fatUsedRanges(reader);
    } else if (type === 'ext2' || type === 'ext3' || type === 'ext4') {
      const { ext4UsedRanges } = await import('../fs/ext4/usage.js');
      inner = ext4UsedRanges(reader);
    }
    if (inner === undefined) {
      if (scan) scanNonZero(device, start, end - start, out);
      else push(out, start, end - start);
    }
    else {
      for (const range of inner) {
        const from = Math.max(start, area.byteOffset + range.byteOffset);
        const to = Math.min(end, area.byteOffset + range.byteOffset + range.length);
        push(out, from, to - from);
      }
    }
    position = Math.max(position, end);
  }
  if (position < device.size) gap(device, position, device.size - position, out, scan);
  return out;
}

/** The used ranges of a whole disk image as it reads: its partition table, the filesystems found in it. */
export async function diskUsedRanges(device: BlockReader, sectorSize?: 512 | 4096, options: UsedRangesOptions = {}): Promise<ByteRange[]> {
  const table = readPartitionTable(device, sectorSize ? { sectorSize } : {});
  const areas = table.partitions.map((p) => ({ byteOffset: p.byteOffset, size: p.size, filesystem: detectFilesystem(slice(device, { byteOffset: p.byteOffset, length: p.size })) }));
  return usedRanges(device, areas, options);
}
