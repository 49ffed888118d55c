import { PiimgError } from '../../errors.js';
import { crc32 } from '../../partition/crc32.js';

/**
 * The .xz container: Stream Header, Blocks, Index, Stream Footer, Streams
 * possibly concatenated with Stream Padding between them. Only the container
 * is parsed here; Blocks are decoded by liblzma (@piimg/wasm).
 * Ref: The .xz File Format 1.2.1 (tukaani.org/xz/xz-file-format.txt).
 */

/** §2.1.1.1 Header Magic Bytes. */
export const HEADER_MAGIC = Uint8Array.of(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00);
/** §2.1.2.4 Footer Magic Bytes ("YZ"). */
export const FOOTER_MAGIC = Uint8Array.of(0x59, 0x5a);
/** §2.1.1 / §2.1.2: both the Stream Header and the Stream Footer are 12 bytes. */
export const STREAM_HEADER_SIZE = 12;
export const STREAM_FOOTER_SIZE = 12;
/** §1.2 Multibyte Integers: at most 9 bytes, values below 2^63. */
const MULTIBYTE_MAX_BYTES = 9;
/** §4 Index: the Backward Size field can describe up to 16 GiB; more than this is refused (a 64 GiB image in 64 KiB Blocks needs ~8 MiB). */
export const MAX_INDEX_SIZE = 64 << 20;

/** One Block as the Index describes it, with its place in the file and in the decoded image. */
export interface XzBlock {
  /** Byte offset of the Block Header in the .xz file. */
  compressedOffset: number;
  /** Unpadded Size (§4.3.1): Block Header + Compressed Data + Check. */
  unpaddedSize: number;
  /** Bytes the Block occupies in the file: Unpadded Size rounded up to four (Block Padding, §3.2). */
  totalSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  /** The Stream's Check type (§2.1.1.2). */
  check: number;
}

export interface XzIndex {
  blocks: XzBlock[];
  uncompressedSize: number;
  streams: number;
}

const bad = (message: string): PiimgError => new PiimgError('E_BAD_COMPRESSED', `not a valid xz file: ${message}`, { compression: 'xz' });

/** Size of the Check field for a Check ID (§3.4: 0, 4, 8, 16, 32 or 64 bytes by ranges of three IDs). */
export function checkSize(check: number): number {
  if (check === 0) return 0;
  return 4 << Math.floor((check - 1) / 3);
}

