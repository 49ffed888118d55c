export { openImage, Image } from './image.js';
export type { OpenImageOptions, ImagePartition, PartitionSelector, VerifyFinding } from './image.js';
export { detectFilesystem } from './detect.js';
export type { FilesystemInfo, FilesystemType } from './detect.js';
export { resolveSource, sniffCompression, defaultCacheDir, DEFAULT_MAX_IMAGE_SIZE } from './source.js';
export type { Compression, Progress, SourceOptions, ResolvedSource } from './source.js';
export { sparseCopy } from './save.js';
export type { SaveOptions, SaveResult } from './save.js';
