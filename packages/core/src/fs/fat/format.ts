import type { BlockDevice } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import { END, codecs, type FatType } from './codec.js';
import { encodeLabelEntry } from './dirent.js';
import {
  BOOT_SIGNATURE_OFFSET,
  BPB,
  BPB16,
  BPB32,
  DIRENT_SIZE,
  EXTENDED_BOOT_SIGNATURE,
  FAT12_MAX_CLUSTERS,
  FAT16_MAX_CLUSTERS,
  FSINFO,
  FSI_LEAD_SIG,
  FSI_STRUC_SIG,
  FSI_TRAIL_SIG,
  viewOf,
  writeUint,
} from './layout.js';

/** Options of `formatFat`. */
export interface FormatFatOptions {
  /** Chosen from the size when absent: FAT12 below 8 MiB, FAT16 below 64 MiB, else FAT32. */
  fatType?: FatType;
  /** Up to 11 characters; none by default. */
  label?: string;
  /** Bytes per cluster, a power of two from 512 to 65536; the smallest that fits when absent (4 KiB preferred on FAT32). */
  clusterSize?: number;
  /** 32-bit volume serial; 0x12345678 by default so equal inputs give equal images. */
  volumeId?: number;
}

const SECTOR_SIZE = 512;
const MEDIA_FIXED_DISK = 0xf8;

function plan(totalSectors: number, fatType: FatType, clusterSize: number) {
  const sectorsPerCluster = clusterSize / SECTOR_SIZE;
  const reservedSectors = fatType === 'fat32' ? 32 : 1;
  const rootEntryCount = fatType === 'fat32' ? 0 : fatType === 'fat12' ? 224 : 512;
  const rootSectors = (rootEntryCount * DIRENT_SIZE) / SECTOR_SIZE;
  const bits = fatType === 'fat12' ? 12 : fatType === 'fat16' ? 16 : 32;
  let fatSectors = 1;
  let clusterCount = 0;
  // The FAT size depends on the cluster count and the other way round: iterate to a fixed point.
  for (let i = 0; i < 16; i++) {
    clusterCount = Math.floor((totalSectors - reservedSectors - 2 * fatSectors - rootSectors) / sectorsPerCluster);
    const needed = Math.ceil(((clusterCount + 2) * bits) / 8 / SECTOR_SIZE);
    if (needed <= fatSectors) break;
    fatSectors = needed;
  }
  return { sectorsPerCluster, reservedSectors, rootEntryCount, rootSectors, fatSectors, clusterCount };
}

function fits(fatType: FatType, clusterCount: number): boolean {
  if (fatType === 'fat12') return clusterCount >= 1 && clusterCount <= FAT12_MAX_CLUSTERS;
  if (fatType === 'fat16') return clusterCount > FAT12_MAX_CLUSTERS && clusterCount <= FAT16_MAX_CLUSTERS;
  return clusterCount > FAT16_MAX_CLUSTERS && clusterCount <= 0x0ffffff5;
}

/**
 * Writes an empty FAT file system over the whole device (512-byte sectors,
 * two FATs), so tests and users can make FAT without native tools. Only the
 * metadata regions are written; the data area keeps its old bytes.
 * Ref: FAT spec §3 (BPB), §3.5 (cluster count limits), §5 (FSInfo).
 */
