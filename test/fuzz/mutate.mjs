// Seeded mutations of disk-image structures, shared by the fuzzer (run.mjs)
// and the differential tests. Plain JavaScript so that both Node and vitest
// load it as is. Offsets come from each image's own metadata, parsed here with
// bounds (the images are the fuzzer's own, but mutated ones are read too).

/** mulberry32: small, fast, and the same sequence on every platform for a seed. */
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
  };
}

/** A seed per case, so that case K of seed S is rebuilt without running cases 0..K-1. */
export function caseSeed(seed, index) {
  let x = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

const u8 = (b, at) => b[at] ?? 0;
const u16 = (b, at) => u8(b, at) | (u8(b, at + 1) << 8);
const u32 = (b, at) => (u16(b, at) | (u16(b, at + 2) << 16)) >>> 0;
function put(b, at, size, value) {
  for (let i = 0; i < size && at + i < b.length; i++) b[at + i] = (value / 2 ** (8 * i)) & 0xff;
}

/** Values that tend to sit on boundaries: 0, all ones, sign bits, off-by-one. */
function interesting(r, size) {
  const max = 2 ** (8 * size) - 1;
  return r.pick([0, 1, 2, max, max - 1, 2 ** (8 * size - 1), 2 ** (8 * size - 1) - 1, r.int(max + 1), r.int(256), 0x7f, 0x80]);
}

/** One generic edit inside [start, end): a byte, a bit, or a boundary value of 1, 2 or 4 bytes. */
export function mutateBytes(bytes, start, end, r, what) {
  if (end <= start) return `${what}: empty region`;
  const at = start + r.int(end - start);
  const kind = r.int(4);
  if (kind === 0) {
    const value = r.int(256);
    bytes[at] = value;
    return `${what}+0x${(at - start).toString(16)} = 0x${value.toString(16)}`;
  }
  if (kind === 1) {
    const bit = r.int(8);
    bytes[at] ^= 1 << bit;
    return `${what}+0x${(at - start).toString(16)} bit ${bit} flipped`;
  }
  const size = r.pick([1, 2, 4]);
  const value = interesting(r, size);
  put(bytes, at, Math.min(size, end - at), value);
  return `${what}+0x${(at - start).toString(16)} u${8 * size} = 0x${value.toString(16)}`;
}

// --- FAT --------------------------------------------------------------------

/** The BPB fields needed to find the FAT, the root directory and the data area. Undefined when they make no sense. */
export function fatLayout(bytes) {
  const bps = u16(bytes, 11);
  const spc = u8(bytes, 13);
  const reserved = u16(bytes, 14);
  const fats = u8(bytes, 16);
  const rootEntries = u16(bytes, 17);
  const total = u16(bytes, 19) || u32(bytes, 32);
  const fatSectors = u16(bytes, 22) || u32(bytes, 36);
  if (![512, 1024, 2048, 4096].includes(bps) || spc === 0 || fats === 0 || fatSectors === 0) return undefined;
  const rootSectors = Math.ceil((rootEntries * 32) / bps);
  const dataSector = reserved + fats * fatSectors + rootSectors;
  const clusterCount = Math.floor((total - dataSector) / spc);
  if (clusterCount <= 0 || total * bps > bytes.length) return undefined;
  const type = clusterCount < 4085 ? 12 : clusterCount < 65525 ? 16 : 32;
  return {
    type,
    bps,
    clusterSize: bps * spc,
    fatByteOffset: reserved * bps,
    fatBytes: fatSectors * bps,
    fats,
    rootByteOffset: (reserved + fats * fatSectors) * bps,
    rootBytes: rootSectors * bps,
    rootCluster: type === 32 ? u32(bytes, 44) : 0,
    fsInfoByteOffset: type === 32 ? u16(bytes, 48) * bps : 0,
    dataByteOffset: dataSector * bps,
    clusterCount,
  };
}

function fatGet(bytes, layout, cluster) {
  const base = layout.fatByteOffset;
  if (layout.type === 12) {
    const at = base + Math.floor((cluster * 3) / 2);
    const word = u16(bytes, at);
    return cluster & 1 ? word >> 4 : word & 0xfff;
  }
  if (layout.type === 16) return u16(bytes, base + cluster * 2);
  return u32(bytes, base + cluster * 4) & 0x0fffffff;
}

function fatSet(bytes, layout, cluster, value) {
  for (let copy = 0; copy < layout.fats; copy++) {
    const base = layout.fatByteOffset + copy * layout.fatBytes;
    if (layout.type === 12) {
      const at = base + Math.floor((cluster * 3) / 2);
      const word = u16(bytes, at);
      put(bytes, at, 2, cluster & 1 ? (word & 0x000f) | ((value & 0xfff) << 4) : (word & 0xf000) | (value & 0xfff));
    } else if (layout.type === 16) put(bytes, base + cluster * 2, 2, value & 0xffff);
    else put(bytes, base + cluster * 4, 4, (u32(bytes, base + cluster * 4) & 0xf0000000) + (value & 0x0fffffff));
  }
}

function chainOf(bytes, layout, first, limit = 64) {
  const out = [];
  const end = layout.type === 12 ? 0xff8 : layout.type === 16 ? 0xfff8 : 0x0ffffff8;
  for (let c = first; c >= 2 && c < layout.clusterCount + 2 && out.length < limit; c = fatGet(bytes, layout, c)) {
    if (out.includes(c)) break;
    out.push(c);
    if (fatGet(bytes, layout, c) >= end) break;
  }
  return out;
}

/** Byte ranges of the directories (root and subdirectories, bounded), and the slots in them that are in use. */
export function fatDirectories(bytes, layout) {
  const regions = [];
  const pending = [layout.type === 32 ? { clusters: chainOf(bytes, layout, layout.rootCluster) } : { fixed: true }];
  const seen = new Set();
  while (pending.length > 0 && regions.length < 64) {
    const dir = pending.pop();
    const ranges = dir.fixed
      ? [[layout.rootByteOffset, layout.rootBytes]]
      : dir.clusters.map((c) => [layout.dataByteOffset + (c - 2) * layout.clusterSize, layout.clusterSize]);
    for (const [start, length] of ranges) {
      if (start + length > bytes.length) continue;
      regions.push({ start, length });
      for (let at = start; at < start + length; at += 32) {
        if (bytes[at] === 0) break;
        const attr = bytes[at + 11];
        if (bytes[at] === 0xe5 || attr === 0x0f || bytes[at] === 0x2e || attr & 0x08 || !(attr & 0x10)) continue;
        const first = (layout.type === 32 ? u16(bytes, at + 20) << 16 : 0) | u16(bytes, at + 26);
        if (!seen.has(first)) {
          seen.add(first);
          pending.push({ clusters: chainOf(bytes, layout, first) });
        }
      }
    }
  }
  const shortSlots = [];
  const longSlots = [];
  for (const { start, length } of regions) {
    for (let at = start; at < start + length; at += 32) {
      if (bytes[at] === 0) break;
      if (bytes[at] === 0xe5) continue;
      (bytes[at + 11] === 0x0f ? longSlots : shortSlots).push(at);
    }
  }
  return { regions, shortSlots, longSlots };
}

export const FAT_TARGETS = ['fat-bpb', 'fat-fsinfo', 'fat-table', 'fat-dirent', 'fat-lfn', 'fat-raw'];

/** One FAT mutation of `target` kind, in place. Returns a description, or undefined when the image has no such structure. */
export function mutateFat(bytes, target, r) {
  const layout = fatLayout(bytes);
  if (!layout) return target === 'fat-bpb' || target === 'fat-raw' ? mutateBytes(bytes, 0, 512, r, 'boot sector') : undefined;
  const end = layout.type === 12 ? 0xfff : layout.type === 16 ? 0xffff : 0x0fffffff;
  const clusterValue = () =>
    r.pick([0, 1, end, end - 8, end - 7, layout.clusterCount + 1, layout.clusterCount + 2, 2 + r.int(layout.clusterCount), 2 + r.int(40)]);
  switch (target) {
    case 'fat-bpb':
      // Mostly the BPB fields, sometimes the signature or the backup's.
      return r.chance(0.85) ? mutateBytes(bytes, 11, layout.type === 32 ? 90 : 62, r, 'BPB') : mutateBytes(bytes, 0, 512, r, 'boot sector');
    case 'fat-fsinfo': {
      if (!layout.fsInfoByteOffset) return undefined;
      const at = layout.fsInfoByteOffset;
      return r.chance(0.7) ? mutateBytes(bytes, at + 0x1e4, at + 0x200, r, 'FSInfo') : mutateBytes(bytes, at, at + 4, r, 'FSInfo lead');
    }
    case 'fat-table': {
      const used = [];
      for (let c = 2; c < Math.min(layout.clusterCount + 2, 400); c++) if (fatGet(bytes, layout, c) !== 0) used.push(c);
      const cluster = used.length > 0 && r.chance(0.8) ? r.pick(used) : r.chance(0.5) ? r.int(2) : 2 + r.int(layout.clusterCount);
      const value = clusterValue();
      if (r.chance(0.15)) {
        // Only one FAT copy: the copies then differ.
        const at = layout.fatByteOffset + (layout.type === 32 ? cluster * 4 : layout.type === 16 ? cluster * 2 : Math.floor((cluster * 3) / 2));
        bytes[at] ^= 0x5a;
        return `FAT copy 1 entry ${cluster} xor 0x5a`;
      }
      fatSet(bytes, layout, cluster, value);
      return `FAT entry ${cluster} = 0x${value.toString(16)}`;
    }
    case 'fat-dirent': {
      const { shortSlots } = fatDirectories(bytes, layout);
      if (shortSlots.length === 0) return undefined;
      const at = r.pick(shortSlots);
      const field = r.pick(['name', 'name', 'attr', 'ntres', 'cluster', 'cluster', 'size', 'size', 'raw']);
      if (field === 'name') {
        const i = r.int(11);
        const value = r.pick([0x2e, 0x20, 0x05, 0xe5, 0x00, 0x3f, 0x2f, 0x61, 0x80, 0x7f, 0x01, 0x41 + r.int(26)]);
        bytes[at + i] = value;
        return `dirent name[${i}] = 0x${value.toString(16)}`;
      }
      if (field === 'attr') {
        const value = r.pick([0x0f, 0x08, 0x10, 0x00, 0x20, 0x40, 0x80, 0x3f, 0x18, r.int(256)]);
        bytes[at + 11] = value;
        return `dirent attr = 0x${value.toString(16)}`;
      }
      if (field === 'ntres') {
        const value = r.pick([0x20, 0x08, 0x10, 0x18, 0xff, r.int(256)]);
        bytes[at + 12] = value;
        return `dirent NTRes = 0x${value.toString(16)}`;
      }
      if (field === 'cluster') {
        const value = clusterValue();
        put(bytes, at + 26, 2, value & 0xffff);
        if (layout.type === 32 || r.chance(0.3)) put(bytes, at + 20, 2, Math.floor(value / 65536) & 0xffff);
        return `dirent first cluster = 0x${value.toString(16)}`;
      }
      if (field === 'size') {
        const old = u32(bytes, at + 28);
        const value = r.pick([0, 1, old + 1, old - 1, old + layout.clusterSize, 0xffffffff, r.int(2 ** 32)]) >>> 0;
        put(bytes, at + 28, 4, value);
        return `dirent size = ${value}`;
      }
      return mutateBytes(bytes, at, at + 32, r, 'dirent');
    }
    case 'fat-lfn': {
      const { longSlots } = fatDirectories(bytes, layout);
      if (longSlots.length === 0) return undefined;
      const at = r.pick(longSlots);
      const field = r.pick(['ord', 'checksum', 'attr', 'type', 'cluster', 'char']);
      if (field === 'ord') bytes[at] = r.pick([0x40, 0x41, 0x01, 0x02, 0x54, 0x55, 0x7f, bytes[at] ^ 0x40, r.int(256)]);
      else if (field === 'checksum') bytes[at + 13] ^= 1 + r.int(255);
      else if (field === 'attr') bytes[at + 11] = r.pick([0x1f, 0x4f, 0x2f, 0x0e, 0x8f]);
      else if (field === 'type') bytes[at + 12] = 1 + r.int(255);
      else if (field === 'cluster') put(bytes, at + 26, 2, 1 + r.int(0xffff));
      else {
        const offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        const o = r.pick(offsets);
        put(bytes, at + o, 2, r.pick([0x2f, 0x00, 0xffff, 0xd800, 0xdc00, 0x2e, 0x5c, r.int(0x10000)]));
      }
      return `long-name slot ${field}`;
    }
    default: {
      // Anywhere in the metadata: reserved sectors, FATs, root directory, first directory clusters.
      const end = Math.min(bytes.length, layout.dataByteOffset + 8 * layout.clusterSize);
      return mutateBytes(bytes, 0, end, r, 'metadata');
    }
  }
}

// --- ext4 ---------------------------------------------------------------------

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C as ext4 uses it: seed ~0, no final inversion (ext4 wiki "Checksums"). */
export function ext4Crc32c(bytes, seed = 0xffffffff) {
  let crc = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) crc = CRC32C_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}

