/**
 * On-disk layout of the ext2/3/4 superblock, as far as piimg reads it
 * itself (detection, feature checks). Everything else about ext4 is done
 * by libext2fs in WebAssembly (@piimg/wasm).
 *
 * Ref: ext4 wiki "Ext4 Disk Layout", section "The Super Block";
 * e2fsprogs lib/ext2fs/ext2_fs.h `struct ext2_super_block`.
 */

/** The primary superblock always starts 1024 bytes into the filesystem, whatever the block size. */
export const SUPERBLOCK_BYTE_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
/** s_magic */
export const EXT2_SUPER_MAGIC = 0xef53;
/** s_log_block_size is a shift of 1024; the kernel accepts up to 64 KiB blocks. */
export const MIN_BLOCK_SIZE = 1024;
export const MAX_LOG_BLOCK_SIZE = 6;
/** s_rev_level: 0 = EXT2_GOOD_OLD_REV, 1 = EXT2_DYNAMIC_REV. */
export const EXT2_DYNAMIC_REV = 1;

type FieldType = 'u8' | 'u16' | 'u32' | 'bytes';

export interface Field {
  offset: number;
  type: FieldType;
  length?: number;
}

/** Byte offsets inside the superblock (little-endian). Names are those of struct ext2_super_block. */
export const superblock = {
  s_inodes_count: { offset: 0x00, type: 'u32' },
  s_blocks_count_lo: { offset: 0x04, type: 'u32' },
  s_r_blocks_count_lo: { offset: 0x08, type: 'u32' },
  s_free_blocks_count_lo: { offset: 0x0c, type: 'u32' },
  s_free_inodes_count: { offset: 0x10, type: 'u32' },
  s_first_data_block: { offset: 0x14, type: 'u32' },
  s_log_block_size: { offset: 0x18, type: 'u32' },
  s_log_cluster_size: { offset: 0x1c, type: 'u32' },
  s_blocks_per_group: { offset: 0x20, type: 'u32' },
  s_clusters_per_group: { offset: 0x24, type: 'u32' },
  s_inodes_per_group: { offset: 0x28, type: 'u32' },
  s_mtime: { offset: 0x2c, type: 'u32' },
  s_wtime: { offset: 0x30, type: 'u32' },
  s_mnt_count: { offset: 0x34, type: 'u16' },
  s_max_mnt_count: { offset: 0x36, type: 'u16' },
  s_magic: { offset: 0x38, type: 'u16' },
  s_state: { offset: 0x3a, type: 'u16' },
  s_errors: { offset: 0x3c, type: 'u16' },
  s_minor_rev_level: { offset: 0x3e, type: 'u16' },
  s_lastcheck: { offset: 0x40, type: 'u32' },
  s_checkinterval: { offset: 0x44, type: 'u32' },
  s_creator_os: { offset: 0x48, type: 'u32' },
  s_rev_level: { offset: 0x4c, type: 'u32' },
  s_def_resuid: { offset: 0x50, type: 'u16' },
  s_def_resgid: { offset: 0x52, type: 'u16' },
  s_first_ino: { offset: 0x54, type: 'u32' },
  s_inode_size: { offset: 0x58, type: 'u16' },
  s_block_group_nr: { offset: 0x5a, type: 'u16' },
  s_feature_compat: { offset: 0x5c, type: 'u32' },
  s_feature_incompat: { offset: 0x60, type: 'u32' },
  s_feature_ro_compat: { offset: 0x64, type: 'u32' },
  s_uuid: { offset: 0x68, type: 'bytes', length: 16 },
  s_volume_name: { offset: 0x78, type: 'bytes', length: 16 },
  s_last_mounted: { offset: 0x88, type: 'bytes', length: 64 },
  s_journal_inum: { offset: 0xe0, type: 'u32' },
  s_def_hash_version: { offset: 0xfc, type: 'u8' },
  s_desc_size: { offset: 0xfe, type: 'u16' },
  s_default_mount_opts: { offset: 0x100, type: 'u32' },
  s_mkfs_time: { offset: 0x108, type: 'u32' },
  s_blocks_count_hi: { offset: 0x150, type: 'u32' },
  s_checksum_type: { offset: 0x175, type: 'u8' },
  s_checksum_seed: { offset: 0x270, type: 'u32' },
  s_checksum: { offset: 0x3fc, type: 'u32' },
} as const satisfies Record<string, Field>;

export type SuperblockField = keyof typeof superblock;

