export { probeExt } from './probe.js';
export type { ExtProbe } from './probe.js';
export { mountExt4, Ext4Volume } from './volume.js';
export type { Ext4MountOptions } from './volume.js';
export { verifyExt4 } from './verify.js';
export type { Ext4VerifyResult } from './verify.js';
export { formatExt4 } from './format.js';
export type { FormatExt4Options } from './format.js';
