import type { BlockDevice, BlockReader } from '../device/types.js';

/** The kind of partition table. */
export type PartitionScheme = 'mbr' | 'gpt';

/** One partition as the table describes it (the extended container of MBR is not one). */
export interface Partition {
  /** Partition number as Linux names it: 1-4 primary, 5+ logical (MBR); 1-based entry index (GPT). */
  number: number;
  /** 'primary' or 'logical' for MBR, 'gpt' for GPT. The extended container is not listed: see `PartitionTable.extended`. */
  kind: 'primary' | 'logical' | 'gpt';
  firstLba: number;
  sectorCount: number;
  byteOffset: number;
  size: number;
  /** MBR: type byte as '0x0c'; GPT: type GUID, lower case. */
  type: string;
  /** Human name of the type where known ('W95 FAT32 (LBA)', 'Linux filesystem', 'EFI System'). */
  typeName?: string;
  /** GPT partition name (UTF-16LE on disk). */
  name?: string;
  /** PARTUUID as Linux shows it: GPT unique GUID, or `${diskId}-${number as 2 hex digits}` for MBR. */
  partUuid: string;
  /** GPT Attributes as 16 hex digits with 0x (bit 0 required, bit 2 legacy BIOS bootable, 48-63 type-specific). */
  attributes?: string;
  /** MBR boot flag (0x80). */
  bootable?: boolean;
  /** Logical MBR partitions: LBA of the Extended Boot Record that describes this partition. */
  ebrLba?: number;
}

/** The extended partition of an MBR disk, the container of the logical partitions. */
export interface ExtendedPartition {
  /** Primary slot number, 1-4. */
  number: number;
  firstLba: number;
  sectorCount: number;
  /** '0x05', '0x0f' or '0x85'. */
  type: string;
}

/** A partition table as read from an image, MBR or GPT. */
export interface PartitionTable {
  scheme: PartitionScheme;
  sectorSize: number;
  /** MBR: 8 hex digits of the disk identifier; GPT: disk GUID, lower case. */
  diskId: string;
  partitions: Partition[];
  /** Non-fatal findings, e.g. "primary GPT header damaged, using the backup". */
  warnings: string[];
  /** Size of the image in logical sectors (whole sectors only). */
  sectorCountTotal?: number;
  /** MBR only: the extended partition, when there is one. */
  extended?: ExtendedPartition;
  /** GPT only: the area partitions may occupy, inclusive LBAs (from the header used). */
  firstUsableLba?: number;
  /** Last LBA partitions may occupy (GPT only, inclusive). */
  lastUsableLba?: number;
}

/** Options of `readPartitionTable`. */
export interface ReadPartitionTableOptions {
  /** Logical sector size; detected when absent (GPT signature at 512 or 4096; MBR layout checks). */
  sectorSize?: 512 | 4096;
}

export type { BlockDevice, BlockReader };
