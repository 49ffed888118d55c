/**
 * On-disk layout of FAT12/16/32: boot sector (BPB), FSInfo sector and
 * directory entries, as tables with the field names of the Microsoft FAT
 * specification ("Microsoft Extensible Firmware Initiative FAT32 File System
 * Specification", version 1.03, 2000; "the FAT spec" below).
 */

export interface FieldSpec {
  readonly byteOffset: number;
  readonly size: number;
}

/** Ref: FAT spec §3.1 "Boot Sector and BPB Structure" (common to all FAT types). */
export const BPB = {
  BS_jmpBoot: { byteOffset: 0x00, size: 3 },
  BS_OEMName: { byteOffset: 0x03, size: 8 },
  BPB_BytsPerSec: { byteOffset: 0x0b, size: 2 },
  BPB_SecPerClus: { byteOffset: 0x0d, size: 1 },
  BPB_RsvdSecCnt: { byteOffset: 0x0e, size: 2 },
  BPB_NumFATs: { byteOffset: 0x10, size: 1 },
  BPB_RootEntCnt: { byteOffset: 0x11, size: 2 },
  BPB_TotSec16: { byteOffset: 0x13, size: 2 },
  BPB_Media: { byteOffset: 0x15, size: 1 },
  BPB_FATSz16: { byteOffset: 0x16, size: 2 },
  BPB_SecPerTrk: { byteOffset: 0x18, size: 2 },
  BPB_NumHeads: { byteOffset: 0x1a, size: 2 },
  BPB_HiddSec: { byteOffset: 0x1c, size: 4 },
  BPB_TotSec32: { byteOffset: 0x20, size: 4 },
} as const satisfies Record<string, FieldSpec>;

/** Ref: FAT spec §3.2 "Fat12 and Fat16 Structure Starting at Offset 36". */
export const BPB16 = {
  BS_DrvNum: { byteOffset: 0x24, size: 1 },
  /** Linux and dosfstools keep the "volume dirty" flag in bit 0 of this byte. */
  BS_Reserved1: { byteOffset: 0x25, size: 1 },
  BS_BootSig: { byteOffset: 0x26, size: 1 },
  BS_VolID: { byteOffset: 0x27, size: 4 },
  BS_VolLab: { byteOffset: 0x2b, size: 11 },
  BS_FilSysType: { byteOffset: 0x36, size: 8 },
} as const satisfies Record<string, FieldSpec>;

/** Ref: FAT spec §3.3 "FAT32 Structure Starting at Offset 36". */
export const BPB32 = {
  BPB_FATSz32: { byteOffset: 0x24, size: 4 },
  BPB_ExtFlags: { byteOffset: 0x28, size: 2 },
  BPB_FSVer: { byteOffset: 0x2a, size: 2 },
  BPB_RootClus: { byteOffset: 0x2c, size: 4 },
  BPB_FSInfo: { byteOffset: 0x30, size: 2 },
  BPB_BkBootSec: { byteOffset: 0x32, size: 2 },
  BPB_Reserved: { byteOffset: 0x34, size: 12 },
  BS_DrvNum: { byteOffset: 0x40, size: 1 },
  BS_Reserved1: { byteOffset: 0x41, size: 1 },
  BS_BootSig: { byteOffset: 0x42, size: 1 },
  BS_VolID: { byteOffset: 0x43, size: 4 },
  BS_VolLab: { byteOffset: 0x47, size: 11 },
  BS_FilSysType: { byteOffset: 0x52, size: 8 },
} as const satisfies Record<string, FieldSpec>;

/** The 0x55 0xAA signature at byte 510 of the boot sector (FAT spec §3.1, "Signature_word"). */
export const BOOT_SIGNATURE_OFFSET = 0x1fe;
/** BS_BootSig value saying that BS_VolID, BS_VolLab and BS_FilSysType are present. */
export const EXTENDED_BOOT_SIGNATURE = 0x29;
/** Bit 0 of BS_Reserved1: set while mounted read-write (Linux fs/fat FAT_STATE_DIRTY). */
export const STATE_DIRTY = 0x01;

/** Ref: FAT spec §5 "FAT32 FSInfo Sector Structure and Backup Boot Sector". */
export const FSINFO = {
  FSI_LeadSig: { byteOffset: 0x000, size: 4 },
  FSI_Reserved1: { byteOffset: 0x004, size: 480 },
  FSI_StrucSig: { byteOffset: 0x1e4, size: 4 },
  FSI_Free_Count: { byteOffset: 0x1e8, size: 4 },
  FSI_Nxt_Free: { byteOffset: 0x1ec, size: 4 },
  FSI_Reserved2: { byteOffset: 0x1f0, size: 12 },
  FSI_TrailSig: { byteOffset: 0x1fc, size: 4 },
} as const satisfies Record<string, FieldSpec>;

export const FSI_LEAD_SIG = 0x41615252;
export const FSI_STRUC_SIG = 0x61417272;
export const FSI_TRAIL_SIG = 0xaa550000;
/** FSI_Free_Count / FSI_Nxt_Free value meaning "not known". */
export const FSI_UNKNOWN = 0xffffffff;

