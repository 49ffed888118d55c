export { PiimgError, isPiimgError, assertWithin, toSafeNumber } from './errors.js';
export type { ErrorData } from './errors.js';
export type { BlockReader, BlockDevice, ByteRange } from './device/types.js';
export type {
  Volume,
  Stats,
  DirEntry,
  FileType,
  FileData,
  WriteFileOptions,
  MkdirOptions,
  RmOptions,
  OwnerOptions,
  MountOptions,
} from './fs/volume.js';
export { defaultClock } from './fs/volume.js';
export type { Partition, PartitionTable, PartitionScheme } from './partition/types.js';
