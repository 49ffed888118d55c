/**
 * Builds partition tables in memory for hostile-input tests. Deliberately
 * written from the specs with plain DataView code (not with the reader's own
 * functions, except CRC-32 and GUID encoding, which have their own tests).
 */
import { crc32 } from '../../src/partition/crc32.js';
import { guidToBytes } from '../../src/partition/guid.js';

export interface MbrEntrySpec {
  type: number;
  start: number;
  count: number;
  boot?: number;
}

/** A 512-byte MBR/EBR sector with up to 4 entries. */
export function mbrSector(entries: MbrEntrySpec[], options: { diskId?: number; signature?: boolean } = {}): Uint8Array {
  const sector = new Uint8Array(512);
  const view = new DataView(sector.buffer);
  view.setUint32(0x1b8, options.diskId ?? 0x1234abcd, true);
  entries.forEach((e, i) => {
    const base = 0x1be + 16 * i;
    view.setUint8(base, e.boot ?? 0);
    view.setUint8(base + 4, e.type);
    view.setUint32(base + 8, e.start, true);
    view.setUint32(base + 12, e.count, true);
  });
  if (options.signature !== false) {
    sector[510] = 0x55;
    sector[511] = 0xaa;
  }
  return sector;
}

export function put(image: Uint8Array, byteOffset: number, data: Uint8Array): void {
  image.set(data, byteOffset);
}

/**
 * An image with an extended partition at `extStart` holding `count`
 * logical partitions of `size` sectors, one EBR each, chained in order.
 */
export function mbrWithLogicals(count: number, size = 8, extStart = 64): Uint8Array {
  const step = size + 1; // EBR + data
  const extCount = count * step;
  const image = new Uint8Array((extStart + extCount + 8) * 512);
  put(image, 0, mbrSector([{ type: 0x0f, start: extStart, count: extCount }]));
  for (let i = 0; i < count; i++) {
    const ebrLba = extStart + i * step;
    const entries: MbrEntrySpec[] = [{ type: 0x83, start: 1, count: size }];
    if (i + 1 < count) entries.push({ type: 0x05, start: (i + 1) * step, count: step });
    put(image, ebrLba * 512, mbrSector(entries, { diskId: 0 }));
  }
  return image;
}

export interface GptPartitionSpec {
  type: string;
  guid: string;
  first: number;
  last: number;
  name?: string;
}

export interface GptSpec {
  sectorSize?: number;
  totalSectors: number;
  diskGuid?: string;
  partitions: GptPartitionSpec[];
  entryCount?: number;
  protectiveMbr?: boolean;
}

/** A full image with protective MBR, primary and backup GPT (UEFI 2.10 §5.3). */
export function gptImage(spec: GptSpec): Uint8Array {
  const ss = spec.sectorSize ?? 512;
  const entryCount = spec.entryCount ?? 128;
  const image = new Uint8Array(spec.totalSectors * ss);
  const lastLba = spec.totalSectors - 1;
  const arraySectors = Math.ceil((entryCount * 128) / ss);
  if (spec.protectiveMbr !== false) {
    put(image, 0, mbrSector([{ type: 0xee, start: 1, count: Math.min(lastLba, 0xffffffff) }], { diskId: 0 }));
  }
  const entries = new Uint8Array(entryCount * 128);
  const ev = new DataView(entries.buffer);
  spec.partitions.forEach((p, i) => {
    const base = i * 128;
    entries.set(guidToBytes(p.type), base);
    entries.set(guidToBytes(p.guid), base + 16);
    ev.setBigUint64(base + 32, BigInt(p.first), true);
    ev.setBigUint64(base + 40, BigInt(p.last), true);
    const name = p.name ?? '';
    for (let c = 0; c < name.length; c++) ev.setUint16(base + 56 + 2 * c, name.charCodeAt(c), true);
  });
  const header = (myLba: number, altLba: number, entriesLba: number): Uint8Array => {
    const h = new Uint8Array(ss);
    const v = new DataView(h.buffer);
    h.set(new TextEncoder().encode('EFI PART'), 0);
    v.setUint32(8, 0x00010000, true);
    v.setUint32(12, 92, true);
    v.setBigUint64(24, BigInt(myLba), true);
    v.setBigUint64(32, BigInt(altLba), true);
    v.setBigUint64(40, BigInt(2 + arraySectors), true);
    v.setBigUint64(48, BigInt(lastLba - 1 - arraySectors), true);
    h.set(guidToBytes(spec.diskGuid ?? '0a0b0c0d-1111-2222-3333-444455556666'), 56);
    v.setBigUint64(72, BigInt(entriesLba), true);
    v.setUint32(80, entryCount, true);
    v.setUint32(84, 128, true);
    v.setUint32(88, crc32(entries), true);
    v.setUint32(16, crc32(h.subarray(0, 92)), true);
    return h;
  };
  put(image, ss, header(1, lastLba, 2));
  put(image, 2 * ss, entries);
  put(image, (lastLba - arraySectors) * ss, entries);
  put(image, lastLba * ss, header(lastLba, 1, lastLba - arraySectors));
  return image;
}

/** Recomputes the header CRC of the GPT header at `lba` after a test edited it. */
export function refreshHeaderCrc(image: Uint8Array, lba: number, ss = 512): void {
  const view = new DataView(image.buffer, image.byteOffset + lba * ss, ss);
  view.setUint32(16, 0, true);
  view.setUint32(16, crc32(image.subarray(lba * ss, lba * ss + 92)), true);
}

export const LINUX_FS = '0fc63daf-8483-4772-8e79-3d69d8477de4';
export const EFI_SYSTEM = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
