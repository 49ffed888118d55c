import { describe, expect, it } from 'vitest';
import { END, FREE, BAD, fat12, fat16, fat32 } from '../../src/fs/fat/codec.js';
import { BPB, BPB16, BPB32, DIRENT, FSINFO, LDIR, LDIR_CHAR_OFFSETS, viewOf } from '../../src/fs/fat/layout.js';
import { LongNameAssembler, encodeLongName } from '../../src/fs/fat/lfn.js';
import { CP437_HIGH, decodeShortName, exactShortName, generateShortName, shortNameChecksum } from '../../src/fs/fat/names.js';
import { decodeFatTime, encodeFatTime } from '../../src/fs/fat/time.js';

/** Offsets and sizes as printed in the Microsoft FAT specification (v1.03), §3.1-§3.3, §5, §6, §7. */
const SPEC: [Record<string, { byteOffset: number; size: number }>, [string, number, number][]][] = [
  [BPB, [['BS_jmpBoot', 0, 3], ['BS_OEMName', 3, 8], ['BPB_BytsPerSec', 11, 2], ['BPB_SecPerClus', 13, 1], ['BPB_RsvdSecCnt', 14, 2], ['BPB_NumFATs', 16, 1], ['BPB_RootEntCnt', 17, 2], ['BPB_TotSec16', 19, 2], ['BPB_Media', 21, 1], ['BPB_FATSz16', 22, 2], ['BPB_SecPerTrk', 24, 2], ['BPB_NumHeads', 26, 2], ['BPB_HiddSec', 28, 4], ['BPB_TotSec32', 32, 4]]],
  [BPB16, [['BS_DrvNum', 36, 1], ['BS_Reserved1', 37, 1], ['BS_BootSig', 38, 1], ['BS_VolID', 39, 4], ['BS_VolLab', 43, 11], ['BS_FilSysType', 54, 8]]],
  [BPB32, [['BPB_FATSz32', 36, 4], ['BPB_ExtFlags', 40, 2], ['BPB_FSVer', 42, 2], ['BPB_RootClus', 44, 4], ['BPB_FSInfo', 48, 2], ['BPB_BkBootSec', 50, 2], ['BPB_Reserved', 52, 12], ['BS_DrvNum', 64, 1], ['BS_Reserved1', 65, 1], ['BS_BootSig', 66, 1], ['BS_VolID', 67, 4], ['BS_VolLab', 71, 11], ['BS_FilSysType', 82, 8]]],
  [FSINFO, [['FSI_LeadSig', 0, 4], ['FSI_Reserved1', 4, 480], ['FSI_StrucSig', 484, 4], ['FSI_Free_Count', 488, 4], ['FSI_Nxt_Free', 492, 4], ['FSI_Reserved2', 496, 12], ['FSI_TrailSig', 508, 4]]],
  [DIRENT, [['DIR_Name', 0, 11], ['DIR_Attr', 11, 1], ['DIR_NTRes', 12, 1], ['DIR_CrtTimeTenth', 13, 1], ['DIR_CrtTime', 14, 2], ['DIR_CrtDate', 16, 2], ['DIR_LstAccDate', 18, 2], ['DIR_FstClusHI', 20, 2], ['DIR_WrtTime', 22, 2], ['DIR_WrtDate', 24, 2], ['DIR_FstClusLO', 26, 2], ['DIR_FileSize', 28, 4]]],
  [LDIR, [['LDIR_Ord', 0, 1], ['LDIR_Name1', 1, 10], ['LDIR_Attr', 11, 1], ['LDIR_Type', 12, 1], ['LDIR_Chksum', 13, 1], ['LDIR_Name2', 14, 12], ['LDIR_FstClusLO', 26, 2], ['LDIR_Name3', 28, 4]]],
];

describe('layout tables match the FAT specification', () => {
  it.each(SPEC.map(([table, rows]) => [rows[0]![0], table, rows] as const))('table starting with %s', (_first, table, rows) => {
    expect(Object.keys(table)).toEqual(rows.map(([name]) => name));
    for (const [name, byteOffset, size] of rows) expect(table[name], name).toEqual({ byteOffset, size });
  });
  it('directory entries and FSInfo fill their structures exactly', () => {
    const end = (t: Record<string, { byteOffset: number; size: number }>) => Math.max(...Object.values(t).map((f) => f.byteOffset + f.size));
    expect(end(DIRENT)).toBe(32);
    expect(end(LDIR)).toBe(32);
    expect(end(FSINFO)).toBe(512);
    expect(LDIR_CHAR_OFFSETS).toHaveLength(13);
    expect(CP437_HIGH).toHaveLength(128);
  });
});

