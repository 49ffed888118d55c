import { PiimgError } from '../../errors.js';
import type { BlockDevice } from '../../device/types.js';
import { assertInside, assertNoOverlap, type SectorRun } from '../ranges.js';
import type { Partition, PartitionTable } from '../types.js';
import { decodeMbrEntries, hasBootSignature } from './read.js';
import { MBR, MBR_ENTRY, MBR_ENTRY_SIZE_BYTES, MBR_MAX_LBA, MBR_SIZE_BYTES, mbrEntryByteOffset } from './layout.js';

const DISK_ID_PATTERN = /^[0-9a-f]{8}$/i;

/**
 * CHS geometry that partitioning tools assume for LBA disks: 255 heads,
 * 63 sectors per track. Addresses past cylinder 1023 are written as the
 * maximum (1023/254/63), which tells readers to use the LBA fields.
 * Ref: libfdisk dos.c dos_partition_set_chs; "Cylinder-head-sector" INT 13h limits.
 */
const HEADS = 255;
const SECTORS_PER_TRACK = 63;

export function lbaToChs(lba: number): Uint8Array {
  const sectorsPerCylinder = HEADS * SECTORS_PER_TRACK;
  let clamped = lba;
  if (Math.floor(lba / sectorsPerCylinder) > 1023) clamped = sectorsPerCylinder * 1024 - 1;
  const cylinder = Math.floor(clamped / sectorsPerCylinder);
  const head = Math.floor((clamped % sectorsPerCylinder) / SECTORS_PER_TRACK);
  const sector = (clamped % SECTORS_PER_TRACK) + 1;
  return Uint8Array.of(head, sector | ((cylinder >> 2) & 0xc0), cylinder & 0xff);
}

export function assertMbrDiskId(diskId: string): void {
  if (!DISK_ID_PATTERN.test(diskId)) {
    throw new PiimgError('E_INVALID_ARGUMENT', `MBR disk identifier "${diskId.slice(0, 64)}" must be 8 hex digits`, { diskId: diskId.slice(0, 64) });
  }
}

/** Writes the 32-bit disk signature at 0x1B8 (little-endian, as `sfdisk --disk-id` does). */
export function writeMbrDiskId(device: BlockDevice, diskId: string): void {
  assertMbrDiskId(diskId);
  const value = parseInt(diskId, 16);
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  device.write(MBR.diskSignature.byteOffset, bytes);
}

/** Rewrites nr_sects and the end CHS of entry `index` in the sector at `sectorLba`, as one 16-byte write. */
function writeEntrySize(device: BlockDevice, sectorSize: number, sectorLba: number, index: number, sectorCount: number, endLba: number): void {
  const sector = device.read(sectorLba * sectorSize, MBR_SIZE_BYTES);
  if (!hasBootSignature(sector)) {
    throw new PiimgError('E_BAD_MBR', `sector ${sectorLba} lost its 0x55AA signature; refusing to write`, { lba: sectorLba });
  }
  const entryByteOffset = mbrEntryByteOffset(index);
  const entry = sector.slice(entryByteOffset, entryByteOffset + MBR_ENTRY_SIZE_BYTES);
  entry.set(lbaToChs(endLba), MBR_ENTRY.endHead.byteOffset);
  new DataView(entry.buffer, 0, MBR_ENTRY_SIZE_BYTES).setUint32(MBR_ENTRY.sectorCount.byteOffset, sectorCount, true);
  device.write(sectorLba * sectorSize + entryByteOffset, entry);
}

/**
 * Changes the size of a primary or logical partition in place. For a
 * logical partition the EBR's data entry changes, and so does the link
 * entry of the EBR before it, whose size by convention spans the next EBR
 * through the end of its logical partition (libfdisk writes it so).
 * Growing the last logical partition past its extended partition grows
 * the extended partition too.
 */
