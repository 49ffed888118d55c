import { PiimgError } from '../../errors.js';
import type { BlockReader } from '../../device/types.js';
import { assertInside, assertNoOverlap, type SectorRun } from '../ranges.js';
import { formatMbrType, mbrTypeName } from '../type-names.js';
import type { ExtendedPartition, Partition, PartitionTable } from '../types.js';
import {
  BOOT_INDICATOR_ACTIVE,
  MBR,
  MBR_ENTRY,
  MBR_ENTRY_COUNT,
  MBR_SIZE_BYTES,
  MBR_TYPE,
  isExtendedType,
  mbrEntryByteOffset,
} from './layout.js';

/** One decoded 16-byte entry; `startLba` as stored (relative inside EBRs). */
export interface MbrEntry {
  index: number;
  bootIndicator: number;
  type: number;
  startLba: number;
  sectorCount: number;
}

/**
 * Linux allows far fewer partitions per disk (DISK_MAX_PARTS = 256); the
 * higher cap only bounds the work a hostile chain can cause.
 */
export const MAX_LOGICAL_PARTITIONS = 4096;

export function hasBootSignature(sector: Uint8Array): boolean {
  return sector.length >= MBR_SIZE_BYTES && sector[MBR.signature.byteOffset] === 0x55 && sector[MBR.signature.byteOffset + 1] === 0xaa;
}

export function decodeMbrEntries(sector: Uint8Array): MbrEntry[] {
  const view = new DataView(sector.buffer, sector.byteOffset, MBR_SIZE_BYTES);
  const entries: MbrEntry[] = [];
  for (let index = 0; index < MBR_ENTRY_COUNT; index++) {
    const base = mbrEntryByteOffset(index);
    entries.push({
      index,
      bootIndicator: view.getUint8(base + MBR_ENTRY.bootIndicator.byteOffset),
      type: view.getUint8(base + MBR_ENTRY.type.byteOffset),
      startLba: view.getUint32(base + MBR_ENTRY.startLba.byteOffset, true),
      sectorCount: view.getUint32(base + MBR_ENTRY.sectorCount.byteOffset, true),
    });
  }
  return entries;
}

/** An entry describes something only with a type and a size (fdisk shows type 0 as "Empty"). */
export function isUsedEntry(entry: MbrEntry): boolean {
  return entry.type !== MBR_TYPE.empty && entry.sectorCount !== 0;
}

export function readDiskSignature(sector: Uint8Array): string {
  const view = new DataView(sector.buffer, sector.byteOffset, MBR_SIZE_BYTES);
  return view.getUint32(MBR.diskSignature.byteOffset, true).toString(16).padStart(8, '0');
}

/** PARTUUID of an MBR partition as the kernel prints it: `%08x-%02x` (block/partitions/msdos.c). */
export function mbrPartUuid(diskId: string, number: number): string {
  return `${diskId}-${number.toString(16).padStart(2, '0')}`;
}

/**
 * Decodes an MBR whose 0x55AA signature the caller has checked.
 * Rules (after Linux block/partitions/msdos.c and libfdisk dos.c):
 * - a boot indicator other than 0x00/0x80 means this sector is not a
 *   partition table (garbage, or a FAT boot sector of a "superfloppy");
 * - at most one extended partition; its chain of EBRs is followed with
 *   loop detection and a length cap; each EBR holds the logical partition
 *   in entry 0 (start relative to that EBR) and the link to the next EBR in
 *   entry 1 (start relative to the extended partition);
 * - every partition must fit in the image, logical ones in their extended
 *   partition, and none may overlap.
 */
export function readMbr(reader: BlockReader, sector0: Uint8Array, sectorSize: number): PartitionTable {
  const warnings: string[] = [];
  const totalSectors = Math.floor(reader.size / sectorSize);
  const entries = decodeMbrEntries(sector0);
  for (const entry of entries) {
    if (entry.bootIndicator !== 0 && entry.bootIndicator !== BOOT_INDICATOR_ACTIVE) {
      throw new PiimgError(
        'E_BAD_MBR',
        `MBR entry ${entry.index + 1} has boot indicator 0x${entry.bootIndicator.toString(16)} (only 0x00 or 0x80 are valid): sector 0 is not a partition table`,
        { entry: entry.index + 1, bootIndicator: entry.bootIndicator },
      );
    }
  }
  const diskId = readDiskSignature(sector0);
  const partitions: Partition[] = [];
  const primaryRuns: SectorRun[] = [];
  let extended: ExtendedPartition | undefined;

  for (const entry of entries) {
    if (!isUsedEntry(entry)) continue;
    const number = entry.index + 1;
    const run: SectorRun = { label: `partition ${number}`, firstLba: entry.startLba, sectorCount: entry.sectorCount };
    if (entry.startLba === 0) {
      throw new PiimgError('E_BAD_MBR', `partition ${number} starts at LBA 0, over the MBR itself`, { partition: number });
    }
    assertInside(run, 1, totalSectors, `the image (${totalSectors} sectors of ${sectorSize} bytes)`);
    primaryRuns.push(run);
    if (isExtendedType(entry.type)) {
      if (extended) {
        throw new PiimgError('E_BAD_MBR', `partitions ${extended.number} and ${number} are both extended partitions; only one is allowed`, {
          partition: number,
        });
      }
      extended = { number, firstLba: entry.startLba, sectorCount: entry.sectorCount, type: formatMbrType(entry.type) };
      continue;
    }
    partitions.push(makePartition(number, 'primary', entry.startLba, entry.sectorCount, entry, diskId, sectorSize));
  }
  assertNoOverlap(primaryRuns);
  if (extended) partitions.push(...readLogicalPartitions(reader, extended, sectorSize, diskId, warnings));

  const table: PartitionTable = { scheme: 'mbr', sectorSize, diskId, partitions, warnings, sectorCountTotal: totalSectors };
  if (extended) table.extended = extended;
  return table;
}

