import { realpathSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve, sep } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { PiimgError } from '../errors.js';
import { formatPath, isPlainObject, mergeConfig, type PlainObject } from './merge.js';
import { deviceConfigSchema, type DeviceConfig } from './schema.js';

/** A checked device configuration with the files it came from. */
export interface LoadedConfig {
  config: DeviceConfig;
  /** Directory of the top config file; `files[].source` paths are already absolute. */
  baseDir: string;
  /** Every config file read, bases first. */
  sources: string[];
  /** The real path of the directory every `files[].source` was confined to, when one was given. */
  sourceRoot?: string;
}

/** Where `files[].source` may read from, for configurations that come from others. */
export interface SourceRootOption {
  /**
   * Confines every `files[].source`, and every file inside a source tree, to
   * this directory: paths outside it, and symlinks that lead outside it, are
   * refused with E_CONFIG. Without it, a config can read any file the process
   * can (`../../etc/shadow`), which is the user's own choice on the command
   * line but not for a service or batch job that takes configs from others:
   * those must set it.
   */
  sourceRoot?: string;
}

/** What may override a configuration file: --set, the environment, variables. */
export interface ConfigOverrides {
  /** `key.path=value` assignments (the CLI's --set); values are YAML scalars or flow collections. */
  set?: string[];
  /** Environment searched for PIIMG_* overrides and {{env.NAME}} placeholders. */
  env?: NodeJS.ProcessEnv;
  /** Values for {{name}} placeholders; they win over the config's own `vars`. */
  vars?: Record<string, string>;
}

/** Options of `parseConfig`. */
export interface ParseConfigOptions extends ConfigOverrides, SourceRootOption {
  /** Directory that relative `files[].source` paths are resolved against. */
  baseDir?: string;
  /** Name of the input, for messages. */
  origin?: string;
}

const MAX_EXTENDS_DEPTH = 16;
const ENV_PREFIX = 'PIIMG_';
const TOP_LEVEL_KEYS = new Set(Object.keys(deviceConfigSchema.shape));

function configError(message: string, data: Record<string, unknown> = {}, cause?: unknown): PiimgError {
  return new PiimgError('E_CONFIG', message, data, { cause });
}

async function readConfigFile(path: string): Promise<PlainObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw configError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { file: path }, error);
  }
  let value: unknown;
  try {
    // YAML 1.2 is a superset of JSON, so one parser serves .yaml, .yml and .json.
    value = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (error) {
    const where = error instanceof YAMLParseError && error.linePos ? ` (line ${error.linePos[0].line})` : '';
    // Only the first line of the parser's message, and no cause: the rest quotes the
    // offending source line, which may hold a password.
    const reason = (error as Error).message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw configError(`config file ${path}${where} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${reason}`, { file: path });
  }
  if (value === null || value === undefined) return {};
  if (!isPlainObject(value)) throw configError(`config file ${path} must hold a mapping of settings`, { file: path });
  return value;
}

/** Makes every `files[].source` of one file absolute, relative to that file. */
function resolveSources(value: PlainObject, dir: string): void {
  const files = value.files;
  if (!Array.isArray(files)) return;
  for (const entry of files) {
    if (isPlainObject(entry) && typeof entry.source === 'string' && !isAbsolute(entry.source)) {
      entry.source = resolve(dir, entry.source);
    }
  }
}

async function loadChain(path: string, chain: string[], sources: string[]): Promise<PlainObject> {
  if (chain.includes(path)) throw configError(`extends cycle: ${[...chain, path].join(' -> ')}`, { file: path });
  if (chain.length >= MAX_EXTENDS_DEPTH) throw configError(`extends is nested deeper than ${MAX_EXTENDS_DEPTH} files`, { file: path });
  // The configuration given may come through a pipe (`--config <(...)`); a file it extends
  // must be a regular file: a FIFO nobody writes would block its read for good.
  if (chain.length > 0) {
    const stats = await stat(path).catch(() => undefined);
    if (stats && !stats.isFile()) throw configError(`${chain.at(-1)}: extends ${path}, which is not a regular file`, { file: path });
  }
  const value = await readConfigFile(path);
  const dir = dirname(path);
  resolveSources(value, dir);
  const bases = value.extends === undefined ? [] : Array.isArray(value.extends) ? value.extends : [value.extends];
  let merged: unknown = {};
  for (const base of bases) {
    if (typeof base !== 'string' || base === '') throw configError(`${path}: extends must name config files`, { file: path });
    merged = mergeConfig(merged, await loadChain(resolve(dir, base), [...chain, path], sources));
  }
  sources.push(path);
  const own = { ...value };
  delete own.extends;
  return mergeConfig(merged, own) as PlainObject;
}