const SB = 1024;
const RO_COMPAT_METADATA_CSUM = 0x400;
const INCOMPAT_64BIT = 0x80;
const EXTENTS_FL = 0x80000;
const INDEX_FL = 0x1000;

export function ext4Layout(bytes) {
  if (bytes.length < 2048 || u16(bytes, SB + 0x38) !== 0xef53) return undefined;
  const logBlock = u32(bytes, SB + 0x18);
  if (logBlock > 6) return undefined;
  const blockSize = 1024 << logBlock;
  const firstDataBlock = u32(bytes, SB + 0x14);
  const inodeSize = u16(bytes, SB + 0x58) || 128;
  const incompat = u32(bytes, SB + 0x60);
  const roCompat = u32(bytes, SB + 0x64);
  const descSize = incompat & INCOMPAT_64BIT ? u16(bytes, SB + 0xfe) || 64 : 32;
  const gdt = (firstDataBlock + 1) * blockSize;
  const inodeTable = u32(bytes, gdt + 8);
  return {
    blockSize,
    inodeSize,
    descSize,
    gdt,
    groups: Math.ceil((u32(bytes, SB + 4) - firstDataBlock) / Math.max(1, u32(bytes, SB + 0x20))),
    blockBitmap: u32(bytes, gdt),
    inodeBitmap: u32(bytes, gdt + 4),
    inodeTable,
    metadataCsum: (roCompat & RO_COMPAT_METADATA_CSUM) !== 0,
    inodeByteOffset: (ino) => inodeTable * blockSize + (ino - 1) * inodeSize,
  };
}

