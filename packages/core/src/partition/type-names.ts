/**
 * Human names of common partition types, spelled as util-linux's fdisk and
 * sfdisk print them (`sfdisk --label dos -T`, `sfdisk --label gpt -T`), so
 * our output reads the same as the tools users already know.
 */
export const MBR_TYPE_NAMES: Readonly<Record<number, string>> = {
  0x01: 'FAT12',
  0x04: 'FAT16 <32M',
  0x05: 'Extended',
  0x06: 'FAT16',
  0x07: 'HPFS/NTFS/exFAT',
  0x0b: 'W95 FAT32',
  0x0c: 'W95 FAT32 (LBA)',
  0x0e: 'W95 FAT16 (LBA)',
  0x0f: "W95 Ext'd (LBA)",
  0x82: 'Linux swap / Solaris',
  0x83: 'Linux',
  0x85: 'Linux extended',
  0x8e: 'Linux LVM',
  0xda: 'Non-FS data',
  0xee: 'GPT',
  0xef: 'EFI (FAT-12/16/32)',
  0xfd: 'Linux raid autodetect',
};

/** Keys are lower-case GUIDs. */
export const GPT_TYPE_NAMES: Readonly<Record<string, string>> = {
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': 'EFI System',
  '21686148-6449-6e6f-744e-656564454649': 'BIOS boot',
  'e3c9e316-0b5c-4db8-817d-f92df00215ae': 'Microsoft reserved',
  'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': 'Microsoft basic data',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  '0fc63daf-8483-4772-8e79-3d69d8477de4': 'Linux filesystem',
  '44479540-f297-41b2-9af7-d131d5f0458a': 'Linux root (x86)',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': 'Linux root (x86-64)',
  '69dad710-2ce4-4e3c-b16c-21a1d49abed3': 'Linux root (ARM)',
  'b921b045-1df0-41c3-af44-4c6f280d3fae': 'Linux root (ARM-64)',
  '933ac7e1-2eb4-4f13-b844-0e14e2aef915': 'Linux home',
  '3b8f8425-20e0-4f3b-907f-1a25a76f98e8': 'Linux server data',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM',
};

/** Well-known GPT type GUIDs by role, for callers building tables. */
export const GPT_TYPE = {
  efiSystem: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  microsoftBasicData: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7',
  linuxFilesystem: '0fc63daf-8483-4772-8e79-3d69d8477de4',
  linuxSwap: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f',
  linuxRootArm64: 'b921b045-1df0-41c3-af44-4c6f280d3fae',
  linuxRootX86_64: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709',
} as const;

/** Human name of an MBR type byte ('W95 FAT32 (LBA)'), undefined when unknown. */
export function mbrTypeName(type: number): string | undefined {
  return MBR_TYPE_NAMES[type];
}

/** Human name of a GPT type GUID ('EFI System'), undefined when unknown. */
export function gptTypeName(typeGuid: string): string | undefined {
  return GPT_TYPE_NAMES[typeGuid.toLowerCase()];
}

/** '0x0c' form used in `Partition.type` for MBR partitions. */
export function formatMbrType(type: number): string {
  return `0x${type.toString(16).padStart(2, '0')}`;
}
