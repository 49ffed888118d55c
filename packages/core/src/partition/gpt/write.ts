import { PiimgError } from '../../errors.js';
import type { BlockDevice } from '../../device/types.js';
import { crc32 } from '../crc32.js';
import { guidToBytes } from '../guid.js';
import { assertInside, assertNoOverlap } from '../ranges.js';
import type { Partition } from '../types.js';
import { MBR_ENTRY, MBR_MAX_LBA, MBR_SIZE_BYTES, MBR_TYPE, mbrEntryByteOffset } from '../mbr/layout.js';
import { decodeMbrEntries, hasBootSignature, isUsedEntry } from '../mbr/read.js';
import { GPT_ENTRY, GPT_HEADER } from './layout.js';
import { gptHeaderCrc, type GptState } from './read.js';

export interface GptChange {
  diskGuid?: string;
  /** New size of one partition; its start stays. */
  resize?: { partition: Partition; sectorCount: number };
}

/** Where the copies go when written: the backup always at the last LBA, as libfdisk places it. */
export interface GptPlacement {
  primaryEntriesLba: number;
  backupLba: number;
  backupEntriesLba: number;
  lastUsableLba: number;
}

export function gptPlacement(state: GptState): GptPlacement {
  const { used, totalSectors, sectorSize } = state;
  const arraySectors = Math.ceil(used.entries.length / sectorSize);
  const backupLba = totalSectors - 1;
  const backupEntriesLba = backupLba - arraySectors;
  const primaryEntriesLba = state.primary.ok ? state.primary.header.partitionEntryLba : 2;
  // An image that grew (or a backup that was not at the end) gains the space
  // between the old and the new backup, as libfdisk's gpt_fix_alternative_lba does.
  const lastUsableLba = backupEntriesLba - 1;
  if (primaryEntriesLba + arraySectors > used.firstUsableLba || lastUsableLba < used.firstUsableLba) {
    throw new PiimgError('E_BAD_GPT', 'the GPT entry arrays would overlap the usable area; refusing to write', {
      primaryEntriesLba,
      backupEntriesLba,
      firstUsableLba: used.firstUsableLba,
    });
  }
  return { primaryEntriesLba, backupLba, backupEntriesLba, lastUsableLba };
}

/**
 * Writes both GPT copies from the header the table was read from, with the
 * change applied and every CRC recomputed. The backup goes to the last LBA
 * (a damaged or misplaced copy is rebuilt there); partitions reaching into
 * that area make this refuse, before anything is written.
 * Order: backup entries, backup header, primary entries, primary header, so
 * an interruption at any point leaves at least one self-consistent copy.
 */
