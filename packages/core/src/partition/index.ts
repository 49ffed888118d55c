import { PiimgError } from '../errors.js';
import type { BlockDevice, BlockReader } from '../device/types.js';
import { hasGptSignature, readGpt, type GptState } from './gpt/read.js';
import { writeGpt } from './gpt/write.js';
import { guidToBytes, randomGuid } from './guid.js';
import { MBR_SIZE_BYTES, MBR_TYPE, isExtendedType } from './mbr/layout.js';
import { decodeMbrEntries, hasBootSignature, isUsedEntry, readMbr, type MbrEntry } from './mbr/read.js';
import { assertMbrDiskId, resizeMbrPartition, writeMbrDiskId } from './mbr/write.js';
import { hasExtMagic, isFatVolumeStart, probeFilesystem, PROBE_LENGTH_BYTES } from './probe.js';
import type { PartitionScheme, PartitionTable, ReadPartitionTableOptions } from './types.js';

export type { ExtendedPartition, Partition, PartitionScheme, PartitionTable, ReadPartitionTableOptions } from './types.js';
export { crc32 } from './crc32.js';
export { guidFromBytes, guidToBytes, isGuid, randomGuid } from './guid.js';
export { GPT_TYPE, GPT_TYPE_NAMES, MBR_TYPE_NAMES, gptTypeName, mbrTypeName } from './type-names.js';
export { mbrPartUuid } from './mbr/read.js';

/**
 * Error codes: E_NO_PARTITION_TABLE (empty, too small, no signature, a bare
 * filesystem), E_BAD_MBR, E_BAD_GPT (both GPT copies unusable), E_EBR_LOOP,
 * E_PARTITION_OUT_OF_RANGE, E_PARTITION_OVERLAP; for writes also
 * E_INVALID_ARGUMENT and E_PARTITION_NOT_FOUND.
 */
const SECTOR_SIZES = [512, 4096] as const;

/**
 * Reads the partition table of an image.
 *
 * Detection, by signature only (never "try and catch"):
 * 1. "EFI PART" at byte 512 or 4096 (LBA 1 for either sector size): GPT.
 * 2. A protective MBR (type 0xEE) without a primary header: GPT from the
 *    backup header at the last LBA, or `E_BAD_GPT`.
 * 3. 0x55AA at 510: MBR. Otherwise `E_NO_PARTITION_TABLE`.
 *
 * MBR sector size: an MBR does not record it. 512 is assumed unless a
 * filesystem signature (FAT boot sector with a sane BPB, or the ext2/3/4
 * magic 0xEF53 at +0x438) is found at the start of some primary partition
 * when its LBA is read in 4096-byte sectors and at none when read in
 * 512-byte sectors, and every partition fits in the image at 4096.
 * Pass `options.sectorSize` to skip detection.
 */
export function readPartitionTable(reader: BlockReader, options: ReadPartitionTableOptions = {}): PartitionTable {
  if (options.sectorSize !== undefined && !SECTOR_SIZES.includes(options.sectorSize)) {
    throw new PiimgError('E_INVALID_ARGUMENT', `sector size ${String(options.sectorSize)} is not 512 or 4096`, { sectorSize: options.sectorSize });
  }
  if (reader.size < MBR_SIZE_BYTES) {
    throw new PiimgError(
      'E_NO_PARTITION_TABLE',
      reader.size === 0 ? 'the image is empty (0 bytes)' : `the image is ${reader.size} bytes, too small to hold a partition table`,
      { size: reader.size },
    );
  }
  const candidates = options.sectorSize === undefined ? SECTOR_SIZES : [options.sectorSize];
  const sector0 = reader.read(0, MBR_SIZE_BYTES);
  const mbrSigned = hasBootSignature(sector0);
  const entries = mbrSigned ? decodeMbrEntries(sector0) : [];

  for (const sectorSize of candidates) {
    if (reader.size >= 2 * sectorSize && hasGptSignature(reader.read(sectorSize, 8))) {
      return readGptTable(reader, sectorSize, mbrSigned, entries);
    }
  }
  if (entries.some((e) => e.type === MBR_TYPE.gptProtective && e.sectorCount !== 0)) {
    for (const sectorSize of candidates) {
      const lastLba = Math.floor(reader.size / sectorSize) - 1;
      if (lastLba >= 2 && hasGptSignature(reader.read(lastLba * sectorSize, 8))) {
        return readGptTable(reader, sectorSize, mbrSigned, entries);
      }
    }
    throw new PiimgError('E_BAD_GPT', 'the MBR is a GPT protective MBR but no GPT header was found at LBA 1 or at the last LBA', {});
  }
  if (!mbrSigned) {
    const head = reader.read(0, Math.min(PROBE_LENGTH_BYTES, reader.size));
    const what = hasExtMagic(head) ? ': the image starts with an ext2/3/4 filesystem (a partition image, not a disk image)' : '';
    throw new PiimgError('E_NO_PARTITION_TABLE', `no partition table: sector 0 has no 0x55AA signature and there is no GPT header${what}`, {
      size: reader.size,
    });
  }
  if (isFatVolumeStart(sector0) && (!entries.some(isUsedEntry) || entries.some((e) => e.bootIndicator !== 0 && e.bootIndicator !== 0x80))) {
    // Linux msdos.c makes the same call: a FAT boot sector is not a partition table.
    throw new PiimgError('E_NO_PARTITION_TABLE', 'no partition table: sector 0 is a FAT boot sector (a filesystem without partitions)', {
      size: reader.size,
    });
  }
  const sectorSize = options.sectorSize ?? detectMbrSectorSize(reader, entries);
  return readMbr(reader, sector0, sectorSize);
}

