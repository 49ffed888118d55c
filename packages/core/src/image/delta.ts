import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { basename, dirname, join } from 'node:path';
import { kindOf, readFully } from '../device/file.js';
import type { BlockDevice } from '../device/types.js';
import { allZero } from '../device/zero.js';
import { PiimgError } from '../errors.js';
import { partialName } from './partial.js';

/**
 * The piimg delta format, version 1: a device image as the changes to a
 * known base. Documented in docs/delta-format.md; every field is
 * little-endian.
 *
 * Header (128 bytes):
 *   0x00  8  magic "PIIMGDLT"
 *   0x08  4  version (1)
 *   0x0c  4  header size (128)
 *   0x10  8  image size in bytes
 *   0x18  8  base size in bytes
 *   0x20 32  SHA-256 of the whole base image (raw, decompressed)
 *   0x40  4  record count
 *   0x44  4  reserved, 0
 *   0x48  8  payload size in bytes (everything after the header)
 *   0x50 16  reserved, 0
 *   0x60 32  SHA-256 of (header bytes 0x00-0x5f, then the SHA-256 of the payload)
 * Records, in increasing offset order, none overlapping:
 *   0x00  8  byte offset in the image
 *   0x08  4  length in bytes (at most 1 MiB)
 *   0x0c  4  stored length (bytes that follow this record header)
 *   0x10  4  encoding: 0 stored as is, 1 raw deflate (RFC 1951), 2 zeros (nothing stored)
 *   0x14  4  reserved, 0
 *   then the stored bytes.
 */
export const DELTA_MAGIC = 'PIIMGDLT';
/** The delta format version this piimg writes and reads. */
export const DELTA_VERSION = 1;
const HEADER_SIZE = 128;
const RECORD_HEADER_SIZE = 24;
/** Largest record; the writer emits the overlay's chunks (64 KiB by default). */
export const MAX_RECORD_LENGTH = 1 << 20;
const ENCODING_STORED = 0;
const ENCODING_DEFLATE = 1;
const ENCODING_ZEROS = 2;

/** What a delta's header says: the image and base it belongs to, and its size. */
export interface DeltaHeader {
  version: number;
  imageSize: number;
  baseSize: number;
  baseSha256: string;
  recordCount: number;
  payloadSize: number;
}

export interface DeltaChunk {
  byteOffset: number;
  data: Uint8Array;
}

function bad(message: string, path: string): PiimgError {
  return new PiimgError('E_BAD_DELTA', `${path}: ${message}`, { path });
}

/** Opens a delta file for reading; a FIFO, socket, device or directory is E_BAD_DELTA (a FIFO would block the open for good). */
function openDelta(path: string): number {
  const stats = statSync(path, { throwIfNoEntry: false });
  if (stats && !stats.isFile()) throw bad(`not a delta file: it is ${kindOf(stats)}`, path);
  return openSync(path, 'r');
}

function headerChecksum(header: Uint8Array, payloadDigest: Buffer): Buffer {
  return createHash('sha256').update(header.subarray(0, 0x60)).update(payloadDigest).digest();
}

/**
 * Writes a delta file atomically: a partial file beside `path`, renamed into
 * place when complete. Chunks must come in increasing, non-overlapping order.
 */
