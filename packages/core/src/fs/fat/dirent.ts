/**
 * 32-byte short directory entries. Ref: FAT spec §6 "FAT Directory Structure".
 */
import type { FatType } from './codec.js';
import { ATTR_VOLUME_ID, DIRENT, DIRENT_SIZE, readUint, viewOf, writeUint } from './layout.js';

export interface ShortEntry {
  /** DIR_Name, 11 bytes. */
  raw: Uint8Array;
  attr: number;
  ntRes: number;
  crtTenth: number;
  crtTime: number;
  crtDate: number;
  accDate: number;
  firstCluster: number;
  wrtTime: number;
  wrtDate: number;
  size: number;
}

export function parseShortEntry(bytes: Uint8Array, byteOffset: number, fatType: FatType): ShortEntry {
  const view = viewOf(bytes);
  const hi = readUint(view, DIRENT.DIR_FstClusHI, byteOffset);
  const lo = readUint(view, DIRENT.DIR_FstClusLO, byteOffset);
  return {
    raw: bytes.slice(byteOffset, byteOffset + 11),
    attr: readUint(view, DIRENT.DIR_Attr, byteOffset),
    ntRes: readUint(view, DIRENT.DIR_NTRes, byteOffset),
    crtTenth: readUint(view, DIRENT.DIR_CrtTimeTenth, byteOffset),
    crtTime: readUint(view, DIRENT.DIR_CrtTime, byteOffset),
    crtDate: readUint(view, DIRENT.DIR_CrtDate, byteOffset),
    accDate: readUint(view, DIRENT.DIR_LstAccDate, byteOffset),
    // DIR_FstClusHI is only meaningful on FAT32 (FAT spec §6: "always 0" on FAT12/16).
    firstCluster: fatType === 'fat32' ? ((hi << 16) | lo) >>> 0 : lo,
    wrtTime: readUint(view, DIRENT.DIR_WrtTime, byteOffset),
    wrtDate: readUint(view, DIRENT.DIR_WrtDate, byteOffset),
    size: readUint(view, DIRENT.DIR_FileSize, byteOffset),
  };
}

/** The volume label entry of the root directory (DIR_Attr = ATTR_VOLUME_ID); only its write time is kept. */
export function encodeLabelEntry(labelField: Uint8Array, wrtTime: number, wrtDate: number): Uint8Array {
  return encodeShortEntry({
    raw: labelField,
    attr: ATTR_VOLUME_ID,
    ntRes: 0,
    crtTenth: 0,
    crtTime: 0,
    crtDate: 0,
    accDate: 0,
    firstCluster: 0,
    wrtTime,
    wrtDate,
    size: 0,
  });
}

export function encodeShortEntry(entry: ShortEntry): Uint8Array {
  const bytes = new Uint8Array(DIRENT_SIZE);
  const view = viewOf(bytes);
  bytes.set(entry.raw.subarray(0, 11), 0);
  writeUint(view, DIRENT.DIR_Attr, entry.attr);
  writeUint(view, DIRENT.DIR_NTRes, entry.ntRes);
  writeUint(view, DIRENT.DIR_CrtTimeTenth, entry.crtTenth);
  writeUint(view, DIRENT.DIR_CrtTime, entry.crtTime);
  writeUint(view, DIRENT.DIR_CrtDate, entry.crtDate);
  writeUint(view, DIRENT.DIR_LstAccDate, entry.accDate);
  writeUint(view, DIRENT.DIR_FstClusHI, entry.firstCluster >>> 16);
  writeUint(view, DIRENT.DIR_WrtTime, entry.wrtTime);
  writeUint(view, DIRENT.DIR_WrtDate, entry.wrtDate);
  writeUint(view, DIRENT.DIR_FstClusLO, entry.firstCluster & 0xffff);
  writeUint(view, DIRENT.DIR_FileSize, entry.size);
  return bytes;
}

/** DIR_Name of "." and "..". */
export const DOT_NAME = new TextEncoder().encode('.          ');
export const DOTDOT_NAME = new TextEncoder().encode('..         ');