/** Parses an override value: YAML scalars and flow collections, keeping the raw text too. */
function parseOverrideValue(raw: string): unknown {
  try {
    const value: unknown = parseYaml(raw);
    // "0001" would become 1: keep numbers only when they print back the same.
    if (typeof value === 'number' && String(value) !== raw.trim()) return raw;
    return value === undefined ? raw : value;
  } catch {
    return raw;
  }
}

function splitKeyPath(key: string): Array<string | number> {
  return key.split('.').map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}

function setPath(root: PlainObject, path: Array<string | number>, value: unknown, what: string): void {
  let node: unknown = root;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    const container = node as Record<string | number, unknown>;
    let next = container[key];
    if (next === undefined || next === null) {
      next = typeof path[i + 1] === 'number' ? [] : {};
      container[key] = next;
    }
    if (typeof next !== 'object') throw configError(`${what}: ${formatPath(path.slice(0, i + 1))} is not an object or list`, {});
    node = next;
  }
  const last = path[path.length - 1]!;
  const container = node as Record<string | number, unknown>;
  if (value === null) {
    if (Array.isArray(container) && typeof last === 'number') container.splice(last, 1);
    else delete container[last];
  } else {
    container[last] = value;
  }
}

/** `SSH__PASSWORD_AUTHENTICATION` -> ['ssh', 'passwordAuthentication']. */
function envKeyPath(name: string): Array<string | number> {
  return name.split('__').map((segment) => {
    if (/^\d+$/.test(segment)) return Number(segment);
    return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  });
}

interface Override {
  path: Array<string | number>;
  raw: string;
  origin: string;
}

function collectOverrides(options: ConfigOverrides): Override[] {
  const overrides: Override[] = [];
  const env = options.env ?? {};
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(ENV_PREFIX) || env[name] === undefined) continue;
    const path = envKeyPath(name.slice(ENV_PREFIX.length));
    // Only names that start with a setting are overrides: PIIMG_CACHE_DIR and the like belong to the CLI.
    if (typeof path[0] !== 'string' || !TOP_LEVEL_KEYS.has(path[0])) continue;
    overrides.push({ path, raw: env[name]!, origin: `environment variable ${name}` });
  }
  for (const assignment of options.set ?? []) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw configError(`--set ${JSON.stringify(assignment)} must look like key.path=value`, {});
    const key = assignment.slice(0, eq).trim();
    if (!/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(key)) throw configError(`--set key ${JSON.stringify(key)} must be dot-separated names or list indexes`, {});
    overrides.push({ path: splitKeyPath(key), raw: assignment.slice(eq + 1), origin: `--set ${key}` });
  }
  return overrides;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;

