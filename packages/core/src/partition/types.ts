import type { BlockDevice, BlockReader } from '../device/types.js';

export type PartitionScheme = 'mbr' | 'gpt';

export interface Partition {
  /** Partition number as Linux names it: 1-4 primary, 5+ logical (MBR); 1-based entry index (GPT). */
  number: number;
  /** 'primary' | 'extended' | 'logical' for MBR, 'gpt' for GPT. Extended containers are not listed. */
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
  /** MBR boot flag (0x80). */
  bootable?: boolean;
}

export interface PartitionTable {
  scheme: PartitionScheme;
  sectorSize: number;
  /** MBR: 8 hex digits of the disk identifier; GPT: disk GUID, lower case. */
  diskId: string;
  partitions: Partition[];
  /** Non-fatal findings, e.g. "primary GPT header damaged, using the backup". */
  warnings: string[];
}

export interface ReadPartitionTableOptions {
  /** Logical sector size; detected when absent (GPT signature at 512 or 4096; MBR layout checks). */
  sectorSize?: 512 | 4096;
}

export type { BlockDevice, BlockReader };