/** Ref: FAT spec §6 "FAT Directory Structure", 32 bytes per entry. */
export const DIRENT = {
  DIR_Name: { byteOffset: 0x00, size: 11 },
  DIR_Attr: { byteOffset: 0x0b, size: 1 },
  /** Windows NT keeps the lower-case flags of the short name here. */
  DIR_NTRes: { byteOffset: 0x0c, size: 1 },
  DIR_CrtTimeTenth: { byteOffset: 0x0d, size: 1 },
  DIR_CrtTime: { byteOffset: 0x0e, size: 2 },
  DIR_CrtDate: { byteOffset: 0x10, size: 2 },
  DIR_LstAccDate: { byteOffset: 0x12, size: 2 },
  DIR_FstClusHI: { byteOffset: 0x14, size: 2 },
  DIR_WrtTime: { byteOffset: 0x16, size: 2 },
  DIR_WrtDate: { byteOffset: 0x18, size: 2 },
  DIR_FstClusLO: { byteOffset: 0x1a, size: 2 },
  DIR_FileSize: { byteOffset: 0x1c, size: 4 },
} as const satisfies Record<string, FieldSpec>;

/** Ref: FAT spec §7 "Long File Name Implementation", one 32-byte slot holding 13 UCS-2 units. */
export const LDIR = {
  LDIR_Ord: { byteOffset: 0x00, size: 1 },
  LDIR_Name1: { byteOffset: 0x01, size: 10 },
  LDIR_Attr: { byteOffset: 0x0b, size: 1 },
  LDIR_Type: { byteOffset: 0x0c, size: 1 },
  LDIR_Chksum: { byteOffset: 0x0d, size: 1 },
  LDIR_Name2: { byteOffset: 0x0e, size: 12 },
  LDIR_FstClusLO: { byteOffset: 0x1a, size: 2 },
  LDIR_Name3: { byteOffset: 0x1c, size: 4 },
} as const satisfies Record<string, FieldSpec>;

export const DIRENT_SIZE = 32;
/** Byte offsets inside a long-name slot of its 13 UTF-16 code units. */
export const LDIR_CHAR_OFFSETS = [0x01, 0x03, 0x05, 0x07, 0x09, 0x0e, 0x10, 0x12, 0x14, 0x16, 0x18, 0x1c, 0x1e] as const;
export const LDIR_CHARS_PER_SLOT = 13;
/** Set in LDIR_Ord of the slot holding the end of the name (stored first). */
export const LAST_LONG_ENTRY = 0x40;
/** Longest long name in UTF-16 code units (FAT spec §7). */
export const MAX_LONG_NAME = 255;
/** Most slots a long name takes: 20. */
export const MAX_LONG_SLOTS = Math.ceil(MAX_LONG_NAME / LDIR_CHARS_PER_SLOT);

export const ATTR_READ_ONLY = 0x01;
export const ATTR_HIDDEN = 0x02;
export const ATTR_SYSTEM = 0x04;
export const ATTR_VOLUME_ID = 0x08;
export const ATTR_DIRECTORY = 0x10;
export const ATTR_ARCHIVE = 0x20;
export const ATTR_LONG_NAME = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID;
export const ATTR_LONG_NAME_MASK = ATTR_LONG_NAME | ATTR_DIRECTORY | ATTR_ARCHIVE;

/** DIR_Name[0]: slot free, and so are all slots after it (FAT spec §6.1). */
export const DIR_NAME_END = 0x00;
/** DIR_Name[0]: slot free (deleted). */
export const DIR_NAME_FREE = 0xe5;
/** DIR_Name[0]: stands for a real 0xE5 lead byte (Kanji). */
export const DIR_NAME_KANJI_E5 = 0x05;

/** DIR_NTRes bits (Windows NT, also Linux "shortname=mixed" and mtools). */
export const NT_LOWER_BASE = 0x08;
export const NT_LOWER_EXT = 0x10;

/** A directory holds at most 65536 entries (FAT spec §6.1: 2 MiB). */
export const MAX_DIR_ENTRIES = 65536;
/** Most bytes a directory holds, and the clusters read for one at most. */
export const MAX_DIR_BYTES = MAX_DIR_ENTRIES * DIRENT_SIZE;
export function maxDirClusters(clusterSize: number): number {
  return Math.max(1, Math.floor(MAX_DIR_BYTES / clusterSize));
}

/** Cluster count limits that decide the FAT type (FAT spec §3.5). */
export const FAT12_MAX_CLUSTERS = 4084;
export const FAT16_MAX_CLUSTERS = 65524;
/** Highest cluster count FAT32 can address (28-bit entries minus reserved values). */
export const FAT32_MAX_CLUSTERS = 0x0ffffff5;

/** First valid data cluster: entries 0 and 1 of the FAT are reserved. */
export const FIRST_CLUSTER = 2;

export function readUint(view: DataView, field: FieldSpec, base = 0): number {
  const at = base + field.byteOffset;
  switch (field.size) {
    case 1:
      return view.getUint8(at);
    case 2:
      return view.getUint16(at, true);
    case 4:
      return view.getUint32(at, true);
    default:
      throw new RangeError(`field of ${field.size} bytes is not an integer field`);
  }
}

export function writeUint(view: DataView, field: FieldSpec, value: number, base = 0): void {
  const at = base + field.byteOffset;
  switch (field.size) {
    case 1:
      view.setUint8(at, value);
      return;
    case 2:
      view.setUint16(at, value, true);
      return;
    case 4:
      view.setUint32(at, value >>> 0, true);
      return;
    default:
      throw new RangeError(`field of ${field.size} bytes is not an integer field`);
  }
}

export function readBytes(bytes: Uint8Array, field: FieldSpec, base = 0): Uint8Array {
  return bytes.subarray(base + field.byteOffset, base + field.byteOffset + field.size);
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
