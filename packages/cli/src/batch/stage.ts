import { isPiimgError, type ApplyReport, type FileEntry, type Image, type LoadedConfig } from '@piimg/core';

/**
 * The fleet's shared files, written once. In a fleet the heavy part of every
 * device is usually the same: the agent tree of `files:`, identical for each
 * device. A stage is an image derived from the base with those entries
 * applied; each device is then derived from the stage and applies only the
 * rest of its configuration, instead of writing the same megabytes again.
 *
 * The result is the image `inject` makes, in another order: the staged
 * entries are written before the device's other settings. That order only
 * matters where both write the same path, or where a device deletes or
 * renames a directory that holds staged files; such a device is made again
 * from the base with its whole configuration (see conflictWith). A device
 * whose files do not include every staged entry (a YAML row that overrides
 * `files`) is made from the base too.
 */
export interface Stage {
  image: Image;
  /** The staged entries, as JSON, in config order. */
  keys: string[];
  /** Every path the stage wrote, by volume. */
  paths: { boot: Set<string>; root: Set<string> };
}

const entryKey = (entry: FileEntry): string => JSON.stringify(entry);

/**
 * Derives the stage of a fleet from `base`, with the `files:` of `loaded`
 * (the entries the devices share). Entries whose owner the base does not know yet (a
 * user the device configuration creates) are left to each device. Returns
 * undefined when nothing can be staged: devices are then made from the base.
 */
export async function makeStage(base: Image, loaded: LoadedConfig): Promise<Stage | undefined> {
  const all = loaded.config.files ?? [];
  if (all.length === 0) return undefined;
  // First every entry; when the base lacks an owner (E_CONFIG), only the entries with numeric or no owners.
  const numeric = all.filter((entry) => entry.owner === undefined || /^\d+(:\d+)?$/.test(entry.owner));
  const attempts = numeric.length === all.length ? [all] : [all, numeric];
  for (const entries of attempts) {
    if (entries.length === 0) continue;
    const image = await base.derive();
    try {
      const applied = await image.apply({ ...loaded, config: { files: entries } }, { verify: false });
      return { image, keys: entries.map(entryKey), paths: pathsOf(applied) };
    } catch (error) {
      await image.close();
      if (!isPiimgError(error) || error.code !== 'E_CONFIG') throw error;
    }
  }
  return undefined;
}

function pathsOf(report: ApplyReport): Stage['paths'] {
  const paths: Stage['paths'] = { boot: new Set(), root: new Set() };
  for (const change of report.changes) paths[change.volume].add(change.path);
  return paths;
}

/**
 * The configuration a device applies on top of the stage: its own without
 * the staged entries. Undefined when the device's files do not include every
 * staged entry: it is made from the base.
 */
export function onStage(stage: Stage, loaded: LoadedConfig): LoadedConfig | undefined {
  const files = loaded.config.files ?? [];
  const keys = files.map(entryKey);
  if (!stage.keys.every((key) => keys.includes(key))) return undefined;
  const rest = files.filter((_, i) => !stage.keys.includes(keys[i]!));
  const { files: _files, ...config } = loaded.config;
  return { ...loaded, config: rest.length > 0 ? { ...config, files: rest } : config };
}

/**
 * The first change of a device (applied on the stage) that the original
 * order would have undone or been undone by: a write to a path the stage
 * wrote, or a delete or rename of a directory holding one. Undefined when
 * the order does not matter.
 */
export function conflictWith(stage: Stage, report: ApplyReport): string | undefined {
  for (const change of report.changes) {
    const paths = stage.paths[change.volume];
    if (paths.has(change.path)) return `${change.volume}:${change.path}`;
    if (change.action === 'delete' || change.action === 'rename') {
      const prefix = change.path.endsWith('/') ? change.path : `${change.path}/`;
      for (const path of paths) if (path.startsWith(prefix)) return `${change.volume}:${path}`;
    }
  }
  return undefined;
}

/** The files: entries of `a` that `b` has too (in `a`'s order): those that do not depend on the device. */
export function sharedFiles(a: LoadedConfig, b: LoadedConfig): FileEntry[] {
  const other = new Set((b.config.files ?? []).map(entryKey));
  return (a.config.files ?? []).filter((entry) => other.has(entryKey(entry)));
}

/**
 * The stage of one batch (or one worker thread), made when the first device
 * asks for it, from the files two devices of the batch share (`load` gives
 * their configurations).
 */
export function fleetStage(
  base: Image,
  load: () => Promise<[LoadedConfig, LoadedConfig]>,
): { get: () => Promise<Stage | undefined>; close: () => Promise<void> } {
  let made: Promise<Stage | undefined> | undefined;
  const make = async () => {
    const [a, b] = await load();
    return makeStage(base, { ...a, config: { files: sharedFiles(a, b) } });
  };
  return {
    // A stage that cannot be made (a source that cannot be read...) is no stage: each device then meets the problem itself.
    get: () => (made ??= make().catch(() => undefined)),
    close: async () => {
      await (await made)?.image.close();
    },
  };
}
