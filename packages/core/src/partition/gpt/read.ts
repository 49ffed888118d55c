import { PiimgError } from '../../errors.js';
import type { BlockReader } from '../../device/types.js';
import { crc32 } from '../crc32.js';
import { guidFromBytes, NULL_GUID } from '../guid.js';
import { assertInside, assertNoOverlap } from '../ranges.js';
import { gptTypeName } from '../type-names.js';
import type { Partition, PartitionTable } from '../types.js';
import {
  GPT_ENTRY,
  GPT_ENTRY_MIN_SIZE_BYTES,
  GPT_HEADER,
  GPT_HEADER_SIZE_BYTES,
  GPT_MAX_ENTRY_ARRAY_BYTES,
  GPT_MAX_ENTRY_SIZE_BYTES,
  GPT_NAME_MAX_CODE_UNITS,
  GPT_SIGNATURE,
} from './layout.js';

/** A GPT header that passed every check, with its entry array. */
export interface GptHeader {
  /** The HeaderSize bytes of the header as read. */
  bytes: Uint8Array;
  headerSize: number;
  myLba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  partitionEntryLba: number;
  numberOfPartitionEntries: number;
  sizeOfPartitionEntry: number;
  partitionEntryArrayCrc32: number;
  /** numberOfPartitionEntries * sizeOfPartitionEntry bytes. */
  entries: Uint8Array;
}

export type GptHeaderResult = { ok: true; header: GptHeader } | { ok: false; reason: string };

/** Everything a writer needs: both headers (when valid) and the one the table came from. */
export interface GptState {
  sectorSize: number;
  totalSectors: number;
  primary: GptHeaderResult;
  backup: GptHeaderResult;
  /** The header the table was decoded from: the primary when valid, else the backup. */
  used: GptHeader;
  table: PartitionTable;
}

export function hasGptSignature(bytes: Uint8Array): boolean {
  if (bytes.length < GPT_SIGNATURE.length) return false;
  for (let i = 0; i < GPT_SIGNATURE.length; i++) if (bytes[i] !== GPT_SIGNATURE.charCodeAt(i)) return false;
  return true;
}

/** CRC of the first headerSize bytes with the HeaderCRC32 field taken as zero. Ref: UEFI 2.10 §5.3.2. */
export function gptHeaderCrc(header: Uint8Array, headerSize: number): number {
  const copy = header.slice(0, headerSize);
  copy.fill(0, GPT_HEADER.headerCrc32.byteOffset, GPT_HEADER.headerCrc32.byteOffset + 4);
  return crc32(copy);
}

