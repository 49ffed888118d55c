import type { BlockReader, ByteRange } from '../../device/types.js';
import { PiimgError } from '../../errors.js';
import { readSuperblockWords } from './probe.js';
import { MIN_BLOCK_SIZE, readField, superblock } from './layout.js';

/** Group descriptor fields. Ref: ext4 wiki "Block Group Descriptors"; ext2_fs.h `struct ext4_group_desc`. */
const groupDesc = {
  bg_block_bitmap_lo: 0x00,
  bg_inode_bitmap_lo: 0x04,
  bg_inode_table_lo: 0x08,
  bg_flags: 0x12,
  bg_block_bitmap_hi: 0x20,
  bg_inode_bitmap_hi: 0x24,
  bg_inode_table_hi: 0x28,
} as const;
/** bg_flags: the block bitmap was never written; the group holds only its fixed metadata. */
const EXT4_BG_BLOCK_UNINIT = 0x0002;
const INCOMPAT_META_BG = 0x0010;
const INCOMPAT_64BIT = 0x0080;
const RO_COMPAT_SPARSE_SUPER = 0x0001;
const RO_COMPAT_BIGALLOC = 0x0200;
const COMPAT_SPARSE_SUPER2 = 0x0200;
/** s_reserved_gdt_blocks, s_backup_bgs[2]: not in layout.ts's table because only this reader needs them. */
const S_RESERVED_GDT_BLOCKS = 0xce;
const S_BACKUP_BGS = 0x24c;
/** More groups than any disk of 2^48 blocks of 1 KiB could have at 8192 blocks a group: refuse. */
const MAX_GROUPS = 1 << 24;

/** Collects block numbers into merged byte ranges (blocks arrive in any order). */
class BlockSet {
  private readonly used: Uint8Array;
  constructor(readonly blockCount: number) {
    this.used = new Uint8Array(Math.ceil(blockCount / 8));
  }
  add(first: number, count = 1): void {
    const end = Math.min(this.blockCount, first + count);
    for (let block = Math.max(0, first); block < end; block++) this.used[block >>> 3]! |= 1 << (block & 7);
  }
  addBitmap(firstBlock: number, bitmap: Uint8Array, bits: number): void {
    for (let byte = 0; byte < Math.ceil(bits / 8); byte++) {
      const value = bitmap[byte]!;
      if (value === 0) continue;
      for (let bit = 0; bit < 8; bit++) if (value & (1 << bit) && byte * 8 + bit < bits) this.add(firstBlock + byte * 8 + bit);
    }
  }
  ranges(blockSize: number): ByteRange[] {
    const out: ByteRange[] = [];
    let start = -1;
    const close = (end: number) => {
      if (start >= 0) out.push({ byteOffset: start * blockSize, length: (end - start) * blockSize });
      start = -1;
    };
    for (let byte = 0; byte < this.used.length; byte++) {
      const value = this.used[byte]!;
      // Whole bytes of free or used blocks are the common case: skip bit by bit work for them.
      if (value === 0) close(byte * 8);
      else if (value === 0xff && byte * 8 + 8 <= this.blockCount) {
        if (start < 0) start = byte * 8;
      } else {
        for (let bit = 0; bit < 8 && byte * 8 + bit < this.blockCount; bit++) {
          if (value & (1 << bit)) {
            if (start < 0) start = byte * 8 + bit;
          } else close(byte * 8 + bit);
        }
      }
    }
    close(this.blockCount);
    return out;
  }
}

function isPowerOf(n: number, base: number): boolean {
  while (n > 1 && n % base === 0) n /= base;
  return n === 1;
}

/**
 * The byte ranges of an ext2/3/4 filesystem that hold anything the
 * filesystem uses: blocks set in the block bitmaps, and for groups whose
 * bitmap was never initialised (BLOCK_UNINIT) their superblock backup, group
 * descriptors and every group's bitmaps and inode tables that lie there.
 * Returns undefined for layouts this reader does not follow (meta_bg,
 * bigalloc): callers then treat the whole filesystem as used.
 *
 * Ref: ext4 wiki "Blocks", "Block Group Descriptors", "Flexible Block
 * Groups"; lib/ext2fs/alloc_sb.c (what a BLOCK_UNINIT group holds).
 */
