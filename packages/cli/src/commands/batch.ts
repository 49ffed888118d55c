import { mkdir, realpath, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { isPiimgError, loadConfig, openImage, PiimgError, type DeviceConfig, type Image } from '@piimg/core';
import { readDevices, outputFor, type DeviceRow } from '../batch/devices.js';
import { inputDigest, upToDate, writeSidecar } from '../batch/sidecar.js';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { EXIT, paint, UsageError, useColor, writeJson, type CliIo } from '../io.js';
import { version } from '../version.js';

const usage = `Usage: piimg batch BASE --config FILE --devices FILE -o PATTERN [--jobs N] [--json]

Writes one verified device image per row of the devices file, all from one
opened BASE (never modified) and one shared configuration.

Options:
  -c, --config FILE     the configuration shared by every device (YAML or JSON)
  -d, --devices FILE    the devices: CSV with a header line and a "name" column
                        (each column is a {{variable}} of the configuration), or
                        YAML/JSON: a list of {vars: {...}, <setting>: ...}, whose
                        settings override the configuration like --set
  -o, --output PATTERN  where each image goes, e.g. 'out/{name}.img': {name} and
                        other {variable}s are filled in per device (.img only)
  -j, --jobs N          devices made at the same time (default: number of CPUs)
  --json                print the report as JSON (secrets are never printed)
  -h, --help            this help

One device failing (invalid row, unsafe name, configuration that does not
fit, image that does not verify) does not stop the others: the summary says
which failed and why, and the exit status is then 7. Re-running skips a
device whose output is up to date: OUT.piimg.json beside each output records
a salted scrypt key of what it was made from (piimg version, the base file,
the resolved configuration, the content of file sources), never a secret.`;

export type DeviceStatus = 'written' | 'skipped' | 'failed';

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

function describeError(error: unknown, secrets: string[]): { code: string; message: string } {
  const code = isPiimgError(error) ? error.code : 'E_INTERNAL';
  let message = isPiimgError(error) ? error.message : `internal error: ${(error as Error)?.message ?? String(error)}`;
  for (const secret of secrets) message = message.split(secret).join('***');
  return { code, message };
}

/** Identity of the base file as it is now: anything that rewrites it changes this. */
async function baseIdentity(path: string): Promise<string> {
  const info = await stat(path, { bigint: true });
  return createHash('sha256')
    .update([await realpath(path), info.dev, info.ino, info.size, info.mtimeNs].join('\0'))
    .digest('hex');
}

function parseJobs(text: string | undefined): number {
  if (text === undefined) return availableParallelism();
  const jobs = Number(text);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 256) throw new UsageError(`--jobs takes a whole number from 1 to 256, not '${text}'`);
  return jobs;
}

const round = (seconds: number) => Math.round(seconds * 1000) / 1000;

/** A status line on a terminal: overall counts and what each job is doing. */
function progressLine(io: CliIo, enabled: boolean, total: number) {
  let last = 0;
  return (counts: Record<DeviceStatus, number>, running: Map<number, string>, force = false): void => {
    if (!enabled) return;
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    const done = counts.written + counts.skipped + counts.failed;
    const jobs = [...running.values()].join(', ');
    const line = `[${done}/${total}] ${counts.written} written, ${counts.skipped} up to date, ${counts.failed} failed${jobs ? ` | ${jobs}` : ''}`;
    const width = (io.stderr as { columns?: number }).columns ?? 100;
    io.stderr.write(`\r\u001b[2K${line.slice(0, width - 1)}`);
    if (done === total) io.stderr.write('\r\u001b[2K');
  };
}

