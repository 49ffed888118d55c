import type { FieldLayout } from '../layout-types.js';

/**
 * GUID Partition Table header and entry. Names follow the UEFI
 * specification. Ref: UEFI 2.10 §5.3.2 "GPT Header", §5.3.3 "GPT Partition
 * Entry Array". All integers little-endian.
 */
export const GPT_HEADER = {
  signature: { name: 'Signature', byteOffset: 0x00, length: 8 }, // "EFI PART"
  revision: { name: 'Revision', byteOffset: 0x08, length: 4 }, // 0x00010000
  headerSize: { name: 'HeaderSize', byteOffset: 0x0c, length: 4 }, // 92 .. logical block size
  headerCrc32: { name: 'HeaderCRC32', byteOffset: 0x10, length: 4 }, // over HeaderSize bytes, this field zero
  reserved: { name: 'Reserved', byteOffset: 0x14, length: 4 },
  myLba: { name: 'MyLBA', byteOffset: 0x18, length: 8 },
  alternateLba: { name: 'AlternateLBA', byteOffset: 0x20, length: 8 },
  firstUsableLba: { name: 'FirstUsableLBA', byteOffset: 0x28, length: 8 },
  lastUsableLba: { name: 'LastUsableLBA', byteOffset: 0x30, length: 8 },
  diskGuid: { name: 'DiskGUID', byteOffset: 0x38, length: 16 },
  partitionEntryLba: { name: 'PartitionEntryLBA', byteOffset: 0x48, length: 8 },
  numberOfPartitionEntries: { name: 'NumberOfPartitionEntries', byteOffset: 0x50, length: 4 },
  sizeOfPartitionEntry: { name: 'SizeOfPartitionEntry', byteOffset: 0x54, length: 4 }, // 128 x 2^n
  partitionEntryArrayCrc32: { name: 'PartitionEntryArrayCRC32', byteOffset: 0x58, length: 4 },
} as const satisfies Record<string, FieldLayout>;

export const GPT_HEADER_SIZE_BYTES = 92;
export const GPT_SIGNATURE = 'EFI PART';
export const GPT_REVISION_1_0 = 0x0001_0000;

export const GPT_ENTRY = {
  partitionTypeGuid: { name: 'PartitionTypeGUID', byteOffset: 0x00, length: 16 }, // all zero = unused entry
  uniquePartitionGuid: { name: 'UniquePartitionGUID', byteOffset: 0x10, length: 16 },
  startingLba: { name: 'StartingLBA', byteOffset: 0x20, length: 8 },
  endingLba: { name: 'EndingLBA', byteOffset: 0x28, length: 8 }, // inclusive
  attributes: { name: 'Attributes', byteOffset: 0x30, length: 8 },
  partitionName: { name: 'PartitionName', byteOffset: 0x38, length: 72 }, // 36 UTF-16LE code units, NUL-padded
} as const satisfies Record<string, FieldLayout>;

export const GPT_ENTRY_MIN_SIZE_BYTES = 128;
export const GPT_NAME_MAX_CODE_UNITS = 36;

/**
 * Limits for values read from an image. The spec reserves at least 16 KiB
 * for the entry array (128 entries of 128 bytes); no real tool writes more
 * than a few thousand entries, and an entry larger than 1 KiB has never been
 * seen. Anything beyond these is treated as damage, not as a table.
 */
export const GPT_MAX_ENTRY_SIZE_BYTES = 1024;
export const GPT_MAX_ENTRY_ARRAY_BYTES = 4 * 1024 * 1024;