export function writeDelta(
  path: string,
  base: { size: number; sha256: string },
  imageSize: number,
  chunks: Iterable<DeltaChunk>,
): DeltaHeader {
  // The shared partial-file name, so a crashed run's leftover is removed by the next save there.
  const partial = join(dirname(path), partialName(basename(path)));
  const fd = openSync(partial, 'wx', 0o644);
  try {
    let position = HEADER_SIZE;
    const payloadHash = createHash('sha256');
    let recordCount = 0;
    let previousEnd = 0;
    for (const chunk of chunks) {
      if (chunk.byteOffset < previousEnd || chunk.data.length > MAX_RECORD_LENGTH) throw new RangeError('delta chunks must be sorted, disjoint and at most 1 MiB');
      previousEnd = chunk.byteOffset + chunk.data.length;
      let encoding = ENCODING_ZEROS;
      let stored: Uint8Array = new Uint8Array(0);
      if (!allZero(chunk.data)) {
        const deflated = deflateRawSync(chunk.data, { level: 6 });
        [encoding, stored] = deflated.length < chunk.data.length ? [ENCODING_DEFLATE, deflated] : [ENCODING_STORED, chunk.data];
      }
      const record = Buffer.alloc(RECORD_HEADER_SIZE);
      record.writeBigUInt64LE(BigInt(chunk.byteOffset), 0x00);
      record.writeUInt32LE(chunk.data.length, 0x08);
      record.writeUInt32LE(stored.length, 0x0c);
      record.writeUInt32LE(encoding, 0x10);
      for (const part of [record, stored]) {
        writeSync(fd, part, 0, part.length, position);
        payloadHash.update(part);
        position += part.length;
      }
      recordCount++;
    }
    const header = Buffer.alloc(HEADER_SIZE);
    header.write(DELTA_MAGIC, 0x00, 'latin1');
    header.writeUInt32LE(DELTA_VERSION, 0x08);
    header.writeUInt32LE(HEADER_SIZE, 0x0c);
    header.writeBigUInt64LE(BigInt(imageSize), 0x10);
    header.writeBigUInt64LE(BigInt(base.size), 0x18);
    Buffer.from(base.sha256, 'hex').copy(header, 0x20);
    header.writeUInt32LE(recordCount, 0x40);
    header.writeBigUInt64LE(BigInt(position - HEADER_SIZE), 0x48);
    headerChecksum(header, payloadHash.digest()).copy(header, 0x60);
    writeSync(fd, header, 0, HEADER_SIZE, 0);
    closeSync(fd);
    renameSync(partial, path);
    return { version: DELTA_VERSION, imageSize, baseSize: base.size, baseSha256: base.sha256, recordCount, payloadSize: position - HEADER_SIZE };
  } catch (error) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
    try {
      unlinkSync(partial);
    } catch {
      // Never created.
    }
    if (error instanceof PiimgError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${path}: ${(error as Error).message}`, { path }, { cause: error });
  }
}

/** Reads exactly `length` bytes; the header and record checks keep every read inside the file. */
function readExactly(fd: number, length: number, position: number, path: string): Buffer {
  const out = Buffer.alloc(length);
  readFully(fd, out, position, path);
  return out;
}

/** Reads and checks a delta's header; the payload checksum is checked by applyDeltaFile. */
export function readDeltaHeader(path: string): DeltaHeader {
  const fd = openDelta(path);
  try {
    return parseHeader(fd, path).header;
  } finally {
    closeSync(fd);
  }
}

function parseHeader(fd: number, path: string): { header: DeltaHeader; raw: Buffer } {
  const fileSize = fstatSync(fd).size;
  if (fileSize < HEADER_SIZE) throw bad('too short for a piimg delta', path);
  const raw = readExactly(fd, HEADER_SIZE, 0, path);
  if (raw.toString('latin1', 0, 8) !== DELTA_MAGIC) throw bad('not a piimg delta (bad magic)', path);
  const version = raw.readUInt32LE(0x08);
  if (version !== DELTA_VERSION) throw new PiimgError('E_UNSUPPORTED_DELTA', `${path}: delta format version ${version}; this piimg reads version ${DELTA_VERSION}`, { path, version });
  if (raw.readUInt32LE(0x0c) !== HEADER_SIZE) throw bad('bad header size', path);
  const big = (offset: number, what: string) => {
    const value = raw.readBigUInt64LE(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} too large`, path);
    return Number(value);
  };
  const header: DeltaHeader = {
    version,
    imageSize: big(0x10, 'image size'),
    baseSize: big(0x18, 'base size'),
    baseSha256: raw.toString('hex', 0x20, 0x40),
    recordCount: raw.readUInt32LE(0x40),
    payloadSize: big(0x48, 'payload size'),
  };
  if (header.payloadSize !== fileSize - HEADER_SIZE) throw bad(`payload is ${fileSize - HEADER_SIZE} bytes, the header says ${header.payloadSize}`, path);
  if (header.recordCount * RECORD_HEADER_SIZE > header.payloadSize) throw bad(`${header.recordCount} records cannot fit`, path);
  return { header, raw };
}

