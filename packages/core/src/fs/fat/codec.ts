/**
 * FAT entry codecs. `get` returns a normalised value: FREE (0), a next cluster
 * number, BAD or END; `put` takes the same values. Ref: FAT spec §4 "FAT".
 */

import { allZero } from '../../device/zero.js';

export const FREE = 0;
/** End of chain (any of the EOC values on disk). */
export const END = 0xffffffff;
/** Cluster marked bad. */
export const BAD = 0xfffffff7;

/** The FAT variant, by cluster count (FAT spec §3.5). */
export type FatType = 'fat12' | 'fat16' | 'fat32';

export interface FatCodec {
  readonly type: FatType;
  /** Bits per entry on disk (12, 16, 28 used of 32). */
  readonly bits: number;
  /** Byte offset in the FAT of the first byte of `cluster`'s entry. */
  byteOffsetOf(cluster: number): number;
  /** Bytes an entry touches from byteOffsetOf (2 for FAT12: it straddles bytes). */
  readonly span: number;
  get(fat: Uint8Array, view: DataView, cluster: number): number;
  put(fat: Uint8Array, view: DataView, cluster: number, value: number): void;
  /** On-disk value written for END. */
  readonly eoc: number;
}

function normalise(raw: number, badValue: number, eocMin: number): number {
  if (raw >= eocMin) return END;
  if (raw === badValue) return BAD;
  return raw;
}

export const fat12: FatCodec = {
  type: 'fat12',
  bits: 12,
  span: 2,
  eoc: 0xfff,
  byteOffsetOf: (cluster) => cluster + (cluster >>> 1),
  get(fat, _view, cluster) {
    const at = cluster + (cluster >>> 1);
    const pair = fat[at]! | (fat[at + 1]! << 8);
    const raw = cluster & 1 ? pair >>> 4 : pair & 0xfff;
    return normalise(raw, 0xff7, 0xff8);
  },
  put(fat, _view, cluster, value) {
    const raw = value === END ? 0xfff : value === BAD ? 0xff7 : value & 0xfff;
    const at = cluster + (cluster >>> 1);
    if (cluster & 1) {
      fat[at] = (fat[at]! & 0x0f) | ((raw & 0x0f) << 4);
      fat[at + 1] = raw >>> 4;
    } else {
      fat[at] = raw & 0xff;
      fat[at + 1] = (fat[at + 1]! & 0xf0) | (raw >>> 8);
    }
  },
};

export const fat16: FatCodec = {
  type: 'fat16',
  bits: 16,
  span: 2,
  eoc: 0xffff,
  byteOffsetOf: (cluster) => cluster * 2,
  get(_fat, view, cluster) {
    return normalise(view.getUint16(cluster * 2, true), 0xfff7, 0xfff8);
  },
  put(_fat, view, cluster, value) {
    view.setUint16(cluster * 2, value === END ? 0xffff : value === BAD ? 0xfff7 : value, true);
  },
};

/** FAT32 entries use 28 bits; the top 4 are reserved and kept as found (FAT spec §4). */
export const fat32: FatCodec = {
  type: 'fat32',
  bits: 28,
  span: 4,
  eoc: 0x0fffffff,
  byteOffsetOf: (cluster) => cluster * 4,
  get(_fat, view, cluster) {
    return normalise(view.getUint32(cluster * 4, true) & 0x0fffffff, 0x0ffffff7, 0x0ffffff8);
  },
  put(_fat, view, cluster, value) {
    const raw = value === END ? 0x0fffffff : value === BAD ? 0x0ffffff7 : value & 0x0fffffff;
    const old = view.getUint32(cluster * 4, true);
    view.setUint32(cluster * 4, ((old & 0xf0000000) | raw) >>> 0, true);
  },
};

export const codecs: Record<FatType, FatCodec> = { fat12, fat16, fat32 };

/**
 * Entries per span of the table's zero test: a whole number of bytes in every
 * FAT type (4096 entries of 12 bits are 6 KiB).
 */
export const ZERO_SPAN_ENTRIES = 4096;

/**
 * Whether the bytes of entries first..last are all zero, so every one of them
 * is FREE: one memcmp where decoding would take a loop over each entry. False
 * does not mean an entry is used (FAT32's reserved high bits, a FAT12 entry's
 * neighbour sharing a byte); callers then decode the span entry by entry.
 */
export function entriesZero(codec: FatCodec, fat: Uint8Array, first: number, last: number): boolean {
  const from = codec.byteOffsetOf(first);
  return allZero(fat.subarray(from, Math.min(fat.length, codec.byteOffsetOf(last) + codec.span)));
}
