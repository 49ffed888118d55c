export type { BlockReader, BlockDevice, ByteRange } from './types.js';
export { MemoryDevice } from './memory.js';
export { FileReader, FileDevice } from './file.js';
export { slice } from './slice.js';
export { Overlay, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_MEMORY } from './overlay.js';
export type { OverlayOptions } from './overlay.js';
export { SharedReader } from './shared.js';
export type { ClosableReader } from './shared.js';