/** s_feature_compat bits, named as lib/e2p/feature.c prints them. Ref: ext2_fs.h EXT2_FEATURE_COMPAT_* / EXT4_FEATURE_COMPAT_*. */
export const compatFeatures: Record<number, string> = {
  0x0001: 'dir_prealloc',
  0x0002: 'imagic_inodes',
  0x0004: 'has_journal',
  0x0008: 'ext_attr',
  0x0010: 'resize_inode',
  0x0020: 'dir_index',
  0x0040: 'lazy_bg',
  // 0x0080 was exclude_inode, never used.
  0x0100: 'snapshot_bitmap',
  0x0200: 'sparse_super2',
  0x0400: 'fast_commit',
  0x0800: 'stable_inodes',
  0x1000: 'orphan_file',
};

/** s_feature_incompat bits. Ref: ext2_fs.h EXT2_FEATURE_INCOMPAT_* / EXT4_FEATURE_INCOMPAT_*. */
export const incompatFeatures: Record<number, string> = {
  0x0001: 'compression',
  0x0002: 'filetype',
  0x0004: 'needs_recovery',
  0x0008: 'journal_dev',
  0x0010: 'meta_bg',
  0x0040: 'extent',
  0x0080: '64bit',
  0x0100: 'mmp',
  0x0200: 'flex_bg',
  0x0400: 'ea_inode',
  0x1000: 'dirdata',
  0x2000: 'metadata_csum_seed',
  0x4000: 'large_dir',
  0x8000: 'inline_data',
  0x10000: 'encrypt',
  0x20000: 'casefold',
};

/** s_feature_ro_compat bits. Ref: ext2_fs.h EXT2_FEATURE_RO_COMPAT_* / EXT4_FEATURE_RO_COMPAT_*. */
export const roCompatFeatures: Record<number, string> = {
  0x0001: 'sparse_super',
  0x0002: 'large_file',
  // 0x0004 was btree_dir, never used; e2fsprogs prints it as FEATURE_R2.
  0x0008: 'huge_file',
  0x0010: 'uninit_bg',
  0x0020: 'dir_nlink',
  0x0040: 'extra_isize',
  // 0x0080 is has_snapshot (out-of-tree Next3), unnamed in e2fsprogs.
  0x0100: 'quota',
  0x0200: 'bigalloc',
  0x0400: 'metadata_csum',
  0x0800: 'replica',
  0x1000: 'read-only',
  0x2000: 'project',
  0x4000: 'shared_blocks',
  0x8000: 'verity',
  0x10000: 'orphan_present',
};

/**
 * Features our libext2fs 1.47.2 build writes correctly. This mirrors
 * EXT2_LIB_FEATURE_{INCOMPAT,RO_COMPAT}_SUPP in lib/ext2fs/ext2fs.h for a
 * build configured with --disable-mmp (so `mmp` is absent). `journal_dev` is
 * an external journal, not a filesystem. `needs_recovery` is handled separately: a journal that needs
 * replaying is refused for writing until it is replayed.
 */
export const WRITABLE_INCOMPAT =
  0x0002 | 0x0004 | 0x0010 | 0x0040 | 0x0080 | 0x0200 | 0x0400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
export const WRITABLE_RO_COMPAT =
  0x0001 | 0x0002 | 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0100 | 0x0200 | 0x0400 | 0x2000 | 0x8000 | 0x10000;
/**
 * ro_compat bits libext2fs reads but piimg still refuses to write: `read-only`
 * says so itself, and `shared_blocks` (deduplicated blocks) would need
 * copy-on-write that libext2fs does not do.
 */
export const READ_ONLY_RO_COMPAT = 0x1000 | 0x4000;
/**
 * Incompat features under which reading is still safe through libext2fs.
 * Everything libext2fs can write it can read; beyond that, nothing.
 */
export const READABLE_INCOMPAT = WRITABLE_INCOMPAT;

/** ext3 understands these incompat/ro_compat bits; anything else makes the filesystem ext4 (as blkid decides). */
export const EXT3_INCOMPAT = 0x0002 | 0x0004 | 0x0010;
export const EXT3_RO_COMPAT = 0x0001 | 0x0002 | 0x0004;

/** Names of the bits set in `mask`, unknown bits as `FEATURE_<kind>_<bit>` (as e2fsprogs prints them). */
export function featureNames(mask: number, table: Record<number, string>, kind: 'C' | 'I' | 'R'): string[] {
  const names: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    if (((mask >>> bit) & 1) === 1) names.push(table[2 ** bit] ?? `FEATURE_${kind}${bit}`);
  }
  return names;
}

export function readField(view: DataView, field: Field): number {
  switch (field.type) {
    case 'u8':
      return view.getUint8(field.offset);
    case 'u16':
      return view.getUint16(field.offset, true);
    case 'u32':
      return view.getUint32(field.offset, true);
    default:
      throw new TypeError(`field at 0x${field.offset.toString(16)} is a byte array`);
  }
}

export function readBytes(bytes: Uint8Array, field: Field): Uint8Array {
  return bytes.subarray(field.offset, field.offset + (field.length ?? 0));
}