function flattenVars(value: unknown, prefix: string, out: Map<string, string>): void {
  if (!isPlainObject(value)) return;
  for (const [key, item] of Object.entries(value)) {
    const name = prefix === '' ? key : `${prefix}.${key}`;
    if (isPlainObject(item)) flattenVars(item, name, out);
    else if (typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean') out.set(name, String(item));
  }
}

function substitute(value: unknown, path: Array<string | number>, lookup: (name: string, where: string) => string): unknown {
  if (typeof value === 'string') {
    return value.replace(PLACEHOLDER, (_, name: string) => lookup(name, formatPath(path)));
  }
  if (Array.isArray(value)) return value.map((item, index) => substitute(item, [...path, index], lookup));
  if (isPlainObject(value)) {
    const out: PlainObject = {};
    for (const [key, item] of Object.entries(value)) out[key] = substitute(item, [...path, key], lookup);
    return out;
  }
  return value;
}

function applyVariables(value: PlainObject, options: ConfigOverrides): PlainObject {
  const env = options.env ?? {};
  const envLookup = (name: string, where: string): string => {
    if (name.startsWith('env.')) {
      const found = env[name.slice(4)];
      if (found === undefined) throw configError(`${where}: environment variable ${name.slice(4)} for {{${name}}} is not set`, { path: where });
      return found;
    }
    throw configError(`${where}: vars may only use {{env.NAME}} placeholders, not {{${name}}}`, { path: where });
  };
  const vars = new Map<string, string>();
  flattenVars(substitute(value.vars, ['vars'], envLookup), '', vars);
  for (const [name, item] of Object.entries(options.vars ?? {})) vars.set(name, String(item));
  const lookup = (name: string, where: string): string => {
    const found = vars.get(name);
    if (found !== undefined) return found;
    if (name.startsWith('env.')) return envLookup(name, where);
    throw configError(`${where}: unknown variable {{${name}}} (define it under vars or pass it as a variable)`, { path: where, variable: name });
  };
  const out: PlainObject = {};
  for (const [key, item] of Object.entries(value)) out[key] = key === 'vars' ? item : substitute(item, [key], lookup);
  return out;
}

function samePath(a: ReadonlyArray<PropertyKey>, b: ReadonlyArray<PropertyKey>): boolean {
  return a.length === b.length && a.every((part, i) => part === b[i]);
}

/** Union failures list what each alternative wanted instead of zod's "Invalid input". */
function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    const wanted = [...new Set(issue.errors.map((errors) => errors[0]?.message).filter(Boolean))];
    return wanted.join(', or ');
  }
  return issue.message;
}

