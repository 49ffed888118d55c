import { PiimgError } from '../errors.js';

/** A run of sectors with a label for error messages. */
export interface SectorRun {
  label: string;
  firstLba: number;
  sectorCount: number;
}

/**
 * Throws `E_PARTITION_OVERLAP` when two runs share a sector. Sorting by start
 * makes this O(n log n): when no neighbour pair overlaps, no pair does.
 */
export function assertNoOverlap(runs: SectorRun[]): void {
  const sorted = [...runs].sort((a, b) => a.firstLba - b.firstLba || a.sectorCount - b.sectorCount);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1]!;
    const current = sorted[i]!;
    const previousEndLba = previous.firstLba + previous.sectorCount; // exclusive
    if (current.firstLba < previousEndLba) {
      throw new PiimgError(
        'E_PARTITION_OVERLAP',
        `${previous.label} (LBA ${previous.firstLba}..${previousEndLba - 1}) overlaps ${current.label} (from LBA ${current.firstLba})`,
        { first: previous.label, second: current.label, firstEndLba: previousEndLba - 1, secondFirstLba: current.firstLba },
      );
    }
  }
}

/** Throws `E_PARTITION_OUT_OF_RANGE` unless the run lies inside [minLba, endLba). */
export function assertInside(run: SectorRun, minLba: number, endLba: number, where: string): void {
  const runEndLba = run.firstLba + run.sectorCount;
  if (run.firstLba < minLba || runEndLba > endLba) {
    throw new PiimgError(
      'E_PARTITION_OUT_OF_RANGE',
      `${run.label} (LBA ${run.firstLba}..${runEndLba - 1}) runs outside ${where} (LBA ${minLba}..${endLba - 1})`,
      { partition: run.label, firstLba: run.firstLba, sectorCount: run.sectorCount, minLba, endLba },
    );
  }
}
