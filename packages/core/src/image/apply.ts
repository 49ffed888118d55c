import { precompile } from '@piimg/wasm';
import type { LoadedConfig } from '../config/load.js';
import { PiimgError } from '../errors.js';
import type { ApplyOptions, ApplyReport } from '../recipe/index.js';
import type { Image, VerifyFinding } from './image.js';

export interface ImageApplyOptions extends ApplyOptions {
  /** Check every filesystem after the edits (default true), as `piimg inject` does. */
  verify?: boolean;
  /** Called as each step starts, for progress displays. */
  onStep?: (step: 'apply' | 'verify') => void;
}

export interface ImageApplyResult extends ApplyReport {
  /** True when every filesystem was checked and found clean. */
  verified: boolean;
  /** Seconds spent in each step. */
  timings: { apply: number; verify?: number };
}

const seconds = (since: number): number => (performance.now() - since) / 1000;

/**
 * The body of Image.apply(): the recipes on the boot and root volumes with
 * the disk identifier wired to the image's partition table, then a check of
 * every filesystem. The recipe layer loads on first use (see lazy.ts).
 */
export async function applyToImage(image: Image, loaded: LoadedConfig, options: ImageApplyOptions): Promise<ImageApplyResult> {
  const { verify = true, onStep, ...applyOptions } = options;
  const { applyConfig } = await import('../recipe/index.js');
  // The ext4 checker compiles in the background while the recipes run.
  if (verify) void precompile('e2fsck');
  onStep?.('apply');
  let mark = performance.now();
  const boot = await image.mount('boot');
  let report: ApplyReport;
  try {
    const root = await image.mount('root');
    try {
      report = await applyConfig(
        {
          boot,
          root,
          ...(image.table.diskId ? { diskId: image.table.diskId } : {}),
          setDiskId: (diskId: string) => {
            image.setDiskId(diskId);
          },
        },
        loaded,
        applyOptions,
      );
    } finally {
      await root.close();
    }
  } finally {
    await boot.close();
  }
  const timings: ImageApplyResult['timings'] = { apply: seconds(mark) };
  if (!verify) return { ...report, verified: false, timings };

  onStep?.('verify');
  mark = performance.now();
  const findings: VerifyFinding[] = await image.verify();
  const dirty = findings.filter((f) => !f.clean);
  if (dirty.length) {
    throw new PiimgError(
      'E_VERIFY_FAILED',
      `the edited image does not verify: ${dirty.map((f) => `p${f.partition}: ${f.problems.slice(0, 3).join('; ')}`).join(' / ')}`,
      { findings: dirty.map(({ output: _output, ...rest }) => rest) },
    );
  }
  timings.verify = seconds(mark);
  return { ...report, verified: true, timings };
}
