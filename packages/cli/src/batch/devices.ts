import { readFile, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { PiimgError } from '@piimg/core';
import { parse as parseYaml } from 'yaml';
import { parseCsv } from './csv.js';

/** One device of a batch: its variables and setting overrides, or why the row cannot be used. */
export interface DeviceRow {
  /** 1-based position in the devices file. */
  index: number;
  /** Where the row is, for messages: "line 4" or "device 3". */
  where: string;
  /** {{variables}} of the configuration; `name` names the device. */
  vars: Record<string, string>;
  /** Setting overrides, as --set assignments (YAML rows only). */
  set: string[];
  /** Set when the row itself is unusable: the device fails alone. */
  problem?: PiimgError;
}

/** Devices files larger than this are refused: a fleet of a million rows is not one batch. */
export const MAX_DEVICES_FILE_BYTES = 64 << 20;
export const MAX_DEVICES = 100_000;

function rowError(message: string, where: string): PiimgError {
  return new PiimgError('E_CONFIG', `${where}: ${message}`, { row: where });
}

/** `{device: {id: "0001"}}` -> `device.id` = "0001", as the configuration's own `vars` are flattened. */
function flatten(value: unknown, prefix: string, out: Record<string, string>, where: string): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw rowError(`vars must be a mapping of names to values`, where);
  }
  for (const [key, item] of Object.entries(value)) {
    const name = prefix === '' ? key : `${prefix}.${key}`;
    if (typeof item === 'object' && item !== null && !Array.isArray(item)) flatten(item, name, out, where);
    else if (typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean') out[name] = String(item);
    else throw rowError(`vars.${name} must be text, a number or a boolean`, where);
  }
}

function csvRows(text: string, origin: string): DeviceRow[] {
  const records = parseCsv(text, origin);
  const header = records.shift();
  if (!header) throw new PiimgError('E_CONFIG', `${origin} is empty: it needs a header line with a "name" column`, { file: origin });
  const names = header.fields.map((field) => field.trim());
  if (!names.includes('name')) throw new PiimgError('E_CONFIG', `${origin}: the header has no "name" column`, { file: origin });
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate !== undefined || names.includes('')) {
    throw new PiimgError('E_CONFIG', `${origin}: header columns must be named and distinct`, { file: origin });
  }
  return records.map((record, i) => {
    const where = `line ${record.line}`;
    const row: DeviceRow = { index: i + 1, where, vars: {}, set: [] };
    if (record.fields.length !== names.length) {
      row.problem = rowError(`has ${record.fields.length} fields, the header has ${names.length}`, where);
      return row;
    }
    names.forEach((name, column) => (row.vars[name] = record.fields[column]!));
    return row;
  });
}

/** A YAML value as a --set value: JSON is YAML flow syntax, so strings stay strings and objects merge. */
function setAssignments(value: Record<string, unknown>): string[] {
  return Object.entries(value).map(([key, item]) => `${key}=${JSON.stringify(item)}`);
}

function yamlRows(text: string, origin: string): DeviceRow[] {
  let value: unknown;
  try {
    value = parseYaml(text, { uniqueKeys: true });
  } catch (error) {
    // First line only: the rest quotes the source, which may hold a secret.
    throw new PiimgError('E_CONFIG', `${origin} is not valid YAML: ${(error as Error).message.split('\n')[0]}`, { file: origin });
  }
  const list = Array.isArray(value) ? value : (value as { devices?: unknown } | null)?.devices;
  if (!Array.isArray(list)) throw new PiimgError('E_CONFIG', `${origin} must hold a list of devices (or a "devices:" list)`, { file: origin });
  return list.map((item, i) => {
    const where = `device ${i + 1}`;
    const row: DeviceRow = { index: i + 1, where, vars: {}, set: [] };
    try {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw rowError('must be a mapping with vars and settings', where);
      const { vars, ...settings } = item as Record<string, unknown>;
      if (vars !== undefined) flatten(vars, '', row.vars, where);
      if ('extends' in settings) throw rowError('extends is not allowed in a device row', where);
      row.set = setAssignments(settings);
    } catch (error) {
      row.problem = error as PiimgError;
    }
    return row;
  });
}

/** Reads the devices of a batch: CSV (a header with a `name` column) or YAML/JSON (a list of `{vars, ...settings}`). */
export async function readDevices(path: string): Promise<DeviceRow[]> {
  const kind = extname(path).toLowerCase();
  if (!['.csv', '.yaml', '.yml', '.json'].includes(kind)) {
    throw new PiimgError('E_USAGE', `--devices ${path}: use a .csv, .yaml, .yml or .json file`, { file: path });
  }
  let text: string;
  try {
    if ((await stat(path)).size > MAX_DEVICES_FILE_BYTES) {
      throw new PiimgError('E_LIMIT_DEVICES', `${path} is larger than ${MAX_DEVICES_FILE_BYTES >> 20} MiB`, { file: path });
    }
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof PiimgError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new PiimgError(code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `cannot read ${path}: ${code ?? 'error'}`, { file: path }, { cause: error });
  }
  const rows = kind === '.csv' ? csvRows(text, path) : yamlRows(text, path);
  if (rows.length === 0) throw new PiimgError('E_CONFIG', `${path} lists no devices`, { file: path });
  if (rows.length > MAX_DEVICES) throw new PiimgError('E_CONFIG', `${path} lists more than ${MAX_DEVICES} devices`, { file: path });
  return rows;
}

// Path separators, Windows' reserved characters and control characters.
const UNSAFE = /[/\\<>:"|?*\u0000-\u001f\u007f]/;

/** Throws E_UNSAFE_NAME unless `value` can be used as (part of) one file name on Linux, macOS and Windows. */
export function checkFileNamePart(value: string, what: string): void {
  if (value === '' || value === '.' || value === '..' || value.includes('..') || UNSAFE.test(value) || value.length > 200) {
    throw new PiimgError('E_UNSAFE_NAME', `${what} ${JSON.stringify(value.replace(/[\u0000-\u001f\u007f]/g, '?'))} is not safe in a file name (empty, "..", a path separator, a control or reserved character, or over 200 characters)`, {
      variable: what,
    });
  }
}

const PLACEHOLDER = /\{([A-Za-z0-9_.-]+)\}/g;

/** The output path of a device: `{name}` and other `{variable}` placeholders of the pattern filled in, each checked as a file name part. */
export function outputFor(pattern: string, vars: Record<string, string>): string {
  checkFileNamePart(vars.name ?? '', 'name');
  return pattern.replace(PLACEHOLDER, (_, name: string) => {
    const value = vars[name];
    if (value === undefined) throw new PiimgError('E_CONFIG', `the output pattern uses {${name}}, which this device does not set`, { variable: name });
    checkFileNamePart(value, name);
    return value;
  });
}