function readGptTable(reader: BlockReader, sectorSize: number, mbrSigned: boolean, entries: MbrEntry[]): PartitionTable {
  return loadGpt(reader, sectorSize, mbrSigned, entries).table;
}

function loadGpt(reader: BlockReader, sectorSize: number, mbrSigned: boolean, entries: MbrEntry[]): GptState {
  const warnings: string[] = [];
  const used = entries.filter(isUsedEntry);
  if (!mbrSigned || !used.some((e) => e.type === MBR_TYPE.gptProtective)) {
    warnings.push('the GPT has no protective MBR (no 0xEE entry in sector 0); tools that only know MBR may overwrite it');
  } else if (used.some((e) => e.type !== MBR_TYPE.gptProtective)) {
    warnings.push('hybrid MBR: sector 0 also describes partitions; the GPT is used and the MBR entries are ignored');
  }
  return readGpt(reader, sectorSize, warnings);
}

function detectMbrSectorSize(reader: BlockReader, entries: MbrEntry[]): 512 | 4096 {
  const primaries = entries.filter((e) => isUsedEntry(e) && !isExtendedType(e.type) && e.startLba > 0);
  if (primaries.length === 0) return 512;
  const fitsAt4096 = entries
    .filter(isUsedEntry)
    .every((e) => (e.startLba + e.sectorCount) * 4096 <= reader.size);
  if (!fitsAt4096) return 512;
  const hitsAt512 = primaries.filter((e) => probeFilesystem(reader, e.startLba * 512) !== undefined).length;
  const hitsAt4096 = primaries.filter((e) => probeFilesystem(reader, e.startLba * 4096) !== undefined).length;
  return hitsAt4096 > 0 && hitsAt512 === 0 ? 4096 : 512;
}

/** Re-reads the device with the table's sector size and checks it is still the same kind of table. */
function reread(device: BlockReader, table: PartitionTable): PartitionTable {
  const current = readPartitionTable(device, { sectorSize: table.sectorSize as 512 | 4096 });
  if (current.scheme !== table.scheme) {
    throw new PiimgError('E_INVALID_ARGUMENT', `the table passed is ${table.scheme} but the device now holds ${current.scheme}`, {
      expected: table.scheme,
      actual: current.scheme,
    });
  }
  return current;
}

function gptState(device: BlockReader, table: PartitionTable): GptState {
  const sector0 = device.read(0, MBR_SIZE_BYTES);
  const mbrSigned = hasBootSignature(sector0);
  return loadGpt(device, table.sectorSize, mbrSigned, mbrSigned ? decodeMbrEntries(sector0) : []);
}

/**
 * Sets the MBR disk identifier (8 hex digits, `0x` prefix allowed, as sfdisk prints it) or the GPT disk GUID. For GPT
 * both headers are rewritten with fresh CRCs. MBR PARTUUIDs derive from the
 * disk identifier, so `cmdline.txt` and `/etc/fstab` must follow.
 * Returns the table as read back from the device.
 */
export function setDiskId(device: BlockDevice, table: PartitionTable, diskId: string): PartitionTable {
  const current = reread(device, table);
  if (current.scheme === 'mbr') {
    const hex = diskId.replace(/^0x/i, '');
    assertMbrDiskId(hex);
    writeMbrDiskId(device, hex.toLowerCase());
    device.flush();
  } else {
    guidToBytes(diskId); // validates before anything is written
    writeGpt(device, gptState(device, current), { diskGuid: diskId.toLowerCase() });
  }
  return readPartitionTable(device, { sectorSize: current.sectorSize as 512 | 4096 });
}

/**
 * Changes the size of partition `number` to `sectorCount` logical sectors;
 * its start stays. Refuses (`E_PARTITION_OUT_OF_RANGE`, `E_PARTITION_OVERLAP`)
 * before writing anything. Only the table changes, not the filesystem inside.
 */
export function resizePartition(device: BlockDevice, table: PartitionTable, number: number, sectorCount: number): PartitionTable {
  if (!Number.isSafeInteger(sectorCount) || sectorCount < 1) {
    throw new PiimgError('E_INVALID_ARGUMENT', `sector count ${sectorCount} must be a positive integer`, { sectorCount });
  }
  const current = reread(device, table);
  const target = current.partitions.find((p) => p.number === number);
  if (!target) {
    throw new PiimgError('E_PARTITION_NOT_FOUND', `there is no partition ${number} (have ${current.partitions.map((p) => p.number).join(', ') || 'none'})`, {
      partition: number,
    });
  }
  if (current.scheme === 'mbr') {
    resizeMbrPartition(device, current, target, sectorCount);
    device.flush();
  } else {
    writeGpt(device, gptState(device, current), { resize: { partition: target, sectorCount } });
  }
  return readPartitionTable(device, { sectorSize: current.sectorSize as 512 | 4096 });
}

/** A random disk identifier: 8 hex digits, never 0 (which tools treat as "none"), for MBR; a v4 GUID for GPT. */
export function randomDiskId(scheme: PartitionScheme): string {
  if (scheme === 'gpt') return randomGuid();
  const value = new Uint32Array(1);
  do globalThis.crypto.getRandomValues(value);
  while (value[0] === 0);
  return value[0]!.toString(16).padStart(8, '0');
}
