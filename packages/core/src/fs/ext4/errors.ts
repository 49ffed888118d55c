import { Ext2fsCallError } from '@piimg/wasm';
import { PiimgError } from '../../errors.js';

/**
 * libext2fs error names (lib/ext2fs/ext2_err.et) and C errno names as the
 * shim reports them, mapped to piimg codes. Anything not listed becomes
 * E_EXT4 with the libext2fs name in data.libext2fs; raw numbers never
 * leave @piimg/wasm.
 */
const codes: Record<string, string> = {
  EXT2_ET_FILE_NOT_FOUND: 'ENOENT',
  EXT2_ET_NO_DIRECTORY: 'ENOTDIR',
  EXT2_ET_DIR_EXISTS: 'EEXIST',
  EXT2_ET_FILE_EXISTS: 'EEXIST',
  EXT2_ET_SYMLINK_LOOP: 'ELOOP',
  EXT2_ET_BLOCK_ALLOC_FAIL: 'ENOSPC',
  EXT2_ET_INODE_ALLOC_FAIL: 'ENOSPC',
  EXT2_ET_DIR_NO_SPACE: 'ENOSPC',
  EXT2_ET_DIR_NO_SPACE_FOR_CSUM: 'ENOSPC',
  EXT2_ET_EA_NO_SPACE: 'ENOSPC',
  EXT2_ET_INLINE_DATA_NO_SPACE: 'ENOSPC',
  EXT2_ET_RO_FILSYS: 'EROFS',
  EXT2_ET_FILE_TOO_BIG: 'EFBIG',
  EXT2_ET_SHORT_READ: 'EIO',
  EXT2_ET_SHORT_WRITE: 'EIO',
  EXT2_ET_NO_MEMORY: 'ENOMEM',
  EXT2_ET_UNSUPP_FEATURE: 'E_EXT4_UNSUPPORTED_FEATURE',
  EXT2_ET_RO_UNSUPP_FEATURE: 'E_EXT4_UNSUPPORTED_FEATURE',
  EXT2_ET_BAD_MAGIC: 'E_EXT4_BAD_SUPERBLOCK',
  EXT2_ET_CORRUPT_SUPERBLOCK: 'E_EXT4_BAD_SUPERBLOCK',
  EXT2_ET_SB_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_GDESC_BAD_BLOCK_MAP: 'E_EXT4_CORRUPT',
  EXT2_ET_GDESC_BAD_INODE_MAP: 'E_EXT4_CORRUPT',
  EXT2_ET_GDESC_BAD_INODE_TABLE: 'E_EXT4_CORRUPT',
  EXT2_ET_BAD_GROUP_DESCRIPTORS: 'E_EXT4_CORRUPT',
  EXT2_ET_BAD_DESC_SIZE: 'E_EXT4_CORRUPT',
  EXT2_ET_DIR_CORRUPTED: 'E_EXT4_CORRUPT',
  EXT2_ET_INODE_CORRUPTED: 'E_EXT4_CORRUPT',
  EXT2_ET_EXTENT_HEADER_BAD: 'E_EXT4_CORRUPT',
  EXT2_ET_INODE_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_DIR_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_EXTENT_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_BLOCK_BITMAP_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_INODE_BITMAP_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_EXT_ATTR_CSUM_INVALID: 'E_EXT4_CORRUPT',
  EXT2_ET_BAD_EA_HEADER: 'E_EXT4_CORRUPT',
  WASM_TRAP: 'E_EXT4_CORRUPT',
  ENOENT: 'ENOENT',
  ENOTDIR: 'ENOTDIR',
  EISDIR: 'EISDIR',
  EEXIST: 'EEXIST',
  ENOSPC: 'ENOSPC',
  EMLINK: 'EMLINK',
  EFBIG: 'EFBIG',
  ENOMEM: 'ENOMEM',
  EIO: 'EIO',
  EROFS: 'EROFS',
  ELOOP: 'ELOOP',
  ENAMETOOLONG: 'ENAMETOOLONG',
};

/** Wraps an error thrown by @piimg/wasm into a PiimgError carrying the path. */
export function toPiimgError(error: unknown, data: Record<string, unknown>): unknown {
  if (!(error instanceof Ext2fsCallError)) return error;
  const code = codes[error.errorName] ?? 'E_EXT4';
  const where = typeof data.path === 'string' ? `: ${data.path}` : '';
  return new PiimgError(code, `${error.message}${where}`, { ...data, libext2fs: error.errorName, operation: error.operation }, { cause: error });
}