export function encodeMultibyte(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a multibyte integer: ${value}`);
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return Uint8Array.from(out);
}

/** Decodes a Multibyte Integer at `offset`; refuses values above Number.MAX_SAFE_INTEGER. */
export function decodeMultibyte(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let value = 0;
  for (let i = 0; i < MULTIBYTE_MAX_BYTES; i++) {
    if (offset + i >= bytes.length) throw bad('truncated integer in the Index');
    const byte = bytes[offset + i]!;
    // §1.2: a multibyte integer never ends in a zero byte, except the value 0 itself.
    if (i > 0 && byte === 0) throw bad('non-minimal integer in the Index');
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (!Number.isSafeInteger(value)) throw bad('integer in the Index too large');
    if ((byte & 0x80) === 0) return { value, next: offset + i + 1 };
  }
  throw bad('integer in the Index longer than 9 bytes');
}

const u32 = (bytes: Uint8Array, offset: number): number => new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0, true);

function putU32(out: Uint8Array, offset: number, value: number): void {
  new DataView(out.buffer, out.byteOffset + offset, 4).setUint32(0, value >>> 0, true);
}

/** §2.1.1 Stream Header for a Check type. */
export function encodeStreamHeader(check: number): Uint8Array {
  const out = new Uint8Array(STREAM_HEADER_SIZE);
  out.set(HEADER_MAGIC);
  out[7] = check;
  putU32(out, 8, crc32(out.subarray(6, 8)));
  return out;
}

/** Returns the Check type of a valid Stream Header. */
export function parseStreamHeader(bytes: Uint8Array): number {
  if (bytes.length < STREAM_HEADER_SIZE || !HEADER_MAGIC.every((byte, i) => bytes[i] === byte)) throw bad('no Stream Header');
  if (u32(bytes, 8) !== crc32(bytes.subarray(6, 8))) throw bad('Stream Header CRC32 mismatch');
  // §2.1.1.2: the first byte and the high nibble of the second are reserved, must be zero.
  if (bytes[6] !== 0 || (bytes[7]! & 0xf0) !== 0) throw bad('unsupported Stream Flags');
  return bytes[7]!;
}

/** §2.1.2 Stream Footer for an Index of `indexSize` bytes. */
export function encodeStreamFooter(check: number, indexSize: number): Uint8Array {
  const out = new Uint8Array(STREAM_FOOTER_SIZE);
  putU32(out, 4, indexSize / 4 - 1);
  out[9] = check;
  out.set(FOOTER_MAGIC, 10);
  putU32(out, 0, crc32(out.subarray(4, 10)));
  return out;
}

/** Returns the Check type and the Index size (Backward Size) of a valid Stream Footer. */
export function parseStreamFooter(bytes: Uint8Array): { check: number; indexSize: number } {
  if (bytes.length < STREAM_FOOTER_SIZE || bytes[10] !== FOOTER_MAGIC[0] || bytes[11] !== FOOTER_MAGIC[1]) {
    throw bad('no Stream Footer at the end (truncated?)');
  }
  if (u32(bytes, 0) !== crc32(bytes.subarray(4, 10))) throw bad('Stream Footer CRC32 mismatch');
  if (bytes[8] !== 0 || (bytes[9]! & 0xf0) !== 0) throw bad('unsupported Stream Flags');
  return { check: bytes[9]!, indexSize: (u32(bytes, 4) + 1) * 4 };
}

/** §4 Index for the Blocks of one Stream: (Unpadded Size, Uncompressed Size) pairs. */
export function encodeIndex(records: readonly { unpaddedSize: number; uncompressedSize: number }[]): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x00), encodeMultibyte(records.length)];
  for (const record of records) parts.push(encodeMultibyte(record.unpaddedSize), encodeMultibyte(record.uncompressedSize));
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const padded = Math.ceil(length / 4) * 4;
  const out = new Uint8Array(padded + 4);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  putU32(out, padded, crc32(out.subarray(0, padded)));
  return out;
}

/** Parses an Index (§4) into its records; `bytes` is exactly the Index. */
export function parseIndex(bytes: Uint8Array): { unpaddedSize: number; uncompressedSize: number }[] {
  if (bytes.length < 8 || bytes.length % 4 !== 0 || bytes[0] !== 0x00) throw bad('no Index Indicator');
  const crcAt = bytes.length - 4;
  if (u32(bytes, crcAt) !== crc32(bytes.subarray(0, crcAt))) throw bad('Index CRC32 mismatch');
  let { value: count, next } = decodeMultibyte(bytes, 1);
  // Each record takes at least two bytes: a count beyond that is a lie.
  if (count > (crcAt - next) / 2) throw bad('Index record count larger than the Index');
  const records: { unpaddedSize: number; uncompressedSize: number }[] = [];
  for (let i = 0; i < count; i++) {
    const unpadded = decodeMultibyte(bytes, next);
    const uncompressed = decodeMultibyte(bytes, unpadded.next);
    next = uncompressed.next;
    if (next > crcAt) throw bad('Index records overrun the Index');
    // §4.3.1: Unpadded Size is at least 5 (a minimal Block Header and one byte).
    if (unpadded.value < 5) throw bad('Unpadded Size below 5');
    records.push({ unpaddedSize: unpadded.value, uncompressedSize: uncompressed.value });
  }
  // §4.4 Index Padding: zero bytes up to a multiple of four.
  if (crcAt - next > 3 || bytes.subarray(next, crcAt).some((byte) => byte !== 0)) throw bad('bad Index Padding');
  return records;
}

/**
 * Reads the Index of every Stream of an .xz file from its end, without
 * touching the Blocks: the map parallel decoding needs. `read(position,
 * length)` returns the file's bytes. Every size is checked against the file
 * and against the others; a file that does not add up is E_BAD_COMPRESSED.
 */
export function readXzIndex(fileSize: number, read: (position: number, length: number) => Uint8Array): XzIndex {
  const streams: XzBlock[][] = [];
  let end = fileSize;
  if (end % 4 !== 0) throw bad('file size not a multiple of four (truncated?)');
  while (end > 0) {
    // §2.2 Stream Padding: multiples of four zero bytes after a Stream.
    const word = read(end - 4, 4);
    if (word.every((byte) => byte === 0)) {
      end -= 4;
      continue;
    }
    if (end < STREAM_HEADER_SIZE + STREAM_FOOTER_SIZE + 8) throw bad('truncated Stream');
    const footer = parseStreamFooter(read(end - STREAM_FOOTER_SIZE, STREAM_FOOTER_SIZE));
    const indexEnd = end - STREAM_FOOTER_SIZE;
    if (footer.indexSize > MAX_INDEX_SIZE) throw bad(`Index of ${footer.indexSize} bytes is larger than allowed`);
    if (footer.indexSize > indexEnd - STREAM_HEADER_SIZE) throw bad('Backward Size larger than the Stream');
    const records = parseIndex(read(indexEnd - footer.indexSize, footer.indexSize));
    let blocksSize = 0;
    for (const record of records) blocksSize += Math.ceil(record.unpaddedSize / 4) * 4;
    const start = indexEnd - footer.indexSize - blocksSize - STREAM_HEADER_SIZE;
    if (!Number.isSafeInteger(start) || start < 0) throw bad('Index describes more Blocks than the file holds');
    // §2.1.2.3: the Stream Flags of the footer must equal those of the header.
    if (parseStreamHeader(read(start, STREAM_HEADER_SIZE)) !== footer.check) throw bad('Stream Header and Footer disagree');
    const blocks: XzBlock[] = [];
    let position = start + STREAM_HEADER_SIZE;
    for (const record of records) {
      const totalSize = Math.ceil(record.unpaddedSize / 4) * 4;
      // The Unpadded Size includes the Check, and the Block Header takes at least 8 bytes.
      if (record.unpaddedSize < 8 + checkSize(footer.check) + 1) throw bad('Unpadded Size smaller than a Block can be');
      blocks.push({ compressedOffset: position, unpaddedSize: record.unpaddedSize, totalSize, uncompressedOffset: 0, uncompressedSize: record.uncompressedSize, check: footer.check });
      position += totalSize;
    }
    streams.unshift(blocks);
    end = start;
    if (streams.length > fileSize / (STREAM_HEADER_SIZE + STREAM_FOOTER_SIZE)) throw bad('too many Streams');
  }
  if (streams.length === 0) throw bad('no Stream');
  const blocks = streams.flat();
  let uncompressedSize = 0;
  for (const block of blocks) {
    block.uncompressedOffset = uncompressedSize;
    uncompressedSize += block.uncompressedSize;
    if (!Number.isSafeInteger(uncompressedSize)) throw bad('uncompressed size too large');
  }
  return { blocks, uncompressedSize, streams: streams.length };
}
