import type { BlockReader } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import type { FatType } from './codec.js';
import {
  BOOT_SIGNATURE_OFFSET,
  BPB,
  BPB16,
  BPB32,
  EXTENDED_BOOT_SIGNATURE,
  FAT12_MAX_CLUSTERS,
  FAT16_MAX_CLUSTERS,
  FAT32_MAX_CLUSTERS,
  FIRST_CLUSTER,
  FSINFO,
  FSI_LEAD_SIG,
  FSI_STRUC_SIG,
  FSI_TRAIL_SIG,
  readBytes,
  readUint,
  viewOf,
} from './layout.js';
import { decodeShortLabel } from './names.js';

/** Everything the volume needs from the boot sector, validated. */
export interface FatGeometry {
  fatType: FatType;
  sectorSize: number;
  sectorsPerCluster: number;
  clusterSize: number;
  reservedSectors: number;
  numFats: number;
  /** Sectors per FAT copy. */
  fatSectors: number;
  rootEntryCount: number;
  totalSectors: number;
  /** Number of data clusters; valid clusters are 2 .. clusterCount + 1. */
  clusterCount: number;
  fatByteOffset: number;
  /** FAT12/16: fixed root directory region. */
  rootByteOffset: number;
  rootByteLength: number;
  dataByteOffset: number;
  /** FAT32: first cluster of the root directory; 0 on FAT12/16. */
  rootCluster: number;
  /** FAT32: sector of FSInfo, 0 when absent. */
  fsInfoSector: number;
  /** FAT32: sector of the backup boot sector, 0 when absent. */
  backupBootSector: number;
  /** FAT32 BPB_ExtFlags bit 7: only FAT number (bits 0-3) is active and mirrored. */
  activeFat: number | undefined;
  /** Byte offset in the boot sector of BS_Reserved1 (dirty flag), BS_VolLab, and whether they are valid. */
  extendedOffset: number;
  hasExtendedBpb: boolean;
  volumeId: string;
  bootLabel: string | undefined;
}

function bad(message: string, data: Record<string, unknown> = {}): PiimgError {
  return new PiimgError('E_FAT_BAD_BPB', `not a valid FAT boot sector: ${message}`, data);
}

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/**
 * Parses and validates the boot sector. The FAT type follows the cluster
 * count (FAT spec §3.5) between FAT12 and FAT16; a BPB with BPB_FATSz16 = 0
 * has the FAT32 layout (no fixed root, 32-bit FAT size) and is FAT32, as
 * Linux and dosfstools decide, because reading it any other way is wrong.
 */
