import type { BlockReader } from '../device/types.js';
import { probeExt } from '../fs/ext4/index.js';
import { probeFat } from '../fs/fat/index.js';

/** The filesystems piimg recognises by signature. */
export type FilesystemType = 'fat12' | 'fat16' | 'fat32' | 'ext2' | 'ext3' | 'ext4' | 'swap' | 'unknown';

/** What a partition holds, found by signature. */
export interface FilesystemInfo {
  type: FilesystemType;
  label?: string;
  /** ext: the filesystem UUID; FAT: the volume id as XXXX-XXXX; swap: the UUID. */
  uuid?: string;
  /** ext: the feature names the superblock carries. */
  features?: string[];
  blockSize?: number;
}

// Linux swap: "SWAPSPACE2" ends the first page; Pi 5 kernels use 16 KiB pages, some arm64 64 KiB.
// Ref: linux include/linux/swap.h, union swap_header.
const SWAP_PAGE_SIZES = [4096, 16384, 65536];
const SWAP_MAGIC = 'SWAPSPACE2';

function probeSwap(reader: BlockReader): FilesystemInfo | undefined {
  for (const pageSize of SWAP_PAGE_SIZES) {
    if (reader.size < pageSize) break;
    const magic = reader.read(pageSize - 10, 10);
    if (String.fromCharCode(...magic) !== SWAP_MAGIC) continue;
    const header = reader.read(0x400, 0x2c);
    const uuid = [...header.subarray(0x0c, 0x1c)].map((b) => b.toString(16).padStart(2, '0')).join('');
    const labelBytes = header.subarray(0x1c, 0x2c);
    const end = labelBytes.indexOf(0);
    const label = new TextDecoder().decode(labelBytes.subarray(0, end < 0 ? 16 : end));
    return {
      type: 'swap',
      uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
      ...(label ? { label } : {}),
      blockSize: pageSize,
    };
  }
  return undefined;
}

/** Detects the filesystem of a partition by its signatures, never by trying to mount it. */
export function detectFilesystem(reader: BlockReader): FilesystemInfo {
  if (reader.size < 2048) return { type: 'unknown' };
  const ext = probeExt(reader);
  if (ext) {
    return { type: ext.type, uuid: ext.uuid, features: ext.features, blockSize: ext.blockSize, ...(ext.label ? { label: ext.label } : {}) };
  }
  const fat = probeFat(reader);
  if (fat) {
    return { type: fat.fatType, uuid: fat.volumeId, blockSize: fat.clusterSize, ...(fat.label ? { label: fat.label } : {}) };
  }
  return probeSwap(reader) ?? { type: 'unknown' };
}