describe('FAT codecs', () => {
  it.each([fat12, fat16, fat32])('$type stores, normalises and keeps neighbours', (codec) => {
    const bytes = new Uint8Array(64);
    const view = viewOf(bytes);
    for (let c = 2; c < 12; c++) codec.put(bytes, view, c, c + 1);
    codec.put(bytes, view, 5, END);
    codec.put(bytes, view, 6, BAD);
    codec.put(bytes, view, 7, FREE);
    expect([4, 5, 6, 7, 8].map((c) => codec.get(bytes, view, c))).toEqual([5, END, BAD, FREE, 9]);
  });
  it('fat12 packs two entries in three bytes', () => {
    const bytes = new Uint8Array(6);
    fat12.put(bytes, viewOf(bytes), 2, 0xabc);
    fat12.put(bytes, viewOf(bytes), 3, 0x123);
    expect([...bytes.subarray(3, 6)]).toEqual([0xbc, 0x3a, 0x12]);
  });
  it('fat32 keeps the reserved top 4 bits and reads any EOC value as END', () => {
    const bytes = new Uint8Array(16);
    const view = viewOf(bytes);
    view.setUint32(8, 0xf0000000, true);
    fat32.put(bytes, view, 2, 7);
    expect(view.getUint32(8, true)).toBe(0xf0000007);
    view.setUint32(12, 0x0ffffff8, true);
    expect(fat32.get(bytes, view, 3)).toBe(END);
  });
});

describe('names', () => {
  it('checksums short names as the spec computes them', () => {
    // The specification's ChkSum routine gives 115 (0x73) for "README  TXT".
    expect(shortNameChecksum(new TextEncoder().encode('README  TXT'))).toBe(115);
  });
  it('stores 8.3 names with lower-case flags and nothing else', () => {
    expect(exactShortName('readme.txt')?.ntRes).toBe(0x18);
    expect(exactShortName('README.txt')?.ntRes).toBe(0x10);
    expect(exactShortName('ReadMe.txt')).toBeUndefined();
    expect(exactShortName('ß.txt')).toBeUndefined();
    expect(exactShortName('toolongname.txt')).toBeUndefined();
    expect(decodeShortName(exactShortName('readme.txt')!.raw, 0x18)).toBe('readme.txt');
  });
  it('generates basis names with tails that never collide', () => {
    const taken = new Set<string>();
    const names: string[] = [];
    for (let i = 0; i < 1200; i++) {
      const raw = generateShortName(`Device configuration file ${i}.conf`, (k) => taken.has(k));
      const key = String.fromCharCode(...raw);
      expect(taken.has(key)).toBe(false);
      taken.add(key);
      names.push(key);
    }
    expect(names[0]).toBe('DEVICE~1CON');
    expect(names[999]).toBe('DEV~1000CON');
  });
  it('round-trips long names through slots', () => {
    const name = 'A long name with ünïcode ✓ and more than 26 characters';
    const slots = encodeLongName(name, 0x42);
    const assembler = new LongNameAssembler();
    for (let i = 0; i < slots.length / 32; i++) assembler.push(slots.subarray(i * 32, i * 32 + 32), i);
    expect(assembler.take(0x42)?.name).toBe(name);
    for (let i = 0; i < slots.length / 32; i++) assembler.push(slots.subarray(i * 32, i * 32 + 32), i);
    expect(assembler.take(0x43)).toBeUndefined();
  });
});

describe('timestamps', () => {
  it('store the UTC wall time with 2-second resolution and hundredths at creation', () => {
    const when = new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 990));
    const stamp = encodeFatTime(when);
    expect(decodeFatTime(stamp.date, stamp.time).toISOString()).toBe('2024-02-29T23:59:58.000Z');
    expect(decodeFatTime(stamp.date, stamp.time, stamp.hundredths).toISOString()).toBe('2024-02-29T23:59:59.990Z');
    expect(decodeFatTime(encodeFatTime(new Date(0)).date).toISOString()).toBe('1980-01-01T00:00:00.000Z');
  });
});