/** Recomputes s_checksum (ext4 wiki "Super Block", 0x3FC), so that a mutated superblock passes the first check. */
export function fixSuperblockChecksum(bytes) {
  const layout = ext4Layout(bytes);
  if (!layout?.metadataCsum) return;
  put(bytes, SB + 0x3fc, 4, ext4Crc32c(bytes.subarray(SB, SB + 0x3fc)));
}

/** Physical block of the first extent of an inode (the tree descended through its first index entries), else undefined. */
function firstExtentBlock(bytes, layout, ino) {
  const inode = layout.inodeByteOffset(ino);
  if (!(u32(bytes, inode + 0x20) & EXTENTS_FL)) return undefined;
  let node = inode + 0x28;
  for (let level = 0; level < 4; level++) {
    // ext4 wiki "Extent Tree": 12-byte header (magic 0xF30A, entries, max, depth), then 12-byte entries.
    if (u16(bytes, node) !== 0xf30a || u16(bytes, node + 2) === 0) return undefined;
    const depth = u16(bytes, node + 6);
    const entry = node + 12;
    if (depth === 0) {
      const block = u32(bytes, entry + 8) + u16(bytes, entry + 6) * 2 ** 32;
      return (block + 1) * layout.blockSize <= bytes.length ? block : undefined;
    }
    const leaf = u32(bytes, entry + 4) + u16(bytes, entry + 8) * 2 ** 32;
    if ((leaf + 1) * layout.blockSize > bytes.length) return undefined;
    node = leaf * layout.blockSize;
  }
  return undefined;
}

