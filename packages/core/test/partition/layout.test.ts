import { describe, expect, it } from 'vitest';
import { crc32 } from '../../src/partition/crc32.js';
import { GPT_ENTRY, GPT_ENTRY_MIN_SIZE_BYTES, GPT_HEADER, GPT_HEADER_SIZE_BYTES } from '../../src/partition/gpt/layout.js';
import { guidFromBytes, guidToBytes, isGuid, randomGuid } from '../../src/partition/guid.js';
import { GPT_TYPE, gptTypeName, mbrTypeName, randomDiskId } from '../../src/partition/index.js';
import type { FieldLayout } from '../../src/partition/layout-types.js';
import { MBR, MBR_ENTRY, MBR_ENTRY_SIZE_BYTES, MBR_SIZE_BYTES } from '../../src/partition/mbr/layout.js';
import { lbaToChs } from '../../src/partition/mbr/write.js';

/** Fields must tile the struct exactly: no gap, no overlap, ending at its size. */
function expectContiguous(table: Record<string, FieldLayout>, size: number): void {
  let next = 0;
  for (const field of Object.values(table)) {
    expect(field.byteOffset, field.name).toBe(next);
    next = field.byteOffset + field.length;
  }
  expect(next).toBe(size);
}

describe('layout tables', () => {
  it('MBR: Linux msdos_partition and the classical MBR', () => {
    expectContiguous(MBR, MBR_SIZE_BYTES);
    expectContiguous(MBR_ENTRY, MBR_ENTRY_SIZE_BYTES);
    expect([MBR.diskSignature.byteOffset, MBR.partitionTable.byteOffset, MBR.signature.byteOffset]).toEqual([440, 446, 510]);
    expect(MBR.partitionTable.length).toBe(4 * MBR_ENTRY_SIZE_BYTES);
    expect([MBR_ENTRY.type.name, MBR_ENTRY.startLba.byteOffset, MBR_ENTRY.sectorCount.byteOffset]).toEqual(['sys_ind', 8, 12]);
  });

  it('GPT: UEFI 2.10 §5.3.2 header and §5.3.3 entry', () => {
    expectContiguous(GPT_HEADER, GPT_HEADER_SIZE_BYTES);
    expectContiguous(GPT_ENTRY, GPT_ENTRY_MIN_SIZE_BYTES);
    const offsets = Object.fromEntries(Object.values(GPT_HEADER).map((f) => [f.name, f.byteOffset]));
    expect(offsets).toMatchObject({
      Signature: 0,
      HeaderCRC32: 16,
      MyLBA: 24,
      AlternateLBA: 32,
      FirstUsableLBA: 40,
      LastUsableLBA: 48,
      DiskGUID: 56,
      PartitionEntryLBA: 72,
      NumberOfPartitionEntries: 80,
      SizeOfPartitionEntry: 84,
      PartitionEntryArrayCRC32: 88,
    });
    expect([GPT_ENTRY.startingLba.byteOffset, GPT_ENTRY.endingLba.byteOffset, GPT_ENTRY.partitionName.byteOffset]).toEqual([32, 40, 56]);
  });
});

describe('crc32', () => {
  it('matches the IEEE check values', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(new Uint8Array(32))).toBe(0x190a55ad);
    expect(crc32(new TextEncoder().encode('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
  });

  it('continues over chunks', () => {
    const data = new TextEncoder().encode('The quick brown fox jumps over the lazy dog');
    expect(crc32(data.subarray(10), crc32(data.subarray(0, 10)))).toBe(crc32(data));
  });
});

describe('GUID mixed-endian encoding', () => {
  it('encodes the EFI System type as it appears on disk', () => {
    const onDisk = [0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
    expect(Array.from(guidToBytes('C12A7328-F81F-11D2-BA4B-00A0C93EC93B'))).toEqual(onDisk);
    expect(guidFromBytes(Uint8Array.from([0xff, ...onDisk]), 1)).toBe(GPT_TYPE.efiSystem);
  });

  it('round-trips random GUIDs and rejects malformed ones', () => {
    for (let i = 0; i < 50; i++) {
      const guid = randomGuid();
      expect(guid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(guidFromBytes(guidToBytes(guid))).toBe(guid);
    }
    expect(isGuid('c12a7328-f81f-11d2-ba4b-00a0c93ec93')).toBe(false);
    expect(() => guidToBytes('not-a-guid')).toThrow(/not a GUID/);
    expect(() => guidFromBytes(new Uint8Array(15))).toThrow(/outside/);
  });
});

describe('type names and ids', () => {
  it('names the common types as util-linux does', () => {
    expect([0x0c, 0x0b, 0x0e, 0x06, 0x83, 0x82, 0x05, 0x0f, 0xee].map(mbrTypeName)).toEqual([
      'W95 FAT32 (LBA)',
      'W95 FAT32',
      'W95 FAT16 (LBA)',
      'FAT16',
      'Linux',
      'Linux swap / Solaris',
      'Extended',
      "W95 Ext'd (LBA)",
      'GPT',
    ]);
    expect(mbrTypeName(0x42)).toBeUndefined();
    expect(gptTypeName('C12A7328-F81F-11D2-BA4B-00A0C93EC93B')).toBe('EFI System');
    expect(gptTypeName(GPT_TYPE.microsoftBasicData)).toBe('Microsoft basic data');
    expect(gptTypeName(GPT_TYPE.linuxFilesystem)).toBe('Linux filesystem');
    expect(gptTypeName(GPT_TYPE.linuxSwap)).toBe('Linux swap');
    expect(gptTypeName(GPT_TYPE.linuxRootArm64)).toBe('Linux root (ARM-64)');
    expect(gptTypeName(GPT_TYPE.linuxRootX86_64)).toBe('Linux root (x86-64)');
  });

  it('randomDiskId gives 8 non-zero hex digits for MBR and a GUID for GPT', () => {
    const ids = new Set(Array.from({ length: 20 }, () => randomDiskId('mbr')));
    expect(ids.size).toBeGreaterThan(15);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}$/);
    expect(ids.has('00000000')).toBe(false);
    expect(isGuid(randomDiskId('gpt'))).toBe(true);
  });

  it('CHS: 255 heads x 63 sectors, clamped to 1023/254/63', () => {
    expect(Array.from(lbaToChs(0))).toEqual([0, 1, 0]);
    expect(Array.from(lbaToChs(8191))).toEqual([0x82, 0x02, 0x00]); // 8191 = 130 * 63 + 1: c=0 h=130 s=2
    expect(Array.from(lbaToChs(16065 * 1024 + 5))).toEqual([0xfe, 0xff, 0xff]);
  });
});
