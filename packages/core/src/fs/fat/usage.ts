import type { BlockReader, ByteRange } from '../../device/types.js';
import { parseBootSector } from './boot.js';
import { FREE } from './codec.js';
import { FIRST_CLUSTER } from './layout.js';
import { FatTable } from './table.js';

/**
 * The byte ranges of a FAT volume that hold anything the volume uses: the
 * reserved sectors, every FAT copy, the fixed root directory (FAT12/16), and
 * every data cluster whose FAT entry is not free (files, directories, and
 * clusters marked bad, which are kept as they are).
 *
 * Ref: Microsoft FAT specification §3 (volume layout), §4 (FAT entries).
 */
export function fatUsedRanges(reader: BlockReader): ByteRange[] {
  const geometry = parseBootSector(reader.read(0, 512), reader.size);
  const table = new FatTable(reader, geometry);
  table.loadAll();
  const out: ByteRange[] = [{ byteOffset: 0, length: geometry.dataByteOffset }];
  const add = (byteOffset: number, length: number) => {
    const last = out[out.length - 1]!;
    if (last.byteOffset + last.length === byteOffset) last.length += length;
    else out.push({ byteOffset, length });
  };
  let runStart = -1;
  const closeRun = (end: number) => {
    if (runStart >= 0) {
      add(geometry.dataByteOffset + (runStart - FIRST_CLUSTER) * geometry.clusterSize, (end - runStart) * geometry.clusterSize);
    }
    runStart = -1;
  };
  for (let cluster = FIRST_CLUSTER; cluster <= table.maxCluster; cluster++) {
    if (table.get(cluster) !== FREE) {
      if (runStart < 0) runStart = cluster;
    } else closeRun(cluster);
  }
  closeRun(table.maxCluster + 1);
  return out;
}