export const EXT4_TARGETS = ['ext4-superblock', 'ext4-gdt', 'ext4-inode', 'ext4-extent', 'ext4-dirblock', 'ext4-htree', 'ext4-bitmap'];

/** One ext4 mutation of `target` kind, in place; the superblock checksum is recomputed after superblock edits. */
export function mutateExt4(bytes, target, r) {
  const layout = ext4Layout(bytes);
  if (!layout) return undefined;
  const inodes = [];
  for (let ino = 2; ino <= 40; ino++) {
    const at = layout.inodeByteOffset(ino);
    if (at + layout.inodeSize <= bytes.length && u16(bytes, at) !== 0 && (ino === 2 || ino >= 11)) inodes.push(ino);
  }
  switch (target) {
    case 'ext4-superblock': {
      const description = mutateBytes(bytes, SB, SB + 0x3fc, r, 'superblock');
      if (r.chance(0.9)) fixSuperblockChecksum(bytes);
      return description;
    }
    case 'ext4-gdt':
      return mutateBytes(bytes, layout.gdt, layout.gdt + layout.descSize * Math.max(1, Math.min(layout.groups, 8)), r, 'group descriptors');
    case 'ext4-inode': {
      const ino = r.pick(inodes);
      const at = layout.inodeByteOffset(ino);
      return mutateBytes(bytes, at, at + Math.min(layout.inodeSize, 160), r, `inode ${ino}`);
    }
    case 'ext4-extent': {
      const ino = r.pick(inodes);
      const at = layout.inodeByteOffset(ino) + 0x28;
      return mutateBytes(bytes, at, at + 60, r, `i_block of inode ${ino}`);
    }
    case 'ext4-dirblock':
    case 'ext4-htree': {
      const dirs = inodes.filter((ino) => (u16(bytes, layout.inodeByteOffset(ino)) & 0xf000) === 0x4000);
      const wanted = target === 'ext4-htree' ? dirs.filter((ino) => u32(bytes, layout.inodeByteOffset(ino) + 0x20) & INDEX_FL) : dirs;
      if (wanted.length === 0) return undefined;
      const ino = r.pick(wanted);
      const block = firstExtentBlock(bytes, layout, ino);
      if (block === undefined) return undefined;
      const start = block * layout.blockSize;
      // An htree root keeps its dx_root_info and the dx_entries in the first 64 bytes or so.
      return mutateBytes(bytes, start, start + (target === 'ext4-htree' ? 0x40 : layout.blockSize), r, `${target === 'ext4-htree' ? 'htree root' : 'directory block'} of inode ${ino}`);
    }
    default: {
      const block = r.chance(0.5) ? layout.blockBitmap : layout.inodeBitmap;
      const start = block * layout.blockSize;
      if (start + 64 > bytes.length) return undefined;
      const at = start + r.int(Math.min(layout.blockSize, 512));
      bytes[at] ^= 1 << r.int(8);
      return `${block === layout.blockBitmap ? 'block' : 'inode'} bitmap byte ${at - start} bit flipped`;
    }
  }
}

// --- containers and partition tables ------------------------------------------------

/** An edit to a compressed container: in the header, in the middle, in the trailer, or a cut. */
export function mutateContainer(bytes, r) {
  const kind = r.int(5);
  if (kind === 0) return { bytes: bytes.subarray(0, r.int(bytes.length)), description: 'truncated' };
  const out = bytes.slice();
  const region = kind === 1 ? [0, Math.min(64, out.length)] : kind === 2 ? [Math.max(0, out.length - 64), out.length] : [0, out.length];
  const edits = 1 + r.int(kind === 4 ? 8 : 2);
  const parts = [];
  for (let i = 0; i < edits; i++) parts.push(mutateBytes(out, region[0], region[1], r, kind === 1 ? 'head' : kind === 2 ? 'tail' : 'body'));
  return { bytes: out, description: parts.join('; ') };
}

export { u16, u32, put };
