import { createHash } from 'node:crypto';
import { mkdir, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isPiimgError, loadConfig, type Image, type ImageApplyResult, type LoadedConfig } from '@piimg/core';
import { version } from '../version.js';
import type { DeviceRow } from './devices.js';
import { inputDigest, upToDate, writeSidecar } from './sidecar.js';
import { conflictWith, onStage, type Stage } from './stage.js';

export type DeviceStatus = 'written' | 'skipped' | 'failed';

/** The outcome of one device, as reported by --json. */
export interface DeviceResult {
  /** Position of the device in the devices file (1-based). */
  row: number;
  name: string | null;
  output: string | null;
  status: DeviceStatus;
  error?: { code: string; message: string };
  /** Seconds per step, and in all. */
  timings: Record<string, number>;
  wireguardPublicKey?: string;
  diskId?: string;
  /** True when the device was made on the fleet's stage (its shared files written once). */
  staged?: boolean;
}

/** One device to make; plain data, so it can be posted to a worker thread. */
export interface DeviceTask {
  row: DeviceRow;
  /** Absolute output path, or undefined when the row already failed. */
  output: string | undefined;
  /** Error of a row that failed before it was scheduled (unsafe name, duplicate output...). */
  problem?: { code: string; message: string };
}

export interface DeviceContext {
  /** The opened base every device is derived from. */
  base: Image;
  configPath: string;
  env: NodeJS.ProcessEnv;
  /** baseIdentity() of the base file. */
  baseIdentity: string;
  /** Passed to image.save(): Infinity on a batch worker thread. */
  parallelCopyMin?: number;
  /** The fleet's stage (made once, by the first device that asks), if any. */
  stage?: () => Promise<Stage | undefined>;
}

const SECRET_KEYS = new Set(['password', 'passwordHash', 'psk', 'privateKey', 'presharedKey']);

/** Every secret value of a configuration, to keep them out of error messages. */
function secretsOf(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) secretsOf(item, out);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (SECRET_KEYS.has(key) && typeof item === 'string' && item !== 'generate' && item.length > 0) out.push(item);
      else secretsOf(item, out);
    }
  }
  return out;
}

export function describeError(error: unknown, secrets: string[] = []): { code: string; message: string } {
  const code = isPiimgError(error) ? error.code : 'E_INTERNAL';
  let message = isPiimgError(error) ? error.message : `internal error: ${(error as Error)?.message ?? String(error)}`;
  for (const secret of secrets) message = message.split(secret).join('***');
  return { code, message };
}

/** Identity of the base file as it is now: anything that rewrites it changes this. */
export async function baseIdentity(path: string): Promise<string> {
  const info = await stat(path, { bigint: true });
  return createHash('sha256')
    .update([await realpath(path), info.dev, info.ino, info.size, info.mtimeNs].join('\0'))
    .digest('hex');
}

const round = (seconds: number) => Math.round(seconds * 1000) / 1000;

/**
 * Derives a device from `from`, applies and verifies its configuration and
 * saves it. With a stage, undefined (nothing written) when the device's
 * changes conflict with the stage's: the caller makes it from the base.
 */
async function make(
  context: DeviceContext,
  from: Image,
  loaded: LoadedConfig,
  output: string,
  onStep: (what: string) => void,
  stage?: Stage,
): Promise<{ applied: ImageApplyResult; saveSeconds: number; staged: boolean } | undefined> {
  await using device = await from.derive();
  // The base copy runs (in a cp process where there is one) while the recipes and checks compute.
  // Devices already run in parallel: a compressed output takes one thread each.
  await using save = device.prepareSave(output, { threads: 1, ...(context.parallelCopyMin !== undefined ? { parallelCopyMin: context.parallelCopyMin } : {}) });
  const applied = await device.apply(loaded, { onStep, ...(context.env.PIIMG_SEED ? { seed: context.env.PIIMG_SEED } : {}) });
  if (stage && conflictWith(stage, applied) !== undefined) return undefined;
  const mark = performance.now();
  onStep('save');
  await save.finish();
  return { applied, saveSeconds: (performance.now() - mark) / 1000, staged: stage !== undefined };
}

