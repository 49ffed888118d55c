export { PiimgError, isPiimgError, assertWithin, toSafeNumber } from './errors.js';
export type { ErrorData } from './errors.js';
export * from './device/index.js';
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
export { normalizePath } from './fs/path.js';
export {
  readPartitionTable,
  setDiskId,
  resizePartition,
  randomDiskId,
  mbrTypeName,
  gptTypeName,
} from './partition/index.js';
export type { Partition, PartitionTable, PartitionScheme, ReadPartitionTableOptions, ExtendedPartition } from './partition/index.js';
export { crc32, mbrPartUuid, GPT_TYPE } from './partition/index.js';
export * from './image/index.js';
export { mountFat, probeFat, formatFat, checkFat, FatVolume } from './fs/fat/index.js';
export type { FatMountOptions, FormatFatOptions, FatProbe, FatCheckResult } from './fs/fat/index.js';
export { mountExt4, probeExt, verifyExt4, formatExt4, Ext4Volume } from './fs/ext4/index.js';
export type { Ext4MountOptions, Ext4VerifyResult, FormatExt4Options, ExtProbe } from './fs/ext4/index.js';
export { walk } from './fs/walk.js';
export type { WalkEntry } from './fs/walk.js';
// Configuration and recipes load on first use (see lazy.ts); their full synchronous API is @piimg/core/config.
export { loadConfig, applyConfig, detectImageRelease } from './lazy.js';
export { resolveImageOwner } from './recipe/accounts.js';
export type { DeviceConfig, DeviceConfigInput, FileEntry, WifiNetwork, LoadedConfig, ConfigOverrides } from './config/index.js';
export type { ApplyReport, ApplyTarget, ApplyOptions, Change, ChangeAction, VolumeName, Release, FirstBootMechanism } from './recipe/index.js';
export * from './crypto/index.js';
export { readHostFile } from './host.js';