/**
 * Applies a delta to `device` (an image opened on its base, whose size and
 * SHA-256 the caller has checked against the header with `expectBase`).
 * Every record is checked before it is written; the file checksum is
 * compared at the end, and on a mismatch `onCorrupt` must undo the writes
 * (the overlay is discarded), so a damaged delta never yields an image.
 */
export function applyDeltaFile(path: string, device: BlockDevice, expectBase: (header: DeltaHeader) => void): DeltaHeader {
  const fd = openDelta(path);
  try {
    const { header, raw } = parseHeader(fd, path);
    expectBase(header);
    if (header.imageSize !== device.size) throw bad(`image size ${header.imageSize} differs from the base's ${device.size}`, path);
    const payloadHash = createHash('sha256');
    let position = HEADER_SIZE;
    const end = HEADER_SIZE + header.payloadSize;
    let previousEnd = 0;
    for (let index = 0; index < header.recordCount; index++) {
      if (position + RECORD_HEADER_SIZE > end) throw bad(`record ${index} is truncated`, path);
      const record = readExactly(fd, RECORD_HEADER_SIZE, position, path);
      payloadHash.update(record);
      position += RECORD_HEADER_SIZE;
      const offset = record.readBigUInt64LE(0x00);
      const length = record.readUInt32LE(0x08);
      const storedLength = record.readUInt32LE(0x0c);
      const encoding = record.readUInt32LE(0x10);
      if (offset > BigInt(header.imageSize)) throw bad(`record ${index} starts outside the image`, path);
      const byteOffset = Number(offset);
      if (length === 0 || length > MAX_RECORD_LENGTH) throw bad(`record ${index} has length ${length}`, path);
      if (byteOffset + length > header.imageSize) throw bad(`record ${index} ends outside the image`, path);
      if (byteOffset < previousEnd) throw bad(`record ${index} overlaps or is out of order`, path);
      previousEnd = byteOffset + length;
      if (position + storedLength > end) throw bad(`record ${index} is truncated`, path);
      let data: Uint8Array;
      if (encoding === ENCODING_ZEROS) {
        if (storedLength !== 0) throw bad(`record ${index}: zeros with stored bytes`, path);
        data = new Uint8Array(length);
      } else if (encoding === ENCODING_STORED || encoding === ENCODING_DEFLATE) {
        if (storedLength > length + 1024 + (length >>> 6)) throw bad(`record ${index}: stored length ${storedLength}`, path);
        const stored = readExactly(fd, storedLength, position, path);
        payloadHash.update(stored);
        position += storedLength;
        if (encoding === ENCODING_STORED) {
          if (storedLength !== length) throw bad(`record ${index}: stored length ${storedLength} for ${length} bytes`, path);
          data = stored;
        } else {
          try {
            data = inflateRawSync(stored, { maxOutputLength: length });
          } catch (error) {
            throw new PiimgError('E_BAD_DELTA', `${path}: record ${index} does not decompress`, { path }, { cause: error });
          }
          if (data.length !== length) throw bad(`record ${index} decompresses to ${data.length} bytes, not ${length}`, path);
        }
      } else {
        throw bad(`record ${index} has unknown encoding ${encoding}`, path);
      }
      device.write(byteOffset, data);
    }
    if (position !== end) throw bad(`${end - position} bytes after the last record`, path);
    if (!headerChecksum(raw, payloadHash.digest()).equals(raw.subarray(0x60, 0x80))) throw bad('checksum mismatch: the file is damaged', path);
    return header;
  } finally {
    closeSync(fd);
  }
}