function u64(view: DataView, byteOffset: number): number | undefined {
  const value = view.getBigUint64(byteOffset, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}

/**
 * Reads and checks the header at `lba` (UEFI 2.10 §5.3.2 "GPT Header" validity
 * rules: signature, header CRC, MyLBA, entry array CRC) and returns why it
 * is unusable instead of throwing, so the caller can fall back to the other copy.
 */
export function readGptHeader(reader: BlockReader, lba: number, sectorSize: number): GptHeaderResult {
  const totalSectors = Math.floor(reader.size / sectorSize);
  if (lba < 1 || lba >= totalSectors) return { ok: false, reason: `LBA ${lba} is outside the image (${totalSectors} sectors)` };
  const sector = reader.read(lba * sectorSize, sectorSize);
  if (!hasGptSignature(sector)) return { ok: false, reason: `no "${GPT_SIGNATURE}" signature at LBA ${lba}` };
  const view = new DataView(sector.buffer, sector.byteOffset, sectorSize);
  const headerSize = view.getUint32(GPT_HEADER.headerSize.byteOffset, true);
  if (headerSize < GPT_HEADER_SIZE_BYTES || headerSize > sectorSize) {
    return { ok: false, reason: `HeaderSize ${headerSize} at LBA ${lba} is outside ${GPT_HEADER_SIZE_BYTES}..${sectorSize}` };
  }
  const storedCrc = view.getUint32(GPT_HEADER.headerCrc32.byteOffset, true);
  const actualCrc = gptHeaderCrc(sector, headerSize);
  if (storedCrc !== actualCrc) {
    return { ok: false, reason: `header CRC32 at LBA ${lba} is 0x${hex32(storedCrc)}, computed 0x${hex32(actualCrc)}` };
  }
  const myLba = u64(view, GPT_HEADER.myLba.byteOffset);
  const alternateLba = u64(view, GPT_HEADER.alternateLba.byteOffset);
  const firstUsableLba = u64(view, GPT_HEADER.firstUsableLba.byteOffset);
  const lastUsableLba = u64(view, GPT_HEADER.lastUsableLba.byteOffset);
  const partitionEntryLba = u64(view, GPT_HEADER.partitionEntryLba.byteOffset);
  if (
    myLba === undefined ||
    alternateLba === undefined ||
    firstUsableLba === undefined ||
    lastUsableLba === undefined ||
    partitionEntryLba === undefined
  ) {
    return { ok: false, reason: `header at LBA ${lba} holds an LBA too large to handle` };
  }
  if (myLba !== lba) return { ok: false, reason: `header at LBA ${lba} says MyLBA is ${myLba}` };
  if (firstUsableLba > lastUsableLba + 1) {
    return { ok: false, reason: `header at LBA ${lba}: FirstUsableLBA ${firstUsableLba} is after LastUsableLBA ${lastUsableLba}` };
  }
  const numberOfPartitionEntries = view.getUint32(GPT_HEADER.numberOfPartitionEntries.byteOffset, true);
  const sizeOfPartitionEntry = view.getUint32(GPT_HEADER.sizeOfPartitionEntry.byteOffset, true);
  // The spec requires 128 x 2^n.
  const entrySizeValid =
    sizeOfPartitionEntry >= GPT_ENTRY_MIN_SIZE_BYTES &&
    sizeOfPartitionEntry <= GPT_MAX_ENTRY_SIZE_BYTES &&
    (sizeOfPartitionEntry & (sizeOfPartitionEntry - 1)) === 0;
  if (!entrySizeValid) return { ok: false, reason: `SizeOfPartitionEntry ${sizeOfPartitionEntry} at LBA ${lba} is not 128 x 2^n (up to ${GPT_MAX_ENTRY_SIZE_BYTES})` };
  const arrayBytes = numberOfPartitionEntries * sizeOfPartitionEntry;
  if (arrayBytes > GPT_MAX_ENTRY_ARRAY_BYTES) {
    return { ok: false, reason: `header at LBA ${lba} declares ${numberOfPartitionEntries} entries (${arrayBytes} bytes), over the ${GPT_MAX_ENTRY_ARRAY_BYTES}-byte limit` };
  }
  const arraySectors = Math.ceil(arrayBytes / sectorSize);
  if (partitionEntryLba < 1 || partitionEntryLba + arraySectors > totalSectors) {
    return { ok: false, reason: `entry array of the header at LBA ${lba} (LBA ${partitionEntryLba}, ${arraySectors} sectors) is outside the image` };
  }
  // Ref: UEFI 2.10 §5.3.2: the header and the entry array lie outside the usable area, and apart.
  if (lba >= firstUsableLba && lba <= lastUsableLba) {
    return { ok: false, reason: `header at LBA ${lba} lies inside its own usable area (LBA ${firstUsableLba}..${lastUsableLba})` };
  }
  const arrayEndLba = partitionEntryLba + arraySectors; // exclusive
  if ((lba >= partitionEntryLba && lba < arrayEndLba) || (arraySectors > 0 && partitionEntryLba <= lastUsableLba && arrayEndLba > firstUsableLba)) {
    return { ok: false, reason: `entry array of the header at LBA ${lba} (LBA ${partitionEntryLba}, ${arraySectors} sectors) overlaps the header or the usable area` };
  }
  // A copy: devices may return views that later writes change.
  const entries = reader.read(partitionEntryLba * sectorSize, arrayBytes).slice();
  const storedArrayCrc = view.getUint32(GPT_HEADER.partitionEntryArrayCrc32.byteOffset, true);
  const actualArrayCrc = crc32(entries);
  if (storedArrayCrc !== actualArrayCrc) {
    return { ok: false, reason: `entry array CRC32 of the header at LBA ${lba} is 0x${hex32(storedArrayCrc)}, computed 0x${hex32(actualArrayCrc)}` };
  }
  return {
    ok: true,
    header: {
      bytes: sector.slice(0, headerSize),
      headerSize,
      myLba,
      alternateLba,
      firstUsableLba,
      lastUsableLba,
      diskGuid: guidFromBytes(sector, GPT_HEADER.diskGuid.byteOffset),
      partitionEntryLba,
      numberOfPartitionEntries,
      sizeOfPartitionEntry,
      partitionEntryArrayCrc32: storedArrayCrc,
      entries,
    },
  };
}

function hex32(value: number): string {
  return value.toString(16).padStart(8, '0');
}

/**
 * Reads the GPT: primary header at LBA 1, backup where the primary's
 * AlternateLBA says (else the last LBA). A damaged copy falls back to the
 * other with a warning; both damaged is `E_BAD_GPT`.
 */
export function readGpt(reader: BlockReader, sectorSize: number, warnings: string[]): GptState {
  const totalSectors = Math.floor(reader.size / sectorSize);
  const lastLba = totalSectors - 1;
  const primary = readGptHeader(reader, 1, sectorSize);
  let backup: GptHeaderResult;
  if (primary.ok && primary.header.alternateLba !== lastLba) {
    backup = readGptHeader(reader, primary.header.alternateLba, sectorSize);
    if (backup.ok) {
      warnings.push(`backup GPT header is at LBA ${primary.header.alternateLba}, not at the last LBA ${lastLba} (image resized?)`);
    } else {
      const atEnd = readGptHeader(reader, lastLba, sectorSize);
      if (atEnd.ok) backup = atEnd;
    }
  } else {
    backup = readGptHeader(reader, lastLba, sectorSize);
  }
  let used: GptHeader;
  if (primary.ok) {
    used = primary.header;
    if (!backup.ok) warnings.push(`backup GPT header is damaged (${backup.reason}); using the primary`);
    else if (backup.header.diskGuid !== primary.header.diskGuid || backup.header.partitionEntryArrayCrc32 !== primary.header.partitionEntryArrayCrc32) {
      warnings.push('primary and backup GPT differ; using the primary');
    }
  } else if (backup.ok) {
    used = backup.header;
    warnings.push(`primary GPT header is damaged (${primary.reason}); using the backup at LBA ${backup.header.myLba}`);
  } else {
    throw new PiimgError('E_BAD_GPT', `both GPT headers are damaged: primary: ${primary.reason}; backup: ${backup.reason}`, {
      sectorSize,
      primary: primary.reason,
      backup: backup.reason,
    });
  }
  const table = decodeGptTable(used, sectorSize, totalSectors, warnings);
  return { sectorSize, totalSectors, primary, backup, used, table };
}

function decodeGptTable(header: GptHeader, sectorSize: number, totalSectors: number, warnings: string[]): PartitionTable {
  const partitions: Partition[] = [];
  const { entries, sizeOfPartitionEntry } = header;
  const view = new DataView(entries.buffer, entries.byteOffset, entries.length);
  for (let index = 0; index < header.numberOfPartitionEntries; index++) {
    const base = index * sizeOfPartitionEntry;
    const type = guidFromBytes(entries, base + GPT_ENTRY.partitionTypeGuid.byteOffset);
    if (type === NULL_GUID) continue;
    const number = index + 1;
    const startingLba = view.getBigUint64(base + GPT_ENTRY.startingLba.byteOffset, true);
    const endingLba = view.getBigUint64(base + GPT_ENTRY.endingLba.byteOffset, true);
    if (endingLba < startingLba) {
      throw new PiimgError('E_BAD_GPT', `GPT partition ${number} ends (LBA ${endingLba}) before it starts (LBA ${startingLba})`, {
        partition: number,
      });
    }
    const sectorCountBig = endingLba - startingLba + 1n;
    const endBig = endingLba + 1n;
    if (endBig > BigInt(totalSectors)) {
      throw new PiimgError(
        'E_PARTITION_OUT_OF_RANGE',
        `partition ${number} (LBA ${startingLba}..${endingLba}) runs past the end of the image (${totalSectors} sectors of ${sectorSize} bytes)`,
        { partition: number, firstLba: startingLba.toString(), lastLba: endingLba.toString(), totalSectors },
      );
    }
    const firstLba = Number(startingLba);
    const sectorCount = Number(sectorCountBig);
    assertInside(
      { label: `partition ${number}`, firstLba, sectorCount },
      header.firstUsableLba,
      header.lastUsableLba + 1,
      'the usable area of the GPT',
    );
    const partition: Partition = {
      number,
      kind: 'gpt',
      firstLba,
      sectorCount,
      byteOffset: firstLba * sectorSize,
      size: sectorCount * sectorSize,
      type,
      partUuid: guidFromBytes(entries, base + GPT_ENTRY.uniquePartitionGuid.byteOffset),
      name: decodeName(entries, base + GPT_ENTRY.partitionName.byteOffset),
      attributes: `0x${view.getBigUint64(base + GPT_ENTRY.attributes.byteOffset, true).toString(16).padStart(16, '0')}`,
    };
    const typeName = gptTypeName(type);
    if (typeName !== undefined) partition.typeName = typeName;
    partitions.push(partition);
  }
  assertNoOverlap(partitions.map((p) => ({ label: `partition ${p.number}`, firstLba: p.firstLba, sectorCount: p.sectorCount })));
  return {
    scheme: 'gpt',
    sectorSize,
    diskId: header.diskGuid,
    partitions,
    warnings,
    sectorCountTotal: totalSectors,
    firstUsableLba: header.firstUsableLba,
    lastUsableLba: header.lastUsableLba,
  };
}

/** PartitionName: 36 UTF-16LE code units, ends at the first NUL. */
function decodeName(bytes: Uint8Array, byteOffset: number): string {
  const units: number[] = [];
  for (let i = 0; i < GPT_NAME_MAX_CODE_UNITS; i++) {
    const unit = bytes[byteOffset + 2 * i]! | (bytes[byteOffset + 2 * i + 1]! << 8);
    if (unit === 0) break;
    units.push(unit);
  }
  return String.fromCharCode(...units);
}
