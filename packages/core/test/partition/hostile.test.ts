import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { PiimgError } from '../../src/errors.js';
import { readPartitionTable, resizePartition, setDiskId } from '../../src/partition/index.js';
import { EFI_SYSTEM, LINUX_FS, gptImage, mbrSector, mbrWithLogicals, put, refreshHeaderCrc } from './build.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof PiimgError) return error.code;
    throw error;
  }
  return 'no error';
}

function flip(image: Uint8Array, byteOffset: number, mask: number): void {
  image[byteOffset] = (image[byteOffset] ?? 0) ^ mask;
}

function read(image: Uint8Array) {
  return readPartitionTable(new MemoryDevice(image));
}

function rpiLikeMbr(): Uint8Array {
  const image = new Uint8Array(4096 * 512);
  put(image, 0, mbrSector([
    { type: 0x0c, start: 64, count: 1024 },
    { type: 0x83, start: 1088, count: 2048 },
  ]));
  return image;
}

function smallGpt(options: { sectorSize?: number; protectiveMbr?: boolean } = {}): Uint8Array {
  return gptImage({
    sectorSize: options.sectorSize ?? 512,
    totalSectors: 4096,
    protectiveMbr: options.protectiveMbr ?? true,
    partitions: [
      { type: EFI_SYSTEM, guid: '11111111-2222-3333-4444-555555555555', first: 64, last: 1087, name: 'BOOT' },
      { type: LINUX_FS, guid: '66666666-7777-8888-9999-aaaaaaaaaaaa', first: 1088, last: 3000, name: 'ROOT' },
    ],
  });
}

