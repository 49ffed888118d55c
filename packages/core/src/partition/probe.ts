import type { BlockReader } from '../device/types.js';

/** Offset of s_magic: superblock at 1024, s_magic at 0x38 in it. Ref: ext4 wiki "Super Block". */
export const EXT_MAGIC_BYTE_OFFSET = 0x438;
const EXT_MAGIC = 0xef53;

/** Bytes needed from the start of a filesystem to tell FAT and ext apart. */
export const PROBE_LENGTH_BYTES = EXT_MAGIC_BYTE_OFFSET + 2;

/**
 * A FAT boot sector: 0x55AA at 510, BPB_BytsPerSec 512..4096 and a power
 * of two, BPB_SecPerClus a power of two, BPB_NumFATs 1 or 2.
 * Ref: Microsoft FAT spec §3.1 "Boot Sector and BPB".
 */
export function isFatBootSector(bytes: Uint8Array): boolean {
  if (bytes.length < 512) return false;
  const bytesPerSector = bytes[0x0b]! | (bytes[0x0c]! << 8);
  const sectorsPerCluster = bytes[0x0d]!;
  const numberOfFats = bytes[0x10]!;
  return (
    bytes[510] === 0x55 &&
    bytes[511] === 0xaa &&
    [512, 1024, 2048, 4096].includes(bytesPerSector) &&
    sectorsPerCluster !== 0 &&
    (sectorsPerCluster & (sectorsPerCluster - 1)) === 0 &&
    (numberOfFats === 1 || numberOfFats === 2)
  );
}

/** A FAT boot sector that also starts with the x86 jump BS_jmpBoot (EB xx 90 or E9 xx xx), as every formatter writes. */
export function isFatVolumeStart(bytes: Uint8Array): boolean {
  const jump = (bytes[0] === 0xeb && bytes[2] === 0x90) || bytes[0] === 0xe9;
  return jump && isFatBootSector(bytes);
}

export function hasExtMagic(bytes: Uint8Array): boolean {
  return bytes.length >= PROBE_LENGTH_BYTES && (bytes[EXT_MAGIC_BYTE_OFFSET]! | (bytes[EXT_MAGIC_BYTE_OFFSET + 1]! << 8)) === EXT_MAGIC;
}

/** Which filesystem starts at `byteOffset`, if a FAT or ext one does. Reads at most PROBE_LENGTH_BYTES. */
export function probeFilesystem(reader: BlockReader, byteOffset: number): 'fat' | 'ext' | undefined {
  if (byteOffset < 0 || byteOffset + 512 > reader.size) return undefined;
  const head = reader.read(byteOffset, Math.min(PROBE_LENGTH_BYTES, reader.size - byteOffset));
  if (hasExtMagic(head)) return 'ext';
  if (isFatBootSector(head)) return 'fat';
  return undefined;
}
