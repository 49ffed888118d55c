/**
 * The merge rule of `extends`, PIIMG_* variables and --set: objects merge
 * key by key, everything else (lists, strings, numbers, booleans) replaces
 * the base value, and `null` removes the key from the result.
 */
export type PlainObject = Record<string, unknown>;

export function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** Deep-merges `override` into `base` (objects merge, arrays and scalars replace), as `extends` does. */
export function mergeConfig(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const out: PlainObject = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete out[key];
    else out[key] = key in out ? mergeConfig(out[key], value) : dropNulls(value);
  }
  return out;
}

/** Removes `null` keys from a value that has no base to merge with. */
function dropNulls(value: unknown): unknown {
  if (!isPlainObject(value)) return value;
  const out: PlainObject = {};
  for (const [key, item] of Object.entries(value)) if (item !== null) out[key] = dropNulls(item);
  return out;
}

/** Formats a zod-style path as `wifi.networks[0].password`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(top level)' : out;
}
