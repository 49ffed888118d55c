import { mke2fs } from '@piimg/wasm';
import type { BlockDevice } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import { defaultClock } from '../volume.js';

/** Options of `formatExt4` (mke2fs, run in WebAssembly). */
export interface FormatExt4Options {
  /** ext4 by default. */
  type?: 'ext2' | 'ext3' | 'ext4';
  /** Up to 16 bytes. */
  label?: string;
  /** mke2fs -O list, for example ['^64bit', '^huge_file'] as pi-gen uses. */
  features?: string[];
  /** 1024, 2048 or 4096; mke2fs chooses when absent. */
  blockSize?: 1024 | 2048 | 4096;
  /** Bytes per inode (mke2fs -i). */
  inodeRatio?: number;
  /** 128 or 256 (mke2fs -I). */
  inodeSize?: 128 | 256;
  /** Filesystem UUID; random when absent. Give it (and hashSeed) for byte-identical output. */
  uuid?: string;
  /** Directory hash seed (a UUID); random when absent. */
  hashSeed?: string;
  /** Reserved blocks percentage (mke2fs -m), 5 by default. */
  reservedPercent?: number;
  /** Timestamp of the new filesystem; the default clock (SOURCE_DATE_EPOCH aware) when absent. */
  now?: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FEATURE = /^\^?[a-z0-9_]+$/;

/** Creates an ext2/3/4 filesystem over the whole device with mke2fs compiled to WebAssembly. */
export async function formatExt4(device: BlockDevice, options: FormatExt4Options = {}): Promise<void> {
  const args = ['-q', '-F', '-t', options.type ?? 'ext4'];
  // mke2fs keeps only the last -E, so extended options are joined into one.
  const extended = ['nodiscard'];
  if (options.label !== undefined) {
    if (new TextEncoder().encode(options.label).length > 16) throw new PiimgError('EINVAL', 'label longer than 16 bytes', { label: options.label });
    args.push('-L', options.label);
  }
  if (options.features?.length) {
    for (const feature of options.features) if (!FEATURE.test(feature)) throw new PiimgError('EINVAL', `bad feature name ${JSON.stringify(feature)}`, { feature });
    args.push('-O', options.features.join(','));
  }
  if (options.blockSize !== undefined) args.push('-b', String(options.blockSize));
  if (options.inodeRatio !== undefined) args.push('-i', String(options.inodeRatio));
  if (options.inodeSize !== undefined) args.push('-I', String(options.inodeSize));
  if (options.reservedPercent !== undefined) args.push('-m', String(options.reservedPercent));
  if (options.uuid !== undefined) {
    if (!UUID.test(options.uuid)) throw new PiimgError('EINVAL', 'uuid must be 8-4-4-4-12 hex', { uuid: options.uuid });
    args.push('-U', options.uuid);
  }
  if (options.hashSeed !== undefined) {
    if (!UUID.test(options.hashSeed)) throw new PiimgError('EINVAL', 'hashSeed must be 8-4-4-4-12 hex', { hashSeed: options.hashSeed });
    extended.push(`hash_seed=${options.hashSeed}`);
  }
  args.push('-E', extended.join(','));
  const sizeKiB = Math.floor(device.size / 1024);
  if (sizeKiB < 64) throw new PiimgError('ENOSPC', `device of ${device.size} bytes is too small for ext4`, { size: device.size });
  // mke2fs takes its clock from SOURCE_DATE_EPOCH (lib/ext2fs/initialize.c).
  const now = options.now ?? defaultClock()();
  const result = mke2fs(device, args, { env: { SOURCE_DATE_EPOCH: String(Math.max(0, Math.floor(now.getTime() / 1000))) } });
  if (result.status !== 0) {
    throw new PiimgError('E_EXT4_FORMAT', `mke2fs failed (status ${result.status}): ${(result.stderr || result.stdout).trim().slice(0, 2000)}`, {
      status: result.status,
    });
  }
}
