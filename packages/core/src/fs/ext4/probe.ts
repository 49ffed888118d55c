import type { BlockReader } from '../../device/types.js';
import {
  compatFeatures,
  EXT2_DYNAMIC_REV,
  EXT2_SUPER_MAGIC,
  EXT3_INCOMPAT,
  EXT3_RO_COMPAT,
  featureNames,
  incompatFeatures,
  MAX_LOG_BLOCK_SIZE,
  MIN_BLOCK_SIZE,
  readBytes,
  readField,
  roCompatFeatures,
  superblock,
  SUPERBLOCK_BYTE_OFFSET,
  SUPERBLOCK_SIZE,
} from './layout.js';

/** What `probeExt` reads from an ext2/3/4 superblock. */
export interface ExtProbe {
  /** As blkid names it: ext4 when any feature beyond ext3's is set, ext3 with a journal, else ext2. */
  type: 'ext2' | 'ext3' | 'ext4';
  label?: string;
  /** s_uuid as 8-4-4-4-12 lower-case hex. */
  uuid: string;
  blockSize: number;
  /** Feature names as e2fsprogs prints them (compat, then incompat, then ro_compat). */
  features: string[];
}

/** Raw feature words of a superblock, for callers that check support. */
export interface ExtFeatureWords {
  compat: number;
  incompat: number;
  roCompat: number;
}

/**
 * Reads the primary superblock and checks the fields a real filesystem
 * always has sane. Returns undefined for anything that is not ext2/3/4.
 */
export function readSuperblockWords(reader: BlockReader): (ExtFeatureWords & { view: DataView; bytes: Uint8Array }) | undefined {
  if (reader.size < SUPERBLOCK_BYTE_OFFSET + SUPERBLOCK_SIZE) return undefined;
  const bytes = reader.read(SUPERBLOCK_BYTE_OFFSET, SUPERBLOCK_SIZE);
  const view = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_SIZE);
  if (readField(view, superblock.s_magic) !== EXT2_SUPER_MAGIC) return undefined;
  if (readField(view, superblock.s_rev_level) > EXT2_DYNAMIC_REV) return undefined;
  if (readField(view, superblock.s_log_block_size) > MAX_LOG_BLOCK_SIZE) return undefined;
  if (readField(view, superblock.s_blocks_per_group) === 0) return undefined;
  if (readField(view, superblock.s_inodes_per_group) === 0) return undefined;
  if (readField(view, superblock.s_inodes_count) === 0) return undefined;
  if (readField(view, superblock.s_blocks_count_lo) === 0 && readField(view, superblock.s_blocks_count_hi) === 0) return undefined;
  return {
    bytes,
    view,
    compat: readField(view, superblock.s_feature_compat),
    incompat: readField(view, superblock.s_feature_incompat),
    roCompat: readField(view, superblock.s_feature_ro_compat),
  };
}

/**
 * Cheap detection of an ext2/3/4 filesystem from its superblock, in pure
 * TypeScript. Never throws for garbage data: anything that does not look
 * like an ext superblock gives undefined. Errors of the reader itself
 * (for example a range outside the device) are passed on.
 *
 * Ref: ext4 wiki "The Super Block"; blkid's ext probe for the type rule.
 */
export function probeExt(reader: BlockReader): ExtProbe | undefined {
  const words = readSuperblockWords(reader);
  if (words === undefined) return undefined;
  const { view, bytes, compat, incompat, roCompat } = words;
  // An external journal device carries an ext superblock but holds no files.
  if (incompat & 0x0008) return undefined;

  const blockSize = MIN_BLOCK_SIZE * 2 ** readField(view, superblock.s_log_block_size);
  const hasJournal = (compat & 0x0004) !== 0;
  const beyondExt3 = (incompat & ~EXT3_INCOMPAT) !== 0 || (roCompat & ~EXT3_RO_COMPAT) !== 0;
  const type = beyondExt3 ? 'ext4' : hasJournal ? 'ext3' : 'ext2';

  const result: ExtProbe = {
    type,
    uuid: formatUuid(readBytes(bytes, superblock.s_uuid)),
    blockSize,
    features: [
      ...featureNames(compat, compatFeatures, 'C'),
      ...featureNames(incompat, incompatFeatures, 'I'),
      ...featureNames(roCompat, roCompatFeatures, 'R'),
    ],
  };
  const label = decodeLabel(readBytes(bytes, superblock.s_volume_name));
  if (label !== '') result.label = label;
  return result;
}

function formatUuid(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** s_volume_name is up to 16 bytes, NUL-padded; e2label stores UTF-8. Invalid bytes become U+FFFD rather than failing. */
function decodeLabel(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, end === -1 ? bytes.length : end));
}