export function formatFat(device: BlockDevice, options: FormatFatOptions = {}): void {
  const totalSectors = Math.floor(device.size / SECTOR_SIZE);
  if (totalSectors > 0xffffffff) throw new PiimgError('EINVAL', 'device too large for FAT', { size: device.size });
  const fatType = options.fatType ?? (device.size < 8 * 2 ** 20 ? 'fat12' : device.size < 64 * 2 ** 20 ? 'fat16' : 'fat32');
  const candidates = options.clusterSize !== undefined ? [options.clusterSize] : fatType === 'fat32' ? [4096, 2048, 1024, 512, 8192, 16384, 32768] : [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
  let chosen: (ReturnType<typeof plan> & { clusterSize: number }) | undefined;
  for (const clusterSize of candidates) {
    if (!(clusterSize >= 512 && clusterSize <= 65536 && (clusterSize & (clusterSize - 1)) === 0)) {
      throw new PiimgError('EINVAL', `invalid cluster size ${clusterSize}`, { clusterSize });
    }
    const layout = plan(totalSectors, fatType, clusterSize);
    if (fits(fatType, layout.clusterCount)) {
      chosen = { ...layout, clusterSize };
      break;
    }
  }
  if (!chosen) throw new PiimgError('EINVAL', `${device.size} bytes cannot hold ${fatType} with the requested cluster size`, { size: device.size, fatType });
  const label = options.label ?? '';
  if (label.length > 11 || /[^\x20-\x7e]|["*+,./:;<=>?[\\\]|]/.test(label)) {
    throw new PiimgError('EINVAL', `invalid FAT volume label ${JSON.stringify(label)}`, { label });
  }
  const labelField = new TextEncoder().encode((label === '' ? 'NO NAME' : label).padEnd(11, ' '));
  const volumeId = (options.volumeId ?? 0x12345678) >>> 0;

  const boot = new Uint8Array(SECTOR_SIZE);
  const view = viewOf(boot);
  boot.set(fatType === 'fat32' ? [0xeb, 0x58, 0x90] : [0xeb, 0x3c, 0x90], 0);
  boot.set(new TextEncoder().encode('MSWIN4.1'), BPB.BS_OEMName.byteOffset);
  writeUint(view, BPB.BPB_BytsPerSec, SECTOR_SIZE);
  writeUint(view, BPB.BPB_SecPerClus, chosen.sectorsPerCluster);
  writeUint(view, BPB.BPB_RsvdSecCnt, chosen.reservedSectors);
  writeUint(view, BPB.BPB_NumFATs, 2);
  writeUint(view, BPB.BPB_RootEntCnt, chosen.rootEntryCount);
  if (totalSectors < 0x10000 && fatType !== 'fat32') writeUint(view, BPB.BPB_TotSec16, totalSectors);
  else writeUint(view, BPB.BPB_TotSec32, totalSectors);
  writeUint(view, BPB.BPB_Media, MEDIA_FIXED_DISK);
  if (fatType !== 'fat32') writeUint(view, BPB.BPB_FATSz16, chosen.fatSectors);
  writeUint(view, BPB.BPB_SecPerTrk, 32);
  writeUint(view, BPB.BPB_NumHeads, 64);
  const ext = fatType === 'fat32' ? BPB32 : BPB16;
  if (fatType === 'fat32') {
    writeUint(view, BPB32.BPB_FATSz32, chosen.fatSectors);
    writeUint(view, BPB32.BPB_RootClus, 2);
    writeUint(view, BPB32.BPB_FSInfo, 1);
    writeUint(view, BPB32.BPB_BkBootSec, 6);
  }
  writeUint(view, ext.BS_DrvNum, 0x80);
  writeUint(view, ext.BS_BootSig, EXTENDED_BOOT_SIGNATURE);
  writeUint(view, ext.BS_VolID, volumeId);
  boot.set(labelField, ext.BS_VolLab.byteOffset);
  boot.set(new TextEncoder().encode(fatType.toUpperCase().padEnd(8, ' ')), ext.BS_FilSysType.byteOffset);
  boot[BOOT_SIGNATURE_OFFSET] = 0x55;
  boot[BOOT_SIGNATURE_OFFSET + 1] = 0xaa;

  // Zero the reserved sectors, both FATs and the root directory (fixed region or first cluster).
  const fatByteOffset = chosen.reservedSectors * SECTOR_SIZE;
  const fatBytes = chosen.fatSectors * SECTOR_SIZE;
  const rootByteOffset = fatByteOffset + 2 * fatBytes;
  const rootBytes = fatType === 'fat32' ? chosen.clusterSize : chosen.rootSectors * SECTOR_SIZE;
  const zero = new Uint8Array(1024 * 1024);
  for (let at = 0; at < rootByteOffset + rootBytes; at += zero.length) {
    device.write(at, zero.subarray(0, Math.min(zero.length, rootByteOffset + rootBytes - at)));
  }
  device.write(0, boot);

  const codec = codecs[fatType];
  const fatHead = new Uint8Array(16);
  const headView = viewOf(fatHead);
  // Entry 0 holds the media byte, entry 1 the end-of-chain mark with the "clean" bits set.
  codec.put(fatHead, headView, 0, fatType === 'fat32' ? 0x0fffff00 | MEDIA_FIXED_DISK : fatType === 'fat16' ? 0xff00 | MEDIA_FIXED_DISK : 0xf00 | MEDIA_FIXED_DISK);
  codec.put(fatHead, headView, 1, END);
  if (fatType === 'fat32') {
    codec.put(fatHead, headView, 2, END);
    headView.setUint32(4, 0x0fffffff, true);
  }
  for (let copy = 0; copy < 2; copy++) device.write(fatByteOffset + copy * fatBytes, fatHead);

  if (fatType === 'fat32') {
    const info = new Uint8Array(SECTOR_SIZE);
    const infoView = viewOf(info);
    writeUint(infoView, FSINFO.FSI_LeadSig, FSI_LEAD_SIG);
    writeUint(infoView, FSINFO.FSI_StrucSig, FSI_STRUC_SIG);
    writeUint(infoView, FSINFO.FSI_Free_Count, chosen.clusterCount - 1);
    writeUint(infoView, FSINFO.FSI_Nxt_Free, 3);
    writeUint(infoView, FSINFO.FSI_TrailSig, FSI_TRAIL_SIG);
    device.write(SECTOR_SIZE, info);
    device.write(6 * SECTOR_SIZE, boot);
    device.write(7 * SECTOR_SIZE, info);
  }
  if (label !== '') {
    // Write date 2024-01-01 (FAT dates count years from 1980).
    device.write(rootByteOffset, encodeLabelEntry(labelField, 0, (44 << 9) | (1 << 5) | 1));
  }
  device.flush();
}