function validate(value: PlainObject, overrides: Override[], origin: string): DeviceConfig {
  let result = deviceConfigSchema.safeParse(value);
  if (!result.success) {
    // A --set or PIIMG_* value that looked like a number or boolean but sits where text belongs is text.
    let retried = false;
    for (const issue of result.error.issues) {
      if (issue.code !== 'invalid_type' && issue.code !== 'invalid_union') continue;
      const override = overrides.find((o) => samePath(o.path, issue.path));
      const parsed = override && parseOverrideValue(override.raw);
      if (override && (typeof parsed === 'number' || typeof parsed === 'boolean')) {
        setPath(value, override.path, override.raw, override.origin);
        retried = true;
      }
    }
    if (retried) result = deviceConfigSchema.safeParse(value);
  }
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown setting`).join('\n  ');
    }
    return `${formatPath(issue.path)}: ${describeIssue(issue)}`;
  });
  const issues = result.error.issues.map((issue) => ({ path: formatPath(issue.path), code: issue.code, message: describeIssue(issue) }));
  throw configError(`invalid configuration${origin ? ` in ${origin}` : ''}:\n  ${lines.join('\n  ')}`, { issues });
}

function prepare(value: PlainObject, options: ParseConfigOptions): { value: PlainObject; overrides: Override[] } {
  const overrides = collectOverrides(options);
  let merged = structuredClone(value);
  for (const override of overrides) {
    const parsed = parseOverrideValue(override.raw);
    if (isPlainObject(parsed)) {
      // An object given on the command line merges like a config file would.
      const patch: PlainObject = {};
      setPath(patch, override.path, parsed, override.origin);
      merged = mergeConfig(merged, patch) as PlainObject;
    } else {
      setPath(merged, override.path, parsed, override.origin);
    }
    if (override.path[0] === 'files') resolveSources(merged, options.baseDir ?? process.cwd());
  }
  return { value: applyVariables(merged, options), overrides };
}

/**
 * Validates a configuration value (already parsed from YAML or JSON), after
 * applying PIIMG_* variables, --set assignments and {{variables}}.
 * `extends` needs files: use loadConfig for it.
 */
export function parseConfig(value: unknown, options: ParseConfigOptions = {}): DeviceConfig {
  if (!isPlainObject(value)) throw configError('the configuration must be a mapping of settings', {});
  if (value.extends !== undefined) throw configError('extends: only config files loaded with loadConfig can extend others', {});
  const copy = structuredClone(value);
  resolveSources(copy, options.baseDir ?? process.cwd());
  const { value: prepared, overrides } = prepare(copy, options);
  const config = validate(prepared, overrides, options.origin ?? '');
  if (options.sourceRoot !== undefined) confineSources(config, options.baseDir ?? process.cwd(), options.sourceRoot);
  return config;
}

function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The real path of a source root directory (E_CONFIG when it is not one). */
export function realSourceRoot(root: string): string {
  try {
    const real = realpathSync(resolve(root));
    return real;
  } catch (error) {
    throw configError(`the source root ${root} does not exist`, { sourceRoot: root }, error);
  }
}

/**
 * The real path of `source` if it lies inside `realRoot` (from realSourceRoot),
 * else E_CONFIG naming `what`. The lexical path is checked first, so a path
 * outside the root is refused without being looked at; then symlinks are
 * resolved and the real path checked again.
 */
export function confineSource(source: string, realRoot: string, what: string, givenRoot = realRoot): string {
  const lexical = resolve(source);
  const outside = () => configError(`${what}: ${source} is outside the source root ${givenRoot}`, { path: what, sourceRoot: givenRoot });
  if (!within(lexical, realRoot) && !within(lexical, resolve(givenRoot))) throw outside();
  let real: string;
  try {
    real = realpathSync(lexical);
  } catch (error) {
    throw configError(`${what}: ${source} does not exist`, { path: what }, error);
  }
  if (!within(real, realRoot)) {
    throw configError(`${what}: ${source} leads outside the source root ${givenRoot} through a symbolic link`, { path: what, sourceRoot: givenRoot });
  }
  return real;
}

/** E_CONFIG unless every `files[].source` lies inside the source root. */
function confineSources(config: DeviceConfig, baseDir: string, sourceRoot: string): void {
  const root = realSourceRoot(sourceRoot);
  for (const [index, entry] of (config.files ?? []).entries()) {
    if (entry.source !== undefined) confineSource(resolve(baseDir, entry.source), root, `files[${index}].source`, sourceRoot);
  }
}

/**
 * Fails with E_CONFIG unless every `files[].source` exists on the host as a
 * regular file or a directory (and, with a source root, lies inside it).
 */
export async function checkSources(config: DeviceConfig, baseDir: string, options: SourceRootOption = {}): Promise<void> {
  if (options.sourceRoot !== undefined) confineSources(config, baseDir, options.sourceRoot);
  const missing: string[] = [];
  for (const [index, entry] of (config.files ?? []).entries()) {
    if (entry.source === undefined) continue;
    let stats: Awaited<ReturnType<typeof stat>>;
    try {
      stats = await stat(resolve(baseDir, entry.source));
    } catch {
      missing.push(`files[${index}].source: ${entry.source} does not exist`);
      continue;
    }
    // A FIFO or socket would block the read that copies it for good; a device is no file to copy.
    if (!stats.isFile() && !stats.isDirectory()) missing.push(`files[${index}].source: ${entry.source} is not a regular file or directory`);
  }
  if (missing.length > 0) {
    throw configError(`invalid configuration:\n  ${missing.join('\n  ')}`, {
      issues: missing.map((message) => ({ path: message.slice(0, message.indexOf(':')), code: 'missing_file', message })),
    });
  }
}

/**
 * Reads a YAML or JSON device configuration with its `extends` chain,
 * applies PIIMG_* environment variables, then --set assignments, then
 * {{variables}}, validates it and checks that every file source exists
 * (and lies inside `sourceRoot` when given; the result carries it, so
 * applyConfig keeps every file of a source tree inside it too).
 */
export async function loadConfig(path: string, options: ConfigOverrides & SourceRootOption = {}): Promise<LoadedConfig> {
  const absolute = resolve(path);
  const sources: string[] = [];
  const raw = await loadChain(absolute, [], sources);
  const baseDir = dirname(absolute);
  const { value, overrides } = prepare(raw, { ...options, baseDir });
  const config = validate(value, overrides, absolute);
  await checkSources(config, baseDir, options.sourceRoot !== undefined ? { sourceRoot: options.sourceRoot } : {});
  return { config, baseDir, sources, ...(options.sourceRoot !== undefined ? { sourceRoot: options.sourceRoot } : {}) };
}