export function writeGpt(device: BlockDevice, state: GptState, change: GptChange): void {
  const { sectorSize, used } = state;
  const place = gptPlacement(state);
  const entries = change.resize ? resizedEntries(state, place, change.resize.partition, change.resize.sectorCount) : used.entries;
  const effective = state.table.partitions.map((p) => ({
    number: p.number,
    firstLba: p.firstLba,
    sectorCount: p.number === change.resize?.partition.number ? change.resize.sectorCount : p.sectorCount,
  }));
  for (const p of effective) {
    const lastLba = p.firstLba + p.sectorCount - 1;
    if (lastLba > place.lastUsableLba) {
      throw new PiimgError(
        'E_PARTITION_OUT_OF_RANGE',
        `partition ${p.number} ends at LBA ${lastLba}, where the backup GPT must go (usable area ends at ${place.lastUsableLba})`,
        { partition: p.number, lastLba, lastUsableLba: place.lastUsableLba },
      );
    }
  }
  const entriesCrc = crc32(entries);
  const diskGuidBytes = change.diskGuid === undefined ? undefined : guidToBytes(change.diskGuid);
  const header = (myLba: number, alternateLba: number, entriesLba: number): Uint8Array => {
    const sector = new Uint8Array(sectorSize);
    sector.set(used.bytes, 0);
    const view = new DataView(sector.buffer, 0, sectorSize);
    view.setBigUint64(GPT_HEADER.myLba.byteOffset, BigInt(myLba), true);
    view.setBigUint64(GPT_HEADER.alternateLba.byteOffset, BigInt(alternateLba), true);
    view.setBigUint64(GPT_HEADER.lastUsableLba.byteOffset, BigInt(place.lastUsableLba), true);
    view.setBigUint64(GPT_HEADER.partitionEntryLba.byteOffset, BigInt(entriesLba), true);
    if (diskGuidBytes) sector.set(diskGuidBytes, GPT_HEADER.diskGuid.byteOffset);
    view.setUint32(GPT_HEADER.partitionEntryArrayCrc32.byteOffset, entriesCrc, true);
    view.setUint32(GPT_HEADER.headerCrc32.byteOffset, gptHeaderCrc(sector, used.headerSize), true);
    return sector;
  };
  device.write(place.backupEntriesLba * sectorSize, entries);
  device.write(place.backupLba * sectorSize, header(place.backupLba, 1, place.backupEntriesLba));
  device.write(place.primaryEntriesLba * sectorSize, entries);
  device.write(1 * sectorSize, header(1, place.backupLba, place.primaryEntriesLba));
  // A backup left behind by a grown image would be found by scanners inside
  // the usable area: wipe its header.
  // Not when a partition already held that sector before this write (possible
  // only with copies that disagree): it may be data.
  if (state.backup.ok && state.backup.header.myLba !== place.backupLba) {
    const oldBackupLba = state.backup.header.myLba;
    const covered = state.table.partitions.some((p) => oldBackupLba >= p.firstLba && oldBackupLba < p.firstLba + p.sectorCount);
    if (!covered) device.write(oldBackupLba * sectorSize, new Uint8Array(sectorSize));
  }
  fixProtectiveMbr(device, state.totalSectors);
  device.flush();
}

/**
 * The 0xEE entry of a protective MBR covers LBA 1 to the end of the disk,
 * capped at 2^32 - 1 (UEFI 2.10 §5.2.3). Fixed only when it is the sole
 * entry: a hybrid MBR is left as its author made it.
 */
function fixProtectiveMbr(device: BlockDevice, totalSectors: number): void {
  const sector0 = device.read(0, MBR_SIZE_BYTES);
  if (!hasBootSignature(sector0)) return;
  const entries = decodeMbrEntries(sector0);
  const used = entries.filter(isUsedEntry);
  const protective = used[0];
  if (used.length !== 1 || protective?.type !== MBR_TYPE.gptProtective || protective.startLba !== 1) return;
  const wanted = Math.min(totalSectors - 1, MBR_MAX_LBA);
  if (protective.sectorCount === wanted) return;
  const field = new Uint8Array(4);
  new DataView(field.buffer, 0, 4).setUint32(0, wanted, true);
  device.write(mbrEntryByteOffset(protective.index) + MBR_ENTRY.sectorCount.byteOffset, field);
}

/** Entry array with EndingLBA of `target` changed; checks the usable area and overlaps first. */
function resizedEntries(state: GptState, place: GptPlacement, target: Partition, sectorCount: number): Uint8Array {
  const { used, table } = state;
  const resized = { label: `partition ${target.number}`, firstLba: target.firstLba, sectorCount };
  assertInside(resized, used.firstUsableLba, place.lastUsableLba + 1, 'the usable area of the GPT');
  assertNoOverlap([
    resized,
    ...table.partitions.filter((p) => p.number !== target.number).map((p) => ({ label: `partition ${p.number}`, firstLba: p.firstLba, sectorCount: p.sectorCount })),
  ]);
  const entries = used.entries.slice();
  const view = new DataView(entries.buffer, 0, entries.length);
  const base = (target.number - 1) * used.sizeOfPartitionEntry;
  view.setBigUint64(base + GPT_ENTRY.endingLba.byteOffset, BigInt(target.firstLba + sectorCount - 1), true);
  return entries;
}
