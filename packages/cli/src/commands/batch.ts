import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { openImage, PiimgError, type Image } from '@piimg/core';
import { baseIdentity, describeError, loadStageRows, makeDevice, stageRows, type DeviceResult, type DeviceStatus, type DeviceTask } from '../batch/device.js';
import { readDevices, outputFor } from '../batch/devices.js';
import { fleetStage } from '../batch/stage.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from '../batch/worker.js';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { EXIT, paint, UsageError, useColor, writeJson, type CliIo } from '../io.js';

export type { DeviceResult, DeviceStatus } from '../batch/device.js';

const usage = `Usage: piimg batch BASE --config FILE --devices FILE -o PATTERN [--jobs N] [--in-process] [--no-stage] [--json]

Writes one verified device image per row of the devices file, all from one
opened BASE (never modified) and one shared configuration.

Options:
  -c, --config FILE     the configuration shared by every device (YAML or JSON)
  -d, --devices FILE    the devices: CSV with a header line and a "name" column
                        (each column is a {{variable}} of the configuration), or
                        YAML/JSON: a list of {vars: {...}, <setting>: ...}, whose
                        settings override the configuration like --set
  -o, --output PATTERN  where each image goes, e.g. 'out/{name}.img': {name} and
                        other {variable}s are filled in per device; .img.xz,
                        .img.gz and .img.zst compress each image (one thread per
                        device; .xz/.gz Blocks the device shares with the base
                        come from the cache of the base's compressed Blocks)
  -j, --jobs N          devices made at the same time, each on a worker thread
                        with its own opened base (default: number of CPUs)
  --in-process          make them on the main thread instead (async, one opened base)
  --no-stage            write every device's files itself (see below)
  --json                print the report as JSON (secrets are never printed)
  -h, --help            this help

One device failing (invalid row, unsafe name, configuration that does not
fit, image that does not verify) does not stop the others: the summary says
which failed and why, and the exit status is then 7. Re-running skips a
device whose output is up to date: OUT.piimg.json beside each output records
a salted scrypt key of what it was made from (piimg version, the base file,
the resolved configuration, the content of file sources), never a secret.
PIIMG_SEED and SOURCE_DATE_EPOCH work as for inject (see inject --help).

The files: entries every device shares (an agent tree) are written once per
worker into a stage derived from BASE, and each device is derived from that
stage. A device whose other settings write a path the stage wrote, or whose
files differ, is made from BASE with its whole configuration.`;

function parseJobs(text: string | undefined): number {
  if (text === undefined) return availableParallelism();
  const jobs = Number(text);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 256) throw new UsageError(`--jobs takes a whole number from 1 to 256, not '${text}'`);
  return jobs;
}

const round = (seconds: number) => Math.round(seconds * 1000) / 1000;

/** Runs devices one at a time on one executor (a worker thread, or this thread). */
interface Runner {
  run(index: number, task: DeviceTask, onStep: (what: string) => void): Promise<DeviceResult>;
  close(): Promise<void>;
}

/** The built worker entry (lib/batch/worker.js); absent when running from sources (tests), which then use this thread. */
const workerUrl = new URL('./batch/worker.js', import.meta.url);
export const canUseThreads = (): boolean => workerUrl.protocol === 'file:' && existsSync(fileURLToPath(workerUrl));

/** A runner on a worker thread with its own opened base. A thread that dies fails its device; the next one starts a new thread. */
function threadRunner(init: WorkerInit): Runner {
  let worker: Worker | undefined;
  let pending: { index: number; task: DeviceTask; onStep: (what: string) => void; done: (result: DeviceResult) => void } | undefined;
  let fatal: { code: string; message: string } | undefined;
  const fail = (error: { code: string; message: string }) => {
    const job = pending;
    pending = undefined;
    worker = undefined;
    if (job) job.done({ row: job.task.row.index, name: job.task.row.vars.name ?? null, output: job.task.output ?? null, status: 'failed', error, timings: {} });
  };
  const start = (): Worker => {
    const thread = new Worker(workerUrl, { workerData: init });
    thread.on('message', (reply: WorkerReply) => {
      if (reply.type === 'fatal') {
        fatal = reply.error;
        fail(reply.error);
      } else if (reply.type === 'step' && pending?.index === reply.index) pending.onStep(reply.what);
      else if (reply.type === 'done' && pending?.index === reply.index) {
        const job = pending;
        pending = undefined;
        job.done(reply.result);
      }
    });
    thread.on('error', (error) => fail(describeError(error)));
    thread.on('exit', (code) => {
      if (worker === thread) fail({ code: 'E_INTERNAL', message: `internal error: a batch worker thread stopped (exit code ${code})` });
    });
    return thread;
  };
  return {
    run(index, task, onStep) {
      return new Promise((done) => {
        if (fatal) return done({ row: task.row.index, name: task.row.vars.name ?? null, output: task.output ?? null, status: 'failed', error: fatal, timings: {} });
        worker ??= start();
        pending = { index, task, onStep, done };
        worker.postMessage({ type: 'device', index, task } satisfies WorkerRequest);
      });
    },
    async close() {
      const thread = worker;
      worker = undefined;
      if (!thread) return;
      const exited = new Promise((done) => thread.once('exit', done));
      thread.postMessage({ type: 'stop' } satisfies WorkerRequest);
      await exited;
    },
  };
}

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
        'in-process': { type: 'boolean' },
        'no-stage': { type: 'boolean' },
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
    if (!/\.img(\.(xz|gz|zst))?$/.test(pattern)) throw new UsageError(`-o ${pattern}: the output name ends in .img, .img.xz, .img.gz or .img.zst (the format of every image)`);
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

    const tasks: DeviceTask[] = rows.map(({ problem, ...row }, i) => ({
      row,
      output: outputs[i],
      ...(problem ? { problem: describeError(problem) } : {}),
    }));
    // Worker threads, each with its own opened base, so devices use every CPU
    // and the main thread stays free; this thread when asked (or from sources).
    const threads = !values['in-process'] && canUseThreads();
    const staged = values['no-stage'] ? undefined : stageRows(tasks);
    const stage = staged && !threads ? fleetStage(base, loadStageRows(configPath, io.env, staged)) : undefined;
    const context = { base, configPath, env: io.env, baseIdentity: identity, ...(stage ? { stage: stage.get } : {}) };
    const init: WorkerInit = { basePath: resolve(basePath), configPath, env: { ...io.env }, baseIdentity: identity, ...(staged ? { stageRows: staged } : {}) };
    const runners: Runner[] = Array.from({ length: Math.min(jobs, rows.length) }, () =>
      threads ? threadRunner(init) : { run: (_index, task, onStep) => makeDevice(context, task, onStep), close: async () => undefined },
    );
    const results: DeviceResult[] = new Array(rows.length);
    let next = 0;
    const loop = async (runner: Runner, slot: number): Promise<void> => {
      while (next < tasks.length) {
        const index = next++;
        const task = tasks[index]!;
        const label = task.row.vars.name || task.row.where;
        const outcome = task.problem
          ? await makeDevice(context, task)
          : await runner.run(index, task, (what) => {
              running.set(slot, `${label}: ${what}`);
              progress(counts, running);
            });
        results[index] = outcome;
        counts[outcome.status]++;
        running.delete(slot);
        progress(counts, running, true);
      }
    };
    try {
      await Promise.all(runners.map((runner, slot) => loop(runner, slot)));
    } finally {
      await Promise.all(runners.map((runner) => runner.close()));
      await stage?.close();
    }

    const report = {
      base: base.sourcePath,
      config: configPath,
      devices: resolve(values.devices),
      jobs,
      threads,
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
