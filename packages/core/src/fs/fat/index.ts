/**
 * FAT12/16/32 with VFAT long names, in pure TypeScript.
 */
export { mountFat, FatVolume, FAT_FILE_MODE, FAT_DIRECTORY_MODE } from './volume.js';
export type { FatMountOptions } from './volume.js';
export { probeFat, parseBootSector } from './boot.js';
export type { FatProbe, FatGeometry } from './boot.js';
export type { FatType } from './codec.js';
export { formatFat } from './format.js';
export type { FormatFatOptions } from './format.js';
export { checkFat } from './check.js';
export type { FatCheckOptions, FatCheckResult } from './check.js';