export function parseBootSector(sector: Uint8Array, deviceSize: number): FatGeometry {
  if (sector.length < 512) throw bad('boot sector shorter than 512 bytes');
  const view = viewOf(sector);
  if (sector[BOOT_SIGNATURE_OFFSET] !== 0x55 || sector[BOOT_SIGNATURE_OFFSET + 1] !== 0xaa) {
    throw bad('no 0x55AA signature');
  }
  const jump = sector[0];
  if (jump !== 0xeb && jump !== 0xe9) throw bad('BS_jmpBoot is not a jump instruction', { jump });
  const sectorSize = readUint(view, BPB.BPB_BytsPerSec);
  if (!isPowerOfTwo(sectorSize) || sectorSize < 512 || sectorSize > 4096) {
    throw bad(`BPB_BytsPerSec ${sectorSize}`, { sectorSize });
  }
  const sectorsPerCluster = readUint(view, BPB.BPB_SecPerClus);
  if (!isPowerOfTwo(sectorsPerCluster) || sectorsPerCluster > 128) {
    throw bad(`BPB_SecPerClus ${sectorsPerCluster}`, { sectorsPerCluster });
  }
  const clusterSize = sectorSize * sectorsPerCluster;
  if (clusterSize > 256 * 1024) throw bad(`cluster size ${clusterSize}`, { clusterSize });
  const reservedSectors = readUint(view, BPB.BPB_RsvdSecCnt);
  if (reservedSectors < 1) throw bad('BPB_RsvdSecCnt is 0');
  const numFats = readUint(view, BPB.BPB_NumFATs);
  if (numFats < 1 || numFats > 4) throw bad(`BPB_NumFATs ${numFats}`, { numFats });
  const rootEntryCount = readUint(view, BPB.BPB_RootEntCnt);
  const totalSectors16 = readUint(view, BPB.BPB_TotSec16);
  const totalSectors = totalSectors16 !== 0 ? totalSectors16 : readUint(view, BPB.BPB_TotSec32);
  const fatSectors16 = readUint(view, BPB.BPB_FATSz16);
  const layout32 = fatSectors16 === 0;
  const fatSectors = layout32 ? readUint(view, BPB32.BPB_FATSz32) : fatSectors16;
  if (fatSectors === 0) throw bad('FAT size is 0');
  if (layout32 && rootEntryCount !== 0) throw bad('FAT32 layout with BPB_RootEntCnt not 0');
  if (!layout32 && rootEntryCount === 0) throw bad('FAT12/16 layout with BPB_RootEntCnt 0');
  const rootByteLength = rootEntryCount * 32;
  const rootSectors = Math.ceil(rootByteLength / sectorSize);
  const metaSectors = reservedSectors + numFats * fatSectors + rootSectors;
  if (totalSectors <= metaSectors) throw bad(`total sectors ${totalSectors} leave no data region`, { totalSectors });
  if (totalSectors * sectorSize > deviceSize) {
    throw bad(`the file system (${totalSectors * sectorSize} bytes) is larger than its device (${deviceSize} bytes)`, {
      totalSectors,
      deviceSize,
    });
  }
  const clusterCount = Math.floor((totalSectors - metaSectors) / sectorsPerCluster);
  let fatType: FatType;
  if (layout32) {
    fatType = 'fat32';
    if (clusterCount > FAT32_MAX_CLUSTERS) throw bad(`${clusterCount} clusters is too many for FAT32`);
    if (clusterCount < 1) throw bad('no data clusters');
  } else if (clusterCount <= FAT12_MAX_CLUSTERS) {
    fatType = 'fat12';
  } else if (clusterCount <= FAT16_MAX_CLUSTERS) {
    fatType = 'fat16';
  } else {
    throw bad(`${clusterCount} clusters need FAT32, but the BPB has the FAT12/16 layout`, { clusterCount });
  }
  const bitsPerEntry = fatType === 'fat12' ? 12 : fatType === 'fat16' ? 16 : 32;
  const entriesInFat = Math.floor((fatSectors * sectorSize * 8) / bitsPerEntry);
  if (entriesInFat < clusterCount + FIRST_CLUSTER) {
    throw bad(`a FAT of ${fatSectors} sectors cannot hold ${clusterCount} clusters`, { fatSectors, clusterCount });
  }
  let rootCluster = 0;
  let fsInfoSector = 0;
  let backupBootSector = 0;
  let activeFat: number | undefined;
  if (fatType === 'fat32') {
    rootCluster = readUint(view, BPB32.BPB_RootClus);
    if (rootCluster < FIRST_CLUSTER || rootCluster > clusterCount + 1) throw bad(`BPB_RootClus ${rootCluster}`, { rootCluster });
    fsInfoSector = readUint(view, BPB32.BPB_FSInfo);
    if (fsInfoSector === 0xffff || fsInfoSector >= reservedSectors) fsInfoSector = 0;
    backupBootSector = readUint(view, BPB32.BPB_BkBootSec);
    if (backupBootSector === 0xffff || backupBootSector >= reservedSectors) backupBootSector = 0;
    const extFlags = readUint(view, BPB32.BPB_ExtFlags);
    if (extFlags & 0x80) {
      activeFat = extFlags & 0x0f;
      if (activeFat >= numFats) throw bad(`BPB_ExtFlags names FAT ${activeFat} of ${numFats}`);
    }
    const version = readUint(view, BPB32.BPB_FSVer);
    if (version !== 0) throw new PiimgError('E_FAT_UNSUPPORTED', `FAT32 version ${version >> 8}.${version & 0xff} is not supported`, { version });
  }
  const ext = fatType === 'fat32' ? BPB32 : BPB16;
  const hasExtendedBpb = sector[ext.BS_BootSig.byteOffset] === EXTENDED_BOOT_SIGNATURE;
  const volumeId = hasExtendedBpb ? formatVolumeId(readUint(view, ext.BS_VolID)) : '0000-0000';
  const bootLabel = hasExtendedBpb ? decodeShortLabel(readBytes(sector, ext.BS_VolLab)) : undefined;
  const fatByteOffset = reservedSectors * sectorSize;
  const rootByteOffset = fatByteOffset + numFats * fatSectors * sectorSize;
  return {
    fatType,
    sectorSize,
    sectorsPerCluster,
    clusterSize,
    reservedSectors,
    numFats,
    fatSectors,
    rootEntryCount,
    totalSectors,
    clusterCount,
    fatByteOffset,
    rootByteOffset,
    rootByteLength,
    dataByteOffset: metaSectors * sectorSize,
    rootCluster,
    fsInfoSector,
    backupBootSector,
    activeFat,
    extendedOffset: ext.BS_DrvNum.byteOffset,
    hasExtendedBpb,
    volumeId,
    bootLabel,
  };
}

