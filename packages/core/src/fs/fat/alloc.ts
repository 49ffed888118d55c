import { PiimgError } from '../../errors.js';
import { FREE } from './codec.js';
import { FIRST_CLUSTER } from './layout.js';
import type { FatTable } from './table.js';

export interface ClusterRun {
  first: number;
  count: number;
}

/**
 * Cluster allocation. The free count is computed once (one pass over the
 * FAT) and then kept up to date; the search for free clusters resumes at a
 * next-free cursor, so allocating N clusters costs O(N) amortised, never a
 * scan of the whole FAT per cluster (FSI_Nxt_Free plays the same role on disk,
 * FAT spec §5).
 */
export class Allocator {
  private free: number | undefined;
  /** Clusters freed by the changing call in progress (their old data is still committed; see FatVolume.dataWriter). */
  releasedInCall: Set<number> | undefined;

  constructor(
    private readonly table: FatTable,
    /** Where the search for a free cluster starts. */
    public nextFree: number,
  ) {
    if (!(nextFree >= FIRST_CLUSTER && nextFree <= table.maxCluster)) this.nextFree = FIRST_CLUSTER;
  }

  get freeCount(): number {
    if (this.free === undefined) this.free = this.table.countFree();
    return this.free;
  }

  /** Throws ENOSPC unless `count` clusters are free. */
  reserve(count: number, path?: string): void {
    if (count > this.freeCount) {
      throw new PiimgError('ENOSPC', `no space left: ${count} clusters needed, ${this.freeCount} free`, { path, needed: count, free: this.freeCount });
    }
  }

  private findFree(): number {
    const max = this.table.maxCluster;
    for (let cluster = this.nextFree; cluster <= max; cluster++) if (this.table.get(cluster) === FREE) return cluster;
    for (let cluster = FIRST_CLUSTER; cluster < this.nextFree; cluster++) if (this.table.get(cluster) === FREE) return cluster;
    return 0;
  }

  /**
   * Allocates up to `max` contiguous clusters at the first free cluster from
   * the cursor, chains them, ends the chain, and links `previous` (when not 0)
   * to the first. Throws ENOSPC when no cluster is free.
   */
  allocateRun(max: number, previous: number, path?: string): ClusterRun {
    if (this.freeCount === 0) throw new PiimgError('ENOSPC', 'no space left on the FAT volume', { path });
    const first = this.findFree();
    if (first === 0) throw new PiimgError('ENOSPC', 'no space left on the FAT volume', { path });
    const count = this.table.freeRunLength(first, Math.max(1, max));
    this.table.setRun(first, count);
    if (previous !== 0) this.table.set(previous, first);
    this.free = this.freeCount - count;
    this.nextFree = first + count > this.table.maxCluster ? FIRST_CLUSTER : first + count;
    return { first, count };
  }

  /** Marks clusters free. The caller has validated them as one chain. */
  release(clusters: readonly number[]): void {
    const before = this.freeCount;
    for (const cluster of clusters) this.table.set(cluster, FREE);
    if (this.releasedInCall) for (const cluster of clusters) this.releasedInCall.add(cluster);
    this.free = before + clusters.length;
  }

  /** The counters, to put back with `restore` when a call fails and its table changes are discarded. */
  snapshot(): { free: number | undefined; nextFree: number } {
    return { free: this.free, nextFree: this.nextFree };
  }

  restore(state: { free: number | undefined; nextFree: number }): void {
    this.free = state.free;
    this.nextFree = state.nextFree;
  }

  /** True once the free count has been computed (it is then exact). */
  get freeKnown(): boolean {
    return this.free !== undefined;
  }
}