function makePartition(
  number: number,
  kind: 'primary' | 'logical',
  firstLba: number,
  sectorCount: number,
  entry: MbrEntry,
  diskId: string,
  sectorSize: number,
): Partition {
  const partition: Partition = {
    number,
    kind,
    firstLba,
    sectorCount,
    byteOffset: firstLba * sectorSize,
    size: sectorCount * sectorSize,
    type: formatMbrType(entry.type),
    partUuid: mbrPartUuid(diskId, number),
    bootable: entry.bootIndicator === BOOT_INDICATOR_ACTIVE,
  };
  const typeName = mbrTypeName(entry.type);
  if (typeName !== undefined) partition.typeName = typeName;
  return partition;
}

/** Walks the EBR chain. Every EBR read is bounded by the extended partition and visited at most once. */
function readLogicalPartitions(
  reader: BlockReader,
  extended: ExtendedPartition,
  sectorSize: number,
  diskId: string,
  warnings: string[],
): Partition[] {
  const extendedEndLba = extended.firstLba + extended.sectorCount;
  const where = `extended partition ${extended.number}`;
  const logical: Partition[] = [];
  const runs: SectorRun[] = [];
  const visited = new Set<number>();
  let ebrLba = extended.firstLba;
  for (let links = 0; ; links++) {
    if (visited.has(ebrLba)) {
      throw new PiimgError('E_EBR_LOOP', `the EBR chain of ${where} loops back to LBA ${ebrLba} after ${links} links`, {
        ebrLba,
        links,
      });
    }
    if (links >= MAX_LOGICAL_PARTITIONS) {
      throw new PiimgError('E_BAD_MBR', `the EBR chain of ${where} is longer than ${MAX_LOGICAL_PARTITIONS} links`, { links });
    }
    visited.add(ebrLba);
    const ebr = reader.read(ebrLba * sectorSize, MBR_SIZE_BYTES);
    if (!hasBootSignature(ebr)) {
      // Linux stops silently here; the partitions found so far stay usable.
      warnings.push(`EBR at LBA ${ebrLba} has no 0x55AA signature; the logical partitions end there`);
      break;
    }
    const [data, link, ...rest] = decodeMbrEntries(ebr) as [MbrEntry, MbrEntry, MbrEntry, MbrEntry];
    if (rest.some(isUsedEntry)) warnings.push(`EBR at LBA ${ebrLba} uses entries 3-4, which are ignored`);
    runs.push({ label: `EBR at LBA ${ebrLba}`, firstLba: ebrLba, sectorCount: 1 });
    if (isUsedEntry(data) && !isExtendedType(data.type)) {
      const number = 5 + logical.length;
      const firstLba = ebrLba + data.startLba;
      const run: SectorRun = { label: `partition ${number}`, firstLba, sectorCount: data.sectorCount };
      assertInside(run, extended.firstLba, extendedEndLba, where);
      runs.push(run);
      const partition = makePartition(number, 'logical', firstLba, data.sectorCount, data, diskId, sectorSize);
      partition.ebrLba = ebrLba;
      logical.push(partition);
    }
    if (!isUsedEntry(link)) break;
    if (!isExtendedType(link.type)) {
      warnings.push(`EBR at LBA ${ebrLba} links with type ${formatMbrType(link.type)}, not an extended type; the chain ends there`);
      break;
    }
    const nextLba = extended.firstLba + link.startLba;
    assertInside({ label: `EBR linked from LBA ${ebrLba}`, firstLba: nextLba, sectorCount: 1 }, extended.firstLba, extendedEndLba, where);
    ebrLba = nextLba;
  }
  assertNoOverlap(runs);
  return logical;
}
