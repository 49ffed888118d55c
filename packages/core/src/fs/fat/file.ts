import { PiimgError } from '../../errors.js';
import type { ClusterRun } from './alloc.js';
import { END } from './codec.js';
import { type FatContext, clusterToByteOffset, readClusters } from './directory.js';
import { corrupt } from './table.js';

/** Largest file FAT can describe (DIR_FileSize is 32 bits). */
export const MAX_FILE_SIZE = 0xffffffff;

/** Reads `size` bytes of the chain starting at `firstCluster`, one device read per contiguous run. */
export function readChain(context: FatContext, firstCluster: number, size: number, path: string): Uint8Array {
  if (size === 0) return new Uint8Array(0);
  const { geometry, table, reader } = context;
  const needed = Math.ceil(size / geometry.clusterSize);
  if (firstCluster === 0) throw corrupt(`file of ${size} bytes has no clusters`, { path });
  if (needed > geometry.clusterCount) throw corrupt(`file size ${size} exceeds the volume`, { path });
  const clusters = table.chain(firstCluster, { limit: needed, stopAtLimit: true, path, what: `file ${path}` });
  if (clusters.length < needed) {
    throw corrupt(`file ${path} is ${size} bytes but its cluster chain holds only ${clusters.length} clusters`, { path, size });
  }
  return readClusters(reader, geometry, clusters, size);
}

/** Every cluster of a chain, for freeing it. Bounded by the cluster count, so a loop is an error. */
export function wholeChain(context: FatContext, firstCluster: number, path: string): number[] {
  if (firstCluster === 0) return [];
  return context.table.chain(firstCluster, { limit: context.geometry.clusterCount, path, what: `chain of ${path}` });
}

/**
 * Appends data to a cluster chain as it arrives: whole clusters go straight
 * to the device in runs of contiguous clusters, the slack after the end of
 * the file is zeroed (no stale data leaks into an image). `rollback` undoes
 * every allocation made by this writer.
 */
export class ChainWriter {
  firstCluster: number;
  size: number;
  private lastCluster: number;
  private readonly initialLast: number;
  private readonly runs: ClusterRun[] = [];

  constructor(
    private readonly context: FatContext,
    private readonly path: string,
    start: { firstCluster: number; lastCluster: number; size: number } = { firstCluster: 0, lastCluster: 0, size: 0 },
  ) {
    this.firstCluster = start.firstCluster;
    this.lastCluster = start.lastCluster;
    this.initialLast = start.lastCluster;
    this.size = start.size;
  }

  write(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.size + data.length > MAX_FILE_SIZE) {
      throw new PiimgError('EFBIG', `file would exceed ${MAX_FILE_SIZE} bytes, the FAT limit`, { path: this.path });
    }
    const { geometry } = this.context;
    const writer = this.context.dataWriter();
    const clusterSize = geometry.clusterSize;
    let pos = 0;
    const used = this.size % clusterSize;
    if (used !== 0) {
      const n = Math.min(clusterSize - used, data.length);
      writer.write(clusterToByteOffset(geometry, this.lastCluster) + used, data.subarray(0, n));
      pos = n;
      this.size += n;
    }
    const allocator = this.context.allocator();
    while (pos < data.length) {
      const remaining = data.length - pos;
      const run = allocator.allocateRun(Math.ceil(remaining / clusterSize), this.lastCluster, this.path);
      this.runs.push(run);
      if (this.firstCluster === 0) this.firstCluster = run.first;
      const bytes = Math.min(run.count * clusterSize, remaining);
      const full = Math.floor(bytes / clusterSize) * clusterSize;
      if (full > 0) writer.write(clusterToByteOffset(geometry, run.first), data.subarray(pos, pos + full));
      if (bytes > full) {
        const tail = new Uint8Array(clusterSize);
        tail.set(data.subarray(pos + full, pos + bytes));
        writer.write(clusterToByteOffset(geometry, run.first + full / clusterSize), tail);
      }
      this.lastCluster = run.first + run.count - 1;
      pos += bytes;
      this.size += bytes;
    }
  }

  /** Frees what this writer allocated and re-terminates the chain it extended. */
  rollback(): void {
    const clusters: number[] = [];
    for (const run of this.runs) for (let i = 0; i < run.count; i++) clusters.push(run.first + i);
    if (clusters.length === 0) return;
    this.context.allocator().release(clusters);
    if (this.initialLast !== 0) this.context.table.set(this.initialLast, END);
    this.runs.length = 0;
  }
}