export const batch: Command = {
  name: 'batch',
  summary: 'write one device image per row of a devices file (CSV or YAML) from one base',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const started = performance.now();
    const { values, positionals } = parse(
      argv,
      {
        config: { type: 'string', short: 'c' },
        devices: { type: 'string', short: 'd' },
        output: { type: 'string', short: 'o' },
        jobs: { type: 'string', short: 'j' },
        json: { type: 'boolean' },
      },
      usage,
    );
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 1, usage);
    if (!values.config) throw new UsageError(`--config FILE is required\n\n${usage}`);
    if (!values.devices) throw new UsageError(`--devices FILE is required\n\n${usage}`);
    if (!values.output) throw new UsageError(`-o PATTERN is required\n\n${usage}`);
    const pattern = values.output;
    if (!pattern.includes('{name}')) throw new UsageError(`-o ${pattern}: the pattern must contain {name}, so that each device gets its own file`);
    if (!pattern.endsWith('.img')) throw new UsageError(`-o ${pattern}: only raw .img outputs are written`);
    if (!/\.(csv|ya?ml|json)$/i.test(values.devices)) throw new UsageError(`--devices ${values.devices}: use a .csv, .yaml, .yml or .json file`);
    const jobs = parseJobs(values.jobs);
    const configPath = resolve(values.config);
    await stat(configPath).catch((error: unknown) => {
      throw new PiimgError('E_NOT_FOUND', `cannot read config file ${values.config}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { path: values.config });
    });

    const rows = await readDevices(values.devices);
    const basePath = positionals[0]!;
    await using base: Image = await openImage(basePath);
    const identity = await baseIdentity(basePath);

    // Outputs are assigned up front: two rows naming the same file both fail.
    const outputs = rows.map((row) => {
      if (row.problem) return undefined;
      try {
        return resolve(outputFor(pattern, row.vars));
      } catch (error) {
        row.problem = error as PiimgError;
        return undefined;
      }
    });
    for (const [i, output] of outputs.entries()) {
      if (output !== undefined && outputs.indexOf(output) !== outputs.lastIndexOf(output)) {
        rows[i]!.problem = new PiimgError('E_DUPLICATE_OUTPUT', `${output} is the output of more than one device`, { output });
      }
    }

    const counts: Record<DeviceStatus, number> = { written: 0, skipped: 0, failed: 0 };
    const running = new Map<number, string>();
    const progress = progressLine(io, !values.json && Boolean(io.stderr.isTTY), rows.length);

    const runDevice = async (row: DeviceRow, output: string | undefined, slot: number): Promise<DeviceResult> => {
      const name = row.vars.name ?? null;
      const label = name ?? row.where;
      const timings: Record<string, number> = {};
      let mark = performance.now();
      const lap = (step: string) => {
        const now = performance.now();
        timings[step] = round((now - mark) / 1000);
        mark = now;
      };
      const step = (what: string) => {
        running.set(slot, `${label}: ${what}`);
        progress(counts, running);
      };
      let secrets: string[] = [];
      const deviceStarted = performance.now();
      const result = (status: DeviceStatus, extra: Partial<DeviceResult> = {}): DeviceResult => ({
        row: row.index,
        name,
        output: output ?? null,
        status,
        ...extra,
        timings: { ...timings, total: round((performance.now() - deviceStarted) / 1000) },
      });
      try {
        if (row.problem) throw row.problem;
        step('config');
        const loaded = await loadConfig(configPath, { set: row.set, env: io.env, vars: row.vars });
        secrets = secretsOf(loaded.config as DeviceConfig);
        const digest = await inputDigest({ version, baseIdentity: identity, config: loaded.config, baseDir: loaded.baseDir, env: io.env });
        const fresh = await upToDate(output!, digest);
        lap('config');
        if (fresh) {
          return result('skipped', {
            ...(fresh.wireguardPublicKey ? { wireguardPublicKey: fresh.wireguardPublicKey } : {}),
            ...(fresh.diskId ? { diskId: fresh.diskId } : {}),
          });
        }
        step('apply');
        await using device = await base.derive();
        const applied = await device.apply(loaded, { onStep: (what) => step(what) });
        timings.apply = round(applied.timings.apply);
        if (applied.timings.verify !== undefined) timings.verify = round(applied.timings.verify);
        mark = performance.now();
        step('save');
        await mkdir(dirname(output!), { recursive: true });
        await device.save(output!);
        const facts = {
          ...(applied.outputs.wireguardPublicKey ? { wireguardPublicKey: applied.outputs.wireguardPublicKey } : {}),
          ...(applied.outputs.diskId ? { diskId: applied.outputs.diskId } : {}),
        };
        await writeSidecar(output!, digest, facts);
        lap('save');
        return result('written', facts);
      } catch (error) {
        return result('failed', { error: describeError(error, secrets) });
      }
    };

    // A pool of `jobs` loops over one queue, in one process: every device is
    // derived from the one opened base (see the README on why not threads).
    const results: DeviceResult[] = new Array(rows.length);
    let next = 0;
    const worker = async (slot: number): Promise<void> => {
      while (next < rows.length) {
        const index = next++;
        const outcome = await runDevice(rows[index]!, outputs[index], slot);
        results[index] = outcome;
        counts[outcome.status]++;
        running.delete(slot);
        progress(counts, running, true);
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, rows.length) }, (_, slot) => worker(slot)));

    const report = {
      base: base.sourcePath,
      config: configPath,
      devices: resolve(values.devices),
      jobs,
      total: rows.length,
      ...counts,
      seconds: round((performance.now() - started) / 1000),
      results,
    };
    const code = counts.failed > 0 ? EXIT.someFailed : EXIT.ok;
    if (values.json) {
      writeJson(io, report);
      return code;
    }
    const color = useColor(io.stdout, io.env);
    for (const outcome of results) {
      const who = outcome.name ?? `row ${outcome.row}`;
      if (outcome.status === 'failed') {
        io.stdout.write(`${paint(color, 31, 'failed ')} ${who}: ${outcome.error!.message} [${outcome.error!.code}]\n`);
      } else {
        io.stdout.write(`${outcome.status === 'written' ? paint(color, 32, 'written') : 'skipped'} ${who} -> ${outcome.output}  ${paint(color, 2, `${outcome.timings.total} s`)}\n`);
      }
    }
    io.stdout.write(
      `${rows.length} device${rows.length === 1 ? '' : 's'}: ${counts.written} written, ${counts.skipped} up to date, ${counts.failed} failed (${report.seconds} s, ${jobs} job${jobs === 1 ? '' : 's'})\n`,
    );
    return code;
  },
};