/** Volume serial as blkid and mtools show it: "ABCD-1234". */
export function formatVolumeId(id: number): string {
  const hex = (id >>> 0).toString(16).toUpperCase().padStart(8, '0');
  return `${hex.slice(0, 4)}-${hex.slice(4)}`;
}

/** What `probeFat` reads from a FAT boot sector. */
export interface FatProbe {
  fatType: FatType;
  label?: string;
  volumeId: string;
  clusterSize: number;
  sectorSize: number;
}

/**
 * Cheap signature check for filesystem detection: reads one sector, never
 * throws for data that is not FAT (returns undefined). The label is the one
 * in the boot sector; the volume's root-directory label may differ
 * (mount the volume and call getLabel() for the authoritative one).
 */
export function probeFat(reader: BlockReader): FatProbe | undefined {
  if (reader.size < 512) return undefined;
  let sector: Uint8Array;
  try {
    sector = reader.read(0, 512);
  } catch {
    return undefined;
  }
  if (sector[BOOT_SIGNATURE_OFFSET] !== 0x55 || sector[BOOT_SIGNATURE_OFFSET + 1] !== 0xaa) return undefined;
  // An ext4 or NTFS boot sector can carry 0x55AA too: the full BPB check below decides.
  try {
    const geometry = parseBootSector(sector, reader.size);
    const probe: FatProbe = {
      fatType: geometry.fatType,
      volumeId: geometry.volumeId,
      clusterSize: geometry.clusterSize,
      sectorSize: geometry.sectorSize,
    };
    if (geometry.bootLabel !== undefined && geometry.bootLabel !== '' && geometry.bootLabel !== 'NO NAME') {
      probe.label = geometry.bootLabel;
    }
    return probe;
  } catch (error) {
    if (error instanceof PiimgError) return undefined;
    throw error;
  }
}

/**
 * The FSInfo sector of a FAT32 volume: undefined when there is none (FAT12/16),
 * `valid: false` when its signatures are wrong (its hints must not be used).
 */
export function readFsInfo(reader: BlockReader, geometry: FatGeometry): { valid: boolean; freeCount: number; nextFree: number } | undefined {
  if (geometry.fsInfoSector === 0) return undefined;
  const view = viewOf(reader.read(geometry.fsInfoSector * geometry.sectorSize, 512));
  return {
    valid:
      readUint(view, FSINFO.FSI_LeadSig) === FSI_LEAD_SIG &&
      readUint(view, FSINFO.FSI_StrucSig) === FSI_STRUC_SIG &&
      readUint(view, FSINFO.FSI_TrailSig) === FSI_TRAIL_SIG,
    freeCount: readUint(view, FSINFO.FSI_Free_Count),
    nextFree: readUint(view, FSINFO.FSI_Nxt_Free),
  };
}