describe('readPartitionTable on inputs built in memory', () => {
  it('reads an MBR and derives PARTUUIDs from the disk id', () => {
    const table = read(rpiLikeMbr());
    expect(table).toMatchObject({ scheme: 'mbr', sectorSize: 512, diskId: '1234abcd', warnings: [] });
    expect(table.partitions.map((p) => [p.number, p.firstLba, p.sectorCount, p.type, p.typeName, p.partUuid])).toEqual([
      [1, 64, 1024, '0x0c', 'W95 FAT32 (LBA)', '1234abcd-01'],
      [2, 1088, 2048, '0x83', 'Linux', '1234abcd-02'],
    ]);
  });

  it('reads a GPT with names and GUIDs', () => {
    const table = read(smallGpt());
    expect(table).toMatchObject({ scheme: 'gpt', sectorSize: 512, diskId: '0a0b0c0d-1111-2222-3333-444455556666', warnings: [] });
    expect(table.partitions.map((p) => [p.number, p.firstLba, p.sectorCount, p.typeName, p.name, p.partUuid])).toEqual([
      [1, 64, 1024, 'EFI System', 'BOOT', '11111111-2222-3333-4444-555555555555'],
      [2, 1088, 1913, 'Linux filesystem', 'ROOT', '66666666-7777-8888-9999-aaaaaaaaaaaa'],
    ]);
  });

  it('E_NO_PARTITION_TABLE: zero-length, truncated, no signature', () => {
    expect(codeOf(() => read(new Uint8Array(0)))).toBe('E_NO_PARTITION_TABLE');
    expect(codeOf(() => read(rpiLikeMbr().subarray(0, 300)))).toBe('E_NO_PARTITION_TABLE');
    expect(codeOf(() => read(new Uint8Array(1 << 20)))).toBe('E_NO_PARTITION_TABLE');
  });

  it('E_BAD_MBR: garbage with a 0x55AA signature', () => {
    const image = new Uint8Array(1 << 16);
    for (let i = 0; i < 510; i++) image[i] = (i * 97 + 13) & 0xff;
    image[510] = 0x55;
    image[511] = 0xaa;
    expect(codeOf(() => read(image))).toBe('E_BAD_MBR');
  });

  it('E_NO_PARTITION_TABLE: a bare FAT or ext filesystem, with a message that says so', () => {
    const fat = new Uint8Array(1 << 16);
    fat.set([0xeb, 0x3c, 0x90], 0);
    fat.set([0x00, 0x02, 4, 4, 0, 2], 0x0b); // BPB_BytsPerSec 512, SecPerClus 4, RsvdSecCnt 4, NumFATs 2
    fat[510] = 0x55;
    fat[511] = 0xaa;
    const error = (() => {
      try {
        read(fat);
      } catch (e) {
        return e as PiimgError;
      }
    })();
    expect(error?.code).toBe('E_NO_PARTITION_TABLE');
    expect(error?.message).toMatch(/FAT boot sector/);
    const ext = new Uint8Array(1 << 16);
    ext.set([0x53, 0xef], 0x438);
    expect(() => read(ext)).toThrow(/ext2\/3\/4 filesystem/);
  });

  it('E_PARTITION_OUT_OF_RANGE: a truncated MBR image', () => {
    expect(codeOf(() => read(rpiLikeMbr().subarray(0, 2000 * 512)))).toBe('E_PARTITION_OUT_OF_RANGE');
  });

  it('E_PARTITION_OVERLAP: overlapping primaries', () => {
    const image = rpiLikeMbr();
    put(image, 0, mbrSector([
      { type: 0x0c, start: 64, count: 1100 },
      { type: 0x83, start: 1088, count: 2048 },
    ]));
    const error = (() => {
      try {
        read(image);
      } catch (e) {
        return e as PiimgError;
      }
    })();
    expect(error?.code).toBe('E_PARTITION_OVERLAP');
    expect(error?.message).toMatch(/partition 1 .* overlaps partition 2/);
  });

  it('reads a 1000-long EBR chain in milliseconds', () => {
    const image = mbrWithLogicals(1000);
    const started = performance.now();
    const table = read(image);
    const elapsedMs = performance.now() - started;
    expect(table.partitions).toHaveLength(1000);
    expect(table.partitions[0]).toMatchObject({ number: 5, kind: 'logical', firstLba: 65, sectorCount: 8, ebrLba: 64 });
    expect(table.partitions[999]).toMatchObject({ number: 1004, firstLba: 64 + 999 * 9 + 1 });
    expect(table.extended).toMatchObject({ number: 1, firstLba: 64, sectorCount: 9000, type: '0x0f' });
    expect(elapsedMs).toBeLessThan(500);
  });

  it('E_EBR_LOOP: a chain that links back, quickly', () => {
    const image = mbrWithLogicals(5);
    // EBR 5 (at 64 + 4*9) links back to EBR 2 (relative start 9).
    put(image, (64 + 4 * 9) * 512, mbrSector([{ type: 0x83, start: 1, count: 8 }, { type: 0x05, start: 9, count: 9 }]));
    const started = performance.now();
    expect(codeOf(() => read(image))).toBe('E_EBR_LOOP');
    // A self-link of the first EBR.
    const self = mbrWithLogicals(1);
    put(self, 64 * 512, mbrSector([{ type: 0x83, start: 1, count: 8 }, { type: 0x05, start: 0, count: 9 }]));
    expect(codeOf(() => read(self))).toBe('E_EBR_LOOP');
    expect(performance.now() - started).toBeLessThan(200);
  });

  it('refuses logical partitions that leave their extended partition or overlap each other', () => {
    const outside = mbrWithLogicals(2);
    put(outside, 64 * 512, mbrSector([{ type: 0x83, start: 1, count: 80 }, { type: 0x05, start: 9, count: 9 }]));
    expect(codeOf(() => read(outside))).toBe('E_PARTITION_OUT_OF_RANGE');
    const overlapping = mbrWithLogicals(2);
    put(overlapping, 64 * 512, mbrSector([{ type: 0x83, start: 1, count: 12 }, { type: 0x05, start: 9, count: 9 }]));
    expect(codeOf(() => read(overlapping))).toBe('E_PARTITION_OVERLAP');
  });

  it('stops at an EBR without signature, with a warning', () => {
    const image = mbrWithLogicals(3);
    image[(64 + 2 * 9) * 512 + 510] = 0;
    const table = read(image);
    expect(table.partitions.map((p) => p.number)).toEqual([5, 6]);
    expect(table.warnings.join()).toMatch(/no 0x55AA signature/);
  });

  it('GPT: a wrong primary header CRC falls back to the backup with a warning', () => {
    const image = smallGpt();
    flip(image, 512 + 0x38, 0xff); // disk GUID byte, CRC now wrong
    const table = read(image);
    expect(table.diskId).toBe('0a0b0c0d-1111-2222-3333-444455556666');
    expect(table.partitions).toHaveLength(2);
    expect(table.warnings.join()).toMatch(/primary GPT header is damaged \(header CRC32/);
  });

  it('GPT: a wrong entry array CRC falls back to the backup', () => {
    const image = smallGpt();
    flip(image, 2 * 512 + 56, 1); // a name byte of entry 1 in the primary array
    const table = read(image);
    expect(table.partitions[0]!.name).toBe('BOOT');
    expect(table.warnings.join()).toMatch(/entry array CRC32/);
  });

  it('GPT: E_BAD_GPT when both headers are bad, and when the protective MBR points at nothing', () => {
    const image = smallGpt();
    flip(image, 512 + 0x38, 0xff);
    flip(image, 4095 * 512 + 0x38, 0xff);
    expect(codeOf(() => read(image))).toBe('E_BAD_GPT');
    const noHeaders = smallGpt();
    noHeaders.fill(0, 512, 1024);
    noHeaders.fill(0, 4095 * 512);
    expect(codeOf(() => read(noHeaders))).toBe('E_BAD_GPT');
  });

  it('GPT: the primary signature wiped, the backup is found through the protective MBR', () => {
    const image = smallGpt();
    image.fill(0, 512, 1024);
    const table = read(image);
    expect(table.scheme).toBe('gpt');
    expect(table.warnings.join()).toMatch(/primary GPT header is damaged \(no "EFI PART"/);
  });

  it('GPT: absurd entry counts are rejected as damage without reading them', () => {
    const image = smallGpt();
    new DataView(image.buffer).setUint32(512 + 0x50, 0xffffffff, true);
    refreshHeaderCrc(image, 1);
    const table = read(image);
    expect(table.warnings.join()).toMatch(/over the 4194304-byte limit/);
  });

  it('GPT: a header whose entry array overlaps it or the usable area is damage, not a layout to write to', () => {
    const overlapping = smallGpt();
    new DataView(overlapping.buffer).setBigUint64(512 + 0x48, 1n, true); // PartitionEntryLBA = its own LBA
    refreshHeaderCrc(overlapping, 1);
    expect(read(overlapping).warnings.join()).toMatch(/overlaps the header or the usable area/);
    const usable = smallGpt();
    new DataView(usable.buffer).setBigUint64(512 + 0x28, 1n, true); // FirstUsableLBA = 1
    refreshHeaderCrc(usable, 1);
    expect(read(usable).warnings.join()).toMatch(/inside its own usable area/);
  });

  it('GPT: truncated image: backup missing and partitions past the end', () => {
    const image = smallGpt().subarray(0, 2048 * 512);
    expect(codeOf(() => read(image))).toBe('E_PARTITION_OUT_OF_RANGE');
  });

  it('GPT: overlapping entries and an entry ending before it starts', () => {
    const overlap = gptImage({
      totalSectors: 4096,
      partitions: [
        { type: LINUX_FS, guid: '11111111-2222-3333-4444-555555555555', first: 64, last: 2000 },
        { type: LINUX_FS, guid: '11111111-2222-3333-4444-555555555556', first: 1500, last: 3000 },
      ],
    });
    expect(codeOf(() => read(overlap))).toBe('E_PARTITION_OVERLAP');
    const reversed = gptImage({
      totalSectors: 4096,
      partitions: [{ type: LINUX_FS, guid: '11111111-2222-3333-4444-555555555555', first: 2000, last: 64 }],
    });
    expect(codeOf(() => read(reversed))).toBe('E_BAD_GPT');
    const huge = gptImage({
      totalSectors: 4096,
      partitions: [{ type: LINUX_FS, guid: '11111111-2222-3333-4444-555555555555', first: 64, last: 2 ** 62 }],
    });
    expect(codeOf(() => read(huge))).toBe('E_PARTITION_OUT_OF_RANGE');
  });

  it('GPT without protective MBR: accepted with a warning; hybrid MBR: GPT wins with a warning', () => {
    const bare = read(smallGpt({ protectiveMbr: false }));
    expect(bare.scheme).toBe('gpt');
    expect(bare.warnings.join()).toMatch(/no protective MBR/);
    const hybrid = smallGpt();
    put(hybrid, 0, mbrSector([{ type: 0xee, start: 1, count: 63 }, { type: 0x0c, start: 64, count: 1024 }], { diskId: 0 }));
    const table = read(hybrid);
    expect(table.scheme).toBe('gpt');
    expect(table.warnings.join()).toMatch(/hybrid MBR/);
  });

  it('GPT with 4096-byte sectors is detected by the header at byte 4096', () => {
    const table = read(smallGpt({ sectorSize: 4096 }));
    expect(table).toMatchObject({ scheme: 'gpt', sectorSize: 4096 });
    expect(table.partitions[0]).toMatchObject({ firstLba: 64, byteOffset: 64 * 4096, size: 1024 * 4096 });
  });

  it('MBR sector size: 4096 only when a filesystem shows up at the 4096-based start and not at the 512-based one', () => {
    const image = new Uint8Array(4096 * 4096);
    put(image, 0, mbrSector([{ type: 0x0c, start: 64, count: 1024 }, { type: 0x83, start: 1088, count: 2048 }]));
    expect(read(image).sectorSize).toBe(512); // nothing found anywhere: the default
    image[1088 * 4096 + 0x438] = 0x53;
    image[1088 * 4096 + 0x439] = 0xef;
    const table = read(image);
    expect(table.sectorSize).toBe(4096);
    expect(table.partitions[1]!.byteOffset).toBe(1088 * 4096);
    image[64 * 512 + 0x438] = 0x53; // an ext magic at a 512-based start too: ambiguous, keep 512
    image[64 * 512 + 0x439] = 0xef;
    expect(read(image).sectorSize).toBe(512);
    expect(readPartitionTable(new MemoryDevice(image), { sectorSize: 4096 }).sectorSize).toBe(4096);
  });

  it('MBR sector size: a FAT boot sector at the 4096-based start is recognised', () => {
    const image = new Uint8Array(4096 * 4096);
    put(image, 0, mbrSector([{ type: 0x0c, start: 64, count: 1024 }]));
    const boot = 64 * 4096;
    image[boot + 0x0b] = 0x00; // BPB_BytsPerSec 4096
    image[boot + 0x0c] = 0x10;
    image[boot + 0x0d] = 1; // BPB_SecPerClus
    image[boot + 0x10] = 2; // BPB_NumFATs
    image[boot + 510] = 0x55;
    image[boot + 511] = 0xaa;
    expect(read(image).sectorSize).toBe(4096);
    image[boot + 0x0d] = 3; // not a power of two: not a FAT boot sector
    expect(read(image).sectorSize).toBe(512);
  });
});

describe('writes on inputs built in memory', () => {
  it('setDiskId (MBR) changes the PARTUUIDs and nothing else', () => {
    const device = new MemoryDevice(rpiLikeMbr());
    const before = device.bytes.slice();
    const table = setDiskId(device, readPartitionTable(device), 'DEADBEEF');
    expect(table.diskId).toBe('deadbeef');
    expect(table.partitions.map((p) => p.partUuid)).toEqual(['deadbeef-01', 'deadbeef-02']);
    const changed: number[] = [];
    for (let i = 0; i < before.length; i++) if (device.bytes[i] !== before[i]) changed.push(i);
    expect(changed).toEqual([0x1b8, 0x1b9, 0x1ba, 0x1bb]);
    expect(Array.from(device.bytes.subarray(0x1b8, 0x1bc))).toEqual([0xef, 0xbe, 0xad, 0xde]);
    expect(setDiskId(device, table, '0x0000cafe').partitions[0]!.partUuid).toBe('0000cafe-01');
  });

  it('setDiskId refuses malformed ids before writing', () => {
    const device = new MemoryDevice(rpiLikeMbr());
    const before = device.bytes.slice();
    expect(codeOf(() => setDiskId(device, readPartitionTable(device), '12345'))).toBe('E_INVALID_ARGUMENT');
    const gpt = new MemoryDevice(smallGpt());
    expect(codeOf(() => setDiskId(gpt, readPartitionTable(gpt), 'deadbeef'))).toBe('E_INVALID_ARGUMENT');
    expect(Buffer.compare(device.bytes, before)).toBe(0);
  });

  it('setDiskId (GPT) repairs a damaged primary from the backup', () => {
    const image = smallGpt();
    flip(image, 512 + 0x38, 0xff);
    const device = new MemoryDevice(image);
    const table = setDiskId(device, readPartitionTable(device), 'A1B2C3D4-0000-4000-8000-000000000001');
    expect(table.diskId).toBe('a1b2c3d4-0000-4000-8000-000000000001');
    expect(table.warnings).toEqual([]);
  });

  it('resizePartition refuses overlap, out of range, unknown numbers and bad counts', () => {
    const device = new MemoryDevice(rpiLikeMbr());
    const table = readPartitionTable(device);
    expect(codeOf(() => resizePartition(device, table, 1, 1025))).toBe('E_PARTITION_OVERLAP');
    expect(codeOf(() => resizePartition(device, table, 2, 4096))).toBe('E_PARTITION_OUT_OF_RANGE');
    expect(codeOf(() => resizePartition(device, table, 3, 10))).toBe('E_PARTITION_NOT_FOUND');
    expect(codeOf(() => resizePartition(device, table, 2, 0))).toBe('E_INVALID_ARGUMENT');
    expect(resizePartition(device, table, 2, 3008).partitions[1]!.sectorCount).toBe(3008);
    const gpt = new MemoryDevice(smallGpt());
    const gptTable = readPartitionTable(gpt);
    expect(codeOf(() => resizePartition(gpt, gptTable, 1, 1025))).toBe('E_PARTITION_OVERLAP');
    expect(codeOf(() => resizePartition(gpt, gptTable, 2, 4000))).toBe('E_PARTITION_OUT_OF_RANGE');
    const grown = resizePartition(gpt, gptTable, 2, gptTable.lastUsableLba! - 1088 + 1);
    expect(grown.partitions[1]!.sectorCount).toBe(4095 - 1 - 32 - 1088 + 1);
    expect(grown.warnings).toEqual([]);
  });

  it('resizePartition of a logical partition keeps the chain readable and refuses leaving the container', () => {
    const device = new MemoryDevice(mbrWithLogicals(3));
    const table = readPartitionTable(device);
    expect(codeOf(() => resizePartition(device, table, 6, 9))).toBe('E_PARTITION_OVERLAP'); // would cover the next EBR
    expect(codeOf(() => resizePartition(device, table, 7, 17))).toBe('E_PARTITION_OUT_OF_RANGE'); // past the image
    const after = resizePartition(device, table, 6, 4);
    expect(after.partitions.map((p) => p.sectorCount)).toEqual([8, 4, 8]);
    // The last logical partition grows its extended partition with it, up to the end of the image.
    const grown = resizePartition(device, after, 7, 16);
    expect(grown.partitions.map((p) => p.sectorCount)).toEqual([8, 4, 16]);
    expect(grown.extended).toMatchObject({ firstLba: 64, sectorCount: 99 - 64 });
    // A primary right after the extended partition stops that.
    const blocked = mbrWithLogicals(3);
    put(blocked, 0, mbrSector([{ type: 0x0f, start: 64, count: 27 }, { type: 0x83, start: 91, count: 8 }]));
    const blockedDevice = new MemoryDevice(blocked);
    expect(codeOf(() => resizePartition(blockedDevice, readPartitionTable(blockedDevice), 7, 9))).toBe('E_PARTITION_OVERLAP');
    expect(codeOf(() => resizePartition(blockedDevice, readPartitionTable(blockedDevice), 5, 9))).toBe('E_PARTITION_OVERLAP');
  });
});

describe('fuzz: random first sectors', () => {
  const documented = new Set(['E_NO_PARTITION_TABLE', 'E_BAD_MBR', 'E_BAD_GPT', 'E_EBR_LOOP', 'E_PARTITION_OUT_OF_RANGE', 'E_PARTITION_OVERLAP']);
  const onlyPiimgErrors = (image: Uint8Array): boolean => {
    try {
      readPartitionTable(new MemoryDevice(image));
    } catch (error) {
      if (!(error instanceof PiimgError)) throw error;
      // A leaked E_OUT_OF_RANGE would mean a read the bounds checks missed.
      expect(documented, error.message).toContain(error.code);
    }
    return true;
  };

  it('random bytes never throw anything but PiimgError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 8 * 512 }), fc.boolean(), (head, signed) => {
        const image = new Uint8Array(64 * 1024);
        image.set(head.subarray(0, image.length));
        if (signed) {
          image[510] = 0x55;
          image[511] = 0xaa;
        }
        return onlyPiimgErrors(image.subarray(0, Math.max(head.length, signed ? 512 : 0)));
      }),
      { numRuns: 300 },
    );
  });

  it('random MBR entries and EBR chains never throw anything but PiimgError', () => {
    const entry = fc.record({
      type: fc.constantFrom(0x00, 0x05, 0x0c, 0x0f, 0x83, 0x85, 0xee),
      start: fc.integer({ min: 0, max: 200 }),
      count: fc.integer({ min: 0, max: 200 }),
      boot: fc.constantFrom(0, 0x80),
    });
    fc.assert(
      fc.property(fc.array(fc.array(entry, { maxLength: 4 }), { minLength: 1, maxLength: 6 }), (sectors) => {
        const image = new Uint8Array(160 * 512);
        sectors.forEach((entries, i) => put(image, i * 24 * 512, mbrSector(entries)));
        return onlyPiimgErrors(image);
      }),
      { numRuns: 300 },
    );
  });

  it('byte flips in a valid GPT never throw anything but PiimgError', () => {
    const base = gptImage({
      totalSectors: 200,
      partitions: [
        { type: EFI_SYSTEM, guid: '11111111-2222-3333-4444-555555555555', first: 34, last: 99, name: 'BOOT' },
        { type: LINUX_FS, guid: '66666666-7777-8888-9999-aaaaaaaaaaaa', first: 100, last: 166, name: 'ROOT' },
      ],
    });
    const headerBytes = fc.oneof(fc.integer({ min: 0, max: 34 * 512 - 1 }), fc.integer({ min: 167 * 512, max: 200 * 512 - 1 }));
    fc.assert(
      fc.property(fc.array(fc.tuple(headerBytes, fc.integer({ min: 0, max: 255 })), { maxLength: 16 }), (flips) => {
        const image = base.slice();
        for (const [at, value] of flips) image[at] = value;
        return onlyPiimgErrors(image);
      }),
      { numRuns: 400 },
    );
  });
});

