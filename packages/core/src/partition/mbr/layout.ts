import type { FieldLayout } from '../layout-types.js';

/**
 * The Master Boot Record and the Extended Boot Records of the extended
 * partition share this 512-byte layout. Field names follow Linux
 * (block/partitions/msdos.c, include/linux/msdos_partition.h).
 * Ref: "Master boot record", classical generic MBR; the disk signature at
 * 0x1B8 is the one Windows and Linux use for PARTUUID.
 */
export const MBR_SIZE_BYTES = 512;

export const MBR = {
  bootCode: { name: 'boot_code', byteOffset: 0x000, length: 440 },
  diskSignature: { name: 'disk_signature', byteOffset: 0x1b8, length: 4 }, // LE32, PARTUUID prefix
  reserved: { name: 'reserved', byteOffset: 0x1bc, length: 2 }, // 0x5A5A marks copy-protected, else 0
  partitionTable: { name: 'partition_table', byteOffset: 0x1be, length: 64 }, // 4 x msdos_partition
  signature: { name: 'boot_signature', byteOffset: 0x1fe, length: 2 }, // 0x55 0xAA
} as const satisfies Record<string, FieldLayout>;

export const MBR_ENTRY_COUNT = 4;
export const MBR_ENTRY_SIZE_BYTES = 16;
export const MBR_SIGNATURE = [0x55, 0xaa] as const;

/** struct msdos_partition, 16 bytes, little-endian. */
export const MBR_ENTRY = {
  bootIndicator: { name: 'boot_ind', byteOffset: 0x00, length: 1 }, // 0x80 = active, 0x00 = inactive
  startHead: { name: 'head', byteOffset: 0x01, length: 1 },
  startSector: { name: 'sector', byteOffset: 0x02, length: 1 }, // bits 0-5 sector, 6-7 cylinder bits 8-9
  startCylinder: { name: 'cyl', byteOffset: 0x03, length: 1 },
  type: { name: 'sys_ind', byteOffset: 0x04, length: 1 },
  endHead: { name: 'end_head', byteOffset: 0x05, length: 1 },
  endSector: { name: 'end_sector', byteOffset: 0x06, length: 1 },
  endCylinder: { name: 'end_cyl', byteOffset: 0x07, length: 1 },
  startLba: { name: 'start_sect', byteOffset: 0x08, length: 4 }, // LE32; EBRs: relative, see mbr/read.ts
  sectorCount: { name: 'nr_sects', byteOffset: 0x0c, length: 4 }, // LE32
} as const satisfies Record<string, FieldLayout>;

export const BOOT_INDICATOR_ACTIVE = 0x80;

/** Partition type bytes with a structural meaning. */
export const MBR_TYPE = {
  empty: 0x00,
  extendedChs: 0x05,
  extendedLba: 0x0f,
  linuxExtended: 0x85,
  gptProtective: 0xee,
} as const;

export function isExtendedType(type: number): boolean {
  return type === MBR_TYPE.extendedChs || type === MBR_TYPE.extendedLba || type === MBR_TYPE.linuxExtended;
}

/** Byte offset of primary entry `index` (0-3) within the sector. */
export function mbrEntryByteOffset(index: number): number {
  return MBR.partitionTable.byteOffset + index * MBR_ENTRY_SIZE_BYTES;
}

/** A 32-bit LBA field cannot describe more sectors than this. */
export const MBR_MAX_LBA = 0xffff_ffff;