export function resizeMbrPartition(device: BlockDevice, table: PartitionTable, target: Partition, sectorCount: number): void {
  const { sectorSize } = table;
  const totalSectors = Math.floor(device.size / sectorSize);
  if (sectorCount > MBR_MAX_LBA || target.firstLba + sectorCount > MBR_MAX_LBA + 1) {
    throw new PiimgError('E_PARTITION_OUT_OF_RANGE', `partition ${target.number} would end past the 2^32-sector limit of an MBR`, {
      partition: target.number,
      sectorCount,
    });
  }
  const resized: SectorRun = { label: `partition ${target.number}`, firstLba: target.firstLba, sectorCount };
  const endLba = target.firstLba + sectorCount - 1;
  if (target.kind === 'primary') {
    assertInside(resized, 1, totalSectors, `the image (${totalSectors} sectors of ${sectorSize} bytes)`);
    const runs: SectorRun[] = [resized];
    for (const p of table.partitions) {
      if (p.kind === 'primary' && p.number !== target.number) runs.push({ label: `partition ${p.number}`, firstLba: p.firstLba, sectorCount: p.sectorCount });
    }
    if (table.extended) runs.push({ label: `extended partition ${table.extended.number}`, firstLba: table.extended.firstLba, sectorCount: table.extended.sectorCount });
    assertNoOverlap(runs);
    writeEntrySize(device, sectorSize, 0, target.number - 1, sectorCount, endLba);
    return;
  }
  const extended = table.extended;
  if (!extended || target.ebrLba === undefined) {
    throw new PiimgError('E_BAD_MBR', `logical partition ${target.number} has no extended partition or EBR`, { partition: target.number });
  }
  const logical = table.partitions.filter((p) => p.kind === 'logical');
  const extendedEndLba = extended.firstLba + extended.sectorCount; // exclusive
  let grownExtendedCount: number | undefined;
  const isLastInExtended = logical.every((p) => p.number === target.number || (p.ebrLba ?? 0) < target.firstLba);
  if (endLba >= extendedEndLba && isLastInExtended) {
    // The last logical partition can only grow with its container, as
    // parted's resizepart grows it; the container must still fit the image
    // and miss the other primaries.
    const grown: SectorRun = { label: `extended partition ${extended.number}`, firstLba: extended.firstLba, sectorCount: endLba + 1 - extended.firstLba };
    assertInside(grown, 1, totalSectors, `the image (${totalSectors} sectors of ${sectorSize} bytes)`);
    assertNoOverlap([
      grown,
      ...table.partitions.filter((p) => p.kind === 'primary').map((p) => ({ label: `partition ${p.number}`, firstLba: p.firstLba, sectorCount: p.sectorCount })),
    ]);
    grownExtendedCount = grown.sectorCount;
  } else {
    assertInside(resized, extended.firstLba, extendedEndLba, `extended partition ${extended.number}`);
  }
  const runs: SectorRun[] = [resized];
  for (const p of logical) {
    if (p.ebrLba !== undefined) runs.push({ label: `EBR at LBA ${p.ebrLba}`, firstLba: p.ebrLba, sectorCount: 1 });
    if (p.number !== target.number) runs.push({ label: `partition ${p.number}`, firstLba: p.firstLba, sectorCount: p.sectorCount });
  }
  assertNoOverlap(runs);
  // Container first: a container larger than its contents is valid if the second write never happens.
  if (grownExtendedCount !== undefined) writeEntrySize(device, sectorSize, 0, extended.number - 1, grownExtendedCount, endLba);
  writeEntrySize(device, sectorSize, target.ebrLba, 0, sectorCount, endLba);
  const previous = logical.find((p) => p.number === target.number - 1);
  if (previous?.ebrLba !== undefined) {
    const previousEbr = device.read(previous.ebrLba * sectorSize, MBR_SIZE_BYTES);
    const link = decodeMbrEntries(previousEbr)[1]!;
    if (extended.firstLba + link.startLba === target.ebrLba) {
      writeEntrySize(device, sectorSize, previous.ebrLba, 1, endLba - target.ebrLba + 1, endLba);
    }
  }
}
