import { createHash } from 'node:crypto';
import type { BlockReader, ByteRange } from '../device/types.js';

/** bmaptool's block size; its format allows others, every tool uses 4096. */
export const BMAP_BLOCK_SIZE = 4096;
const HASH_READ = 1 << 20;
const ZERO_CHECKSUM = '0'.repeat(64);

/** A block map: its text and the counts it states. */
export interface Bmap {
  /** The XML text of the .bmap file. */
  text: string;
  imageSize: number;
  blocksCount: number;
  mappedBlocksCount: number;
}

/** Block ranges [first, last] covering every byte of `ranges`. */
export function blockRanges(ranges: ByteRange[], imageSize: number, blockSize = BMAP_BLOCK_SIZE): [number, number][] {
  const out: [number, number][] = [];
  const lastBlock = Math.ceil(imageSize / blockSize) - 1;
  for (const range of ranges) {
    if (range.length <= 0) continue;
    const first = Math.floor(range.byteOffset / blockSize);
    const last = Math.min(lastBlock, Math.floor((range.byteOffset + range.length - 1) / blockSize));
    const previous = out[out.length - 1];
    if (previous && first <= previous[1] + 1) previous[1] = Math.max(previous[1], last);
    else out.push([first, last]);
  }
  return out;
}

function rangeChecksum(device: BlockReader, byteOffset: number, length: number): string {
  const hash = createHash('sha256');
  for (let done = 0; done < length; done += HASH_READ) hash.update(device.read(byteOffset + done, Math.min(HASH_READ, length - done)));
  return hash.digest('hex');
}

/**
 * A block map in the bmap 2.0 format of bmap-tools: the image size, the
 * mapped block ranges each with the SHA-256 of its bytes, and the SHA-256 of
 * the file itself computed with that field set to 64 "0" characters.
 * Flashers write only the mapped blocks and verify them.
 *
 * Ref: bmap-tools BmapCreate.py (format 2.0) and BmapCopy.py (what a reader checks).
 */
export function createBmap(device: BlockReader, used: ByteRange[]): Bmap {
  const imageSize = device.size;
  const blocksCount = Math.ceil(imageSize / BMAP_BLOCK_SIZE);
  const blocks = blockRanges(used, imageSize);
  const mappedBlocksCount = blocks.reduce((sum, [first, last]) => sum + last - first + 1, 0);
  const lines = [
    '<?xml version="1.0" ?>',
    '<!-- Block map of a disk image written by piimg: the blocks that hold',
    '     partition tables, file system metadata and file data. Flashers copy',
    '     only these and check each range against its SHA-256. -->',
    '<bmap version="2.0">',
    `    <ImageSize> ${imageSize} </ImageSize>`,
    `    <BlockSize> ${BMAP_BLOCK_SIZE} </BlockSize>`,
    `    <BlocksCount> ${blocksCount} </BlocksCount>`,
    `    <MappedBlocksCount> ${mappedBlocksCount} </MappedBlocksCount>`,
    '    <ChecksumType> sha256 </ChecksumType>',
    `    <BmapFileChecksum> ${ZERO_CHECKSUM} </BmapFileChecksum>`,
    '    <BlockMap>',
  ];
  for (const [first, last] of blocks) {
    const byteOffset = first * BMAP_BLOCK_SIZE;
    const length = Math.min(imageSize, (last + 1) * BMAP_BLOCK_SIZE) - byteOffset;
    const checksum = rangeChecksum(device, byteOffset, length);
    lines.push(`        <Range chksum="${checksum}"> ${first === last ? first : `${first}-${last}`} </Range>`);
  }
  lines.push('    </BlockMap>', '</bmap>', '');
  const zeroed = lines.join('\n');
  const fileChecksum = createHash('sha256').update(zeroed).digest('hex');
  return { text: zeroed.replace(ZERO_CHECKSUM, fileChecksum), imageSize, blocksCount, mappedBlocksCount };
}