export function ext4UsedRanges(reader: BlockReader): ByteRange[] | undefined {
  const words = readSuperblockWords(reader);
  if (!words) throw new PiimgError('E_EXT4_BAD_SUPERBLOCK', 'not an ext2/3/4 superblock', {});
  const { view, compat, incompat, roCompat } = words;
  if (incompat & INCOMPAT_META_BG || roCompat & RO_COMPAT_BIGALLOC) return undefined;
  const blockSize = MIN_BLOCK_SIZE * 2 ** readField(view, superblock.s_log_block_size);
  const is64 = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount =
    readField(view, superblock.s_blocks_count_lo) + (is64 ? readField(view, superblock.s_blocks_count_hi) * 2 ** 32 : 0);
  const firstDataBlock = readField(view, superblock.s_first_data_block);
  const blocksPerGroup = readField(view, superblock.s_blocks_per_group);
  const descSize = is64 ? readField(view, superblock.s_desc_size) : 32;
  const reservedGdt = view.getUint16(S_RESERVED_GDT_BLOCKS, true);
  const bad = (message: string) => new PiimgError('E_EXT4_CORRUPT', `ext4 allocation map: ${message}`, {});
  if (blocksCount * blockSize > reader.size) throw bad(`${blocksCount} blocks do not fit in the partition`);
  if (blocksPerGroup > blockSize * 8 || blocksPerGroup < 8) throw bad(`${blocksPerGroup} blocks per group`);
  if (is64 && (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0)) throw bad(`descriptor size ${descSize}`);
  if (firstDataBlock >= blocksCount) throw bad(`first data block ${firstDataBlock}`);
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (groupCount > MAX_GROUPS) throw bad(`${groupCount} groups`);
  const gdtBlocks = Math.ceil((groupCount * descSize) / blockSize);
  const gdt = reader.read((firstDataBlock + 1) * blockSize, gdtBlocks * blockSize);
  const gdtView = new DataView(gdt.buffer, gdt.byteOffset, gdt.length);
  const backups = compat & COMPAT_SPARSE_SUPER2 ? [view.getUint32(S_BACKUP_BGS, true), view.getUint32(S_BACKUP_BGS + 4, true)] : undefined;
  const hasSuper = (group: number): boolean => {
    if (group === 0) return true;
    if (backups) return backups.includes(group);
    if (!(roCompat & RO_COMPAT_SPARSE_SUPER)) return true;
    return group === 1 || isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
  };
  const used = new BlockSet(blocksCount);
  // Block 0 of a 1 KiB-block filesystem lies before s_first_data_block: the boot area.
  used.add(0, firstDataBlock + 1);
  const descriptor = (group: number) => {
    const at = group * descSize;
    const u32 = (offset: number) => gdtView.getUint32(at + offset, true);
    const hi = (offset: number) => (is64 ? u32(offset) * 2 ** 32 : 0);
    return {
      blockBitmap: u32(groupDesc.bg_block_bitmap_lo) + hi(groupDesc.bg_block_bitmap_hi),
      inodeBitmap: u32(groupDesc.bg_inode_bitmap_lo) + hi(groupDesc.bg_inode_bitmap_hi),
      inodeTable: u32(groupDesc.bg_inode_table_lo) + hi(groupDesc.bg_inode_table_hi),
      flags: gdtView.getUint16(at + groupDesc.bg_flags, true),
    };
  };
  const inodesPerGroup = readField(view, superblock.s_inodes_per_group);
  const inodeSize = readField(view, superblock.s_rev_level) === 0 ? 128 : readField(view, superblock.s_inode_size);
  const inodeTableBlocks = Math.ceil((inodesPerGroup * inodeSize) / blockSize);
  const groupBlocks = (group: number) => Math.min(blocksPerGroup, blocksCount - (firstDataBlock + group * blocksPerGroup));
  for (let group = 0; group < groupCount; group++) {
    const first = firstDataBlock + group * blocksPerGroup;
    const desc = descriptor(group);
    // Every group's own metadata, wherever flex_bg put it: always in use.
    for (const block of [desc.blockBitmap, desc.inodeBitmap]) {
      if (block >= blocksCount) throw bad(`group ${group} bitmap at block ${block}`);
      used.add(block);
    }
    if (desc.inodeTable + inodeTableBlocks > blocksCount) throw bad(`group ${group} inode table at block ${desc.inodeTable}`);
    used.add(desc.inodeTable, inodeTableBlocks);
    if (hasSuper(group)) used.add(first, 1 + gdtBlocks + reservedGdt);
    if (desc.flags & EXT4_BG_BLOCK_UNINIT) continue;
    const bits = groupBlocks(group);
    used.addBitmap(first, reader.read(desc.blockBitmap * blockSize, Math.ceil(bits / 8)), bits);
  }
  return used.ranges(blockSize);
}
