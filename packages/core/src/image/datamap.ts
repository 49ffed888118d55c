import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { isRangeList } from '../device/range.js';
import type { ByteRange } from '../device/types.js';
import { fileIdentityKey, readFileFact, readJsonFile, writeFileFact, writeJsonFile } from './identity.js';

/**
 * A data map lists the byte ranges of a base image that hold anything but
 * zeros, at 64 KiB granularity. Node has no SEEK_DATA, so without a map every
 * save would read the holes too; with one, a save copies only real data, as
 * `cp --sparse=always` does.
 *
 * Maps of decompressed bases are recorded while decompressing (free); maps of
 * raw bases are scanned once and cached, keyed by the file's identity (path,
 * device, inode, size, modification time in ns), so a changed file is scanned again.
 */
export const DATA_MAP_BLOCK = 64 * 1024;
const ZERO_BLOCK = Buffer.alloc(DATA_MAP_BLOCK);
const SCAN_BUFFER = 8 << 20;

/** The byte ranges of a file that hold data, in increasing order; the rest reads as zeros. */
export type DataMap = ByteRange[];

/** Collects non-zero blocks into merged ranges, in increasing order. */
export class DataMapBuilder {
  readonly ranges: DataMap = [];

  /** Records `block` (at most DATA_MAP_BLOCK bytes) found at `byteOffset`, if it is not all zeros. */
  add(byteOffset: number, block: Buffer): boolean {
    if (block.equals(ZERO_BLOCK.subarray(0, block.length))) return false;
    this.addRange(byteOffset, block.length);
    return true;
  }

  /** Records `length` bytes of data at `byteOffset`, after everything recorded so far. */
  addRange(byteOffset: number, length: number): void {
    const last = this.ranges[this.ranges.length - 1];
    if (last && last.byteOffset + last.length === byteOffset) last.length += length;
    else this.ranges.push({ byteOffset, length });
  }
}

/** Finds the data ranges of a file by reading it: non-zero 64 KiB blocks, merged. */
export function scanDataMap(path: string, size: number): DataMap {
  const builder = new DataMapBuilder();
  const fd = openSync(path, 'r');
  const buffer = Buffer.allocUnsafe(SCAN_BUFFER);
  try {
    for (let position = 0; position < size; position += SCAN_BUFFER) {
      const length = Math.min(SCAN_BUFFER, size - position);
      let filled = 0;
      while (filled < length) {
        const count = readSync(fd, buffer, filled, length - filled, position + filled);
        if (count === 0) break;
        filled += count;
      }
      for (let start = 0; start < filled; start += DATA_MAP_BLOCK) {
        builder.add(position + start, buffer.subarray(start, Math.min(start + DATA_MAP_BLOCK, filled)));
      }
    }
  } finally {
    closeSync(fd);
  }
  return builder.ranges;
}


export function writeDataMap(mapPath: string, map: DataMap): void {
  writeJsonFile(mapPath, map);
}

export function readDataMap(mapPath: string, size: number): DataMap | undefined {
  const value = readJsonFile(mapPath);
  return isRangeList(value, size) ? value : undefined;
}

/** The map file next to a decompressed cache entry. */
export function cacheEntryMapPath(rawPath: string): string {
  return `${rawPath}.map.json`;
}

/** Where a raw file's data map is remembered: its cache key and, once known, the map. */
export interface DataMapSlot {
  key: string;
  map: DataMap | undefined;
}

/**
 * The cached map of a raw file: the one beside a decompressed cache entry, or
 * the one stored under the file's identity. `map` is undefined when neither
 * exists yet; store one found later with `rememberDataMap(slot, ...)`.
 */
export function cachedDataMap(path: string, cacheDir: string): DataMapSlot {
  const size = statSync(path).size;
  const key = fileIdentityKey(path);
  const beside = readDataMap(cacheEntryMapPath(path), size);
  if (beside) return { key, map: beside };
  const cached = readFileFact(cacheDir, 'maps', key);
  return { key, map: isRangeList(cached, size) ? cached : undefined };
}

export function rememberDataMap(cacheDir: string, slot: DataMapSlot, map: DataMap): void {
  writeFileFact(cacheDir, 'maps', slot.key, map);
}

/** The cached map of any raw file, keyed by its identity; scanned and stored when missing or stale. */
export function dataMapFor(path: string, cacheDir: string): DataMap {
  const slot = cachedDataMap(path, cacheDir);
  if (slot.map) return slot.map;
  const map = scanDataMap(path, statSync(path).size);
  rememberDataMap(cacheDir, slot, map);
  return map;
}
