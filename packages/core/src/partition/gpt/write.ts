import { PiimgError } from '../../errors.js';
import type { BlockDevice } from '../../device/types.js';
import { crc32 } from '../crc32.js';
import { guidToBytes } from '../guid.js';
import { assertInside, assertNoOverlap } from '../ranges.js';
import type { Partition } from '../types.js';
import { GPT_ENTRY, GPT_HEADER } from './layout.js';
import { gptHeaderCrc, type GptState } from './read.js';

export interface GptChange {
  diskGuid?: string;
  entries?: Uint8Array;
}

/**
 * Writes both GPT copies from the header the table was read from, with the
 * change applied and every CRC recomputed. A damaged copy is rebuilt in its
 * standard place (entries at LBA 2 / just before the backup header).
 * Order: backup entries, backup header, primary entries, primary header, so
 * an interruption at any point leaves at least one self-consistent copy.
 */
export function writeGpt(device: BlockDevice, state: GptState, change: GptChange): void {
  const { sectorSize, totalSectors, used } = state;
  const entries = change.entries ?? used.entries;
  const arraySectors = Math.ceil(entries.length / sectorSize);
  const lastLba = totalSectors - 1;
  const primaryEntriesLba = state.primary.ok ? state.primary.header.partitionEntryLba : 2;
  const backupLba = state.backup.ok ? state.backup.header.myLba : lastLba;
  const backupEntriesLba = state.backup.ok ? state.backup.header.partitionEntryLba : backupLba - arraySectors;
  if (primaryEntriesLba + arraySectors > used.firstUsableLba || backupEntriesLba <= used.lastUsableLba || backupLba <= 1) {
    throw new PiimgError('E_BAD_GPT', 'the GPT entry arrays would overlap the usable area; refusing to write', {
      primaryEntriesLba,
      backupEntriesLba,
      firstUsableLba: used.firstUsableLba,
      lastUsableLba: used.lastUsableLba,
    });
  }
  const entriesCrc = crc32(entries);
  const diskGuidBytes = change.diskGuid === undefined ? undefined : guidToBytes(change.diskGuid);
  const header = (myLba: number, alternateLba: number, entriesLba: number): Uint8Array => {
    const sector = new Uint8Array(sectorSize);
    sector.set(used.bytes, 0);
    const view = new DataView(sector.buffer, 0, sectorSize);
    view.setBigUint64(GPT_HEADER.myLba.byteOffset, BigInt(myLba), true);
    view.setBigUint64(GPT_HEADER.alternateLba.byteOffset, BigInt(alternateLba), true);
    view.setBigUint64(GPT_HEADER.partitionEntryLba.byteOffset, BigInt(entriesLba), true);
    if (diskGuidBytes) sector.set(diskGuidBytes, GPT_HEADER.diskGuid.byteOffset);
    view.setUint32(GPT_HEADER.partitionEntryArrayCrc32.byteOffset, entriesCrc, true);
    view.setUint32(GPT_HEADER.headerCrc32.byteOffset, gptHeaderCrc(sector, used.headerSize), true);
    return sector;
  };
  device.write(backupEntriesLba * sectorSize, entries);
  device.write(backupLba * sectorSize, header(backupLba, 1, backupEntriesLba));
  device.write(primaryEntriesLba * sectorSize, entries);
  device.write(1 * sectorSize, header(1, backupLba, primaryEntriesLba));
  device.flush();
}

/** Entry array with EndingLBA of `target` changed; checks the usable area and overlaps first. */
export function resizedGptEntries(state: GptState, target: Partition, sectorCount: number): Uint8Array {
  const { used, table } = state;
  const resized = { label: `partition ${target.number}`, firstLba: target.firstLba, sectorCount };
  assertInside(resized, used.firstUsableLba, used.lastUsableLba + 1, 'the usable area of the GPT');
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