/**
 * Makes one device: its configuration (the shared file with the row's
 * variables and overrides), a skip when its output is up to date, else an
 * image derived from the base, configured and verified (image.apply), saved,
 * and its sidecar. Never throws: a failure is the device's result.
 */
export async function makeDevice(context: DeviceContext, task: DeviceTask, onStep: (what: string) => void = () => undefined): Promise<DeviceResult> {
  const { row, output } = task;
  const started = performance.now();
  const timings: Record<string, number> = {};
  let mark = started;
  const lap = (step: string) => {
    const now = performance.now();
    timings[step] = round((now - mark) / 1000);
    mark = now;
  };
  const result = (status: DeviceStatus, extra: Partial<DeviceResult> = {}): DeviceResult => ({
    row: row.index,
    name: row.vars.name ?? null,
    output: output ?? null,
    status,
    ...extra,
    timings: { ...timings, total: round((performance.now() - started) / 1000) },
  });
  if (task.problem || output === undefined) {
    return result('failed', { error: task.problem ?? { code: 'E_CONFIG', message: `${row.where}: no output` } });
  }
  let secrets: string[] = [];
  try {
    onStep('config');
    const loaded = await loadConfig(context.configPath, { set: row.set, env: context.env, vars: row.vars });
    secrets = [...secretsOf(loaded.config), ...(context.env.PIIMG_SEED ? [context.env.PIIMG_SEED] : [])];
    const digest = await inputDigest({ version, baseIdentity: context.baseIdentity, config: loaded.config, baseDir: loaded.baseDir, env: context.env });
    const fresh = await upToDate(output, digest);
    lap('config');
    if (fresh) {
      return result('skipped', {
        ...(fresh.wireguardPublicKey ? { wireguardPublicKey: fresh.wireguardPublicKey } : {}),
        ...(fresh.diskId ? { diskId: fresh.diskId } : {}),
      });
    }
    // On the fleet's stage when the device's files include it (see stage.ts), else from the base.
    const stage = await context.stage?.();
    lap('stage');
    const staged = stage ? onStage(stage, loaded) : undefined;
    await mkdir(dirname(output), { recursive: true });
    let made = staged ? await make(context, stage!.image, staged, output, onStep, stage) : undefined;
    if (made === undefined) made = (await make(context, context.base, loaded, output, onStep))!;
    const { applied } = made;
    timings.apply = round(applied.timings.apply);
    if (applied.timings.verify !== undefined) timings.verify = round(applied.timings.verify);
    timings.save = round(made.saveSeconds);
    const facts = {
      ...(applied.outputs.wireguardPublicKey ? { wireguardPublicKey: applied.outputs.wireguardPublicKey } : {}),
      ...(applied.outputs.diskId ? { diskId: applied.outputs.diskId } : {}),
    };
    mark = performance.now();
    await writeSidecar(output, digest, facts);
    timings.save = round(timings.save + (performance.now() - mark) / 1000);
    return result('written', { ...facts, staged: made.staged });
  } catch (error) {
    return result('failed', { error: describeError(error, secrets) });
  }
}

/** Two devices' configurations, whose common files: are the fleet's stage (the first and the last usable rows). */
export function stageRows(rows: { row: DeviceRow; problem?: unknown }[]): [DeviceRow, DeviceRow] | undefined {
  const usable = rows.filter((task) => !task.problem).map((task) => task.row);
  return usable.length >= 2 ? [usable[0]!, usable[usable.length - 1]!] : undefined;
}

/** Loads the configurations of two rows, for fleetStage. */
export function loadStageRows(configPath: string, env: NodeJS.ProcessEnv, rows: [DeviceRow, DeviceRow]): () => Promise<[LoadedConfig, LoadedConfig]> {
  const load = (row: DeviceRow) => loadConfig(configPath, { set: row.set, env, vars: row.vars });
  return async () => [await load(rows[0]), await load(rows[1])];
}