describe('property: writes either apply fully or change nothing', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('resize' as const), number: fc.integer({ min: 1, max: 8 }), sectorCount: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: -1, max: 4200 })) }),
    fc.record({ kind: fc.constant('diskId' as const), valid: fc.boolean() }),
  );

  function check(makeImage: () => Uint8Array, ops: Array<{ kind: 'resize'; number: number; sectorCount: number } | { kind: 'diskId'; valid: boolean }>): boolean {
    const device = new MemoryDevice(makeImage());
    let table = readPartitionTable(device);
    const sizes = new Map(table.partitions.map((p) => [p.number, p.sectorCount]));
    for (const o of ops) {
      const before = device.bytes.slice();
      try {
        if (o.kind === 'resize') {
          table = resizePartition(device, table, o.number, o.sectorCount);
          sizes.set(o.number, o.sectorCount);
        } else {
          const id = table.scheme === 'mbr' ? (o.valid ? 'a1b2c3d4' : 'xyz') : o.valid ? '01234567-89ab-4cde-8f01-23456789abcd' : 'a1b2c3d4';
          table = setDiskId(device, table, id);
        }
      } catch (error) {
        if (!(error instanceof PiimgError)) throw error;
        expect(Buffer.compare(device.bytes, before), `${error.code} left the image changed`).toBe(0);
      }
      const reread = readPartitionTable(device);
      expect(reread.warnings).toEqual([]);
      expect(new Map(reread.partitions.map((p) => [p.number, p.sectorCount]))).toEqual(sizes);
    }
    return true;
  }

  it('GPT', () => {
    const base = smallGpt();
    fc.assert(fc.property(fc.array(op, { maxLength: 8 }), (ops) => check(() => base.slice(), ops)), { numRuns: 60 });
  });

  it('MBR with logical partitions', () => {
    const base = mbrWithLogicals(4, 200);
    fc.assert(fc.property(fc.array(op, { maxLength: 8 }), (ops) => check(() => base.slice(), ops)), { numRuns: 100 });
  });
});
