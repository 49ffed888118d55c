import { resolve } from 'node:path';
import { checkOutputPath, isPiimgError, loadConfig, openImage, PiimgError, throwIfAborted, type ImageApplyResult, type StartedSave } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { injectOptions } from './inject-start.js';
import { deviceLine, EXIT, paint, progressReporter, UsageError, useColor, writeJson, type CliIo } from '../io.js';
import { checkOutput, outputSpec, outputUsage, prepareImage, writeImage } from '../output.js';

const usage = `Usage: piimg inject BASE -o OUT --config FILE [--set key.path=value ...] [--var name=value ...]
                    [--format img|xz|gz|zst] [--level N] [--threads N] [--keep-free-space] [--no-verify] [--sync]
                    [--to-device] [--source-root DIR] [--bmap FILE] [--delta] [--json]

Writes a ready-to-flash device image OUT from BASE (.img, .img.xz, .zip, .gz,
.zst) and a device configuration (YAML or JSON; see the configuration reference).
BASE is never modified. OUT appears only when everything succeeded, filesystems
verified: a failed inject leaves no output file behind.

OUT ending in .img.xz, .img.gz or .img.zst is written compressed (multi-Block xz,
parallel gzip members, parallel zstd frames), '-o -' streams the image to standard
output (never to a terminal).

Options:
  -o, --output OUT      the device image to write (replaced atomically if it exists; it must
                        be a regular file or a new path), or - for standard output
  --to-device           OUT is a block device (SD card, USB stick): write the image onto it
                        in place, every byte, then flush, read it back and compare
  -c, --config FILE     the device configuration
  --set key.path=value  override a configuration value (repeatable), e.g. --set hostname=dev-7
  --var name=value      a {{name}} variable for the configuration (repeatable), e.g. --var device.id=0007
  --source-root DIR     read files[].source only inside DIR (symlinks resolved): a source
                        outside it is a configuration error. Use it whenever the
                        configuration comes from someone else (services, batch jobs)
${outputUsage}
  --bmap FILE           also write a block map of OUT for bmaptool (bmap format 2.0): only
                        the blocks in use are listed, each range with its SHA-256
  --delta               write OUT as a delta against BASE (its changed blocks, a few MB;
                        docs/delta-format.md) instead of an image; 'piimg apply BASE OUT'
                        makes the image from it
  --no-verify           skip the filesystem check before writing OUT
  --sync                fsync OUT before it is renamed into place
  --json                print the report as JSON (secrets are never printed), with the
                        seconds spent in each step under "timings"
  -h, --help            this help

Environment: PIIMG_<KEY>=value overrides configuration keys (see the reference).
PIIMG_SEED=secret (32+ characters) derives generated WireGuard keys and random
disk ids from the seed; with SOURCE_DATE_EPOCH the same inputs and seed give
the same image, byte for byte.`;

function parseVars(list: string[] | undefined): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const item of list ?? []) {
    const at = item.indexOf('=');
    if (at <= 0) throw new UsageError(`--var takes name=value, not '${item}'`);
    vars[item.slice(0, at)] = item.slice(at + 1);
  }
  return vars;
}

/**
 * The inject command; `early` is the copy of the base that list.ts started
 * from the same arguments before this module loaded (inject-start.ts). It is
 * taken over by the save, or cancelled when the command ends without one.
 */
export function injectCommand(early?: StartedSave): Command {
  return {
    name: 'inject',
    usage,
    run: (argv, io) => runInject(argv, io, early),
  };
}

async function runInject(argv: string[], io: CliIo, early: StartedSave | undefined): Promise<number> {
  await using startedSave = early;
  const started = Date.now();
  const { values, positionals } = parse(argv, injectOptions, usage);
  if (wantsHelp(values, io, usage)) return EXIT.ok;
  requirePositionals(positionals, 1, usage);
  if (!values.output) throw new UsageError(`-o OUT is required\n\n${usage}`);
  if (!values.config) throw new UsageError(`--config FILE is required\n\n${usage}`);
  const toDevice = values['to-device'] ?? false;
  const delta = values.delta ?? false;
  if (delta && (toDevice || values.output === '-' || values.format !== undefined)) {
    throw new UsageError('--delta writes a delta file: it takes a file path for -o, without --to-device or --format');
  }
  const output = outputSpec(delta ? `${values.output}.img` : values.output, values);
  if (delta) output.path = values.output;
  // A wrong output is refused before any work is done.
  checkOutput(output, toDevice, io);
  if (values.bmap !== undefined) checkOutputPath(values.bmap);
  // With the image on standard output, the report goes to standard error.
  const reportIo = output.path === '-' ? { ...io, stdout: io.stderr } : io;

  // Seconds spent in each step, reported with --json.
  const timings: Record<string, number> = {};
  let mark = started;
  const lap = (step: string) => {
    const now = Date.now();
    timings[step] = (now - mark) / 1000;
    mark = now;
  };
  // The configuration loads (and its files are checked) while the base opens and its
  // copy starts: a configuration that fails stops the opening (a compressed base is
  // not decompressed in vain) or cancels the copy, and nothing is written.
  const opening = new AbortController();
  const interrupt = () => opening.abort(io.signal!.reason);
  if (io.signal?.aborted) interrupt();
  else io.signal?.addEventListener('abort', interrupt, { once: true });
  const signal = opening.signal;
  const loading = loadConfig(values.config, {
    set: values.set ?? [],
    env: io.env,
    vars: parseVars(values.var),
    ...(values['source-root'] !== undefined ? { sourceRoot: resolve(io.cwd, values['source-root']) } : {}),
  });
  loading.catch((error: unknown) => opening.abort(error));
  const onProgress = progressReporter(io, !values.json);
  const log = (text: string) => {
    if (!values.json && io.stderr.isTTY) io.stderr.write(text + '\n');
  };

  const opened = await openImage(positionals[0]!, { ...(onProgress ? { onProgress } : {}), signal }).catch(async (error: unknown) => {
    // The configuration's own error, when it is why the opening stopped.
    await loading;
    throw error;
  });
  await using image = opened;
  onProgress?.clear();
  lap('open');
  const writeOptions = { sync: values.sync ?? false, toDevice, ...(onProgress ? { onProgress } : {}) };
  // The copy of the base into OUT's temporary file starts now (or was started from the
  // arguments before the modules loaded, and is taken over: inject-start.ts) and runs while
  // the configuration loads and the recipes and the checks compute; a failure on the way removes it.
  await using prepared = delta ? undefined : prepareImage(image, output, io, writeOptions, startedSave);
  const loaded = await loading;
  lap('config');
  log(`base: ${image.sourcePath}${image.cached ? ' (cached)' : ''}`);
  let report: ImageApplyResult;
  try {
    report = await image.apply(loaded, {
      verify: !values['no-verify'],
      onStep: (step) => {
        if (step === 'verify') log('verifying filesystems...');
      },
      ...(io.env.PIIMG_SEED ? { seed: io.env.PIIMG_SEED } : {}),
    });
  } catch (error) {
    if (isPiimgError(error, 'E_VERIFY_FAILED')) {
      throw new PiimgError(error.code, error.message.replace('does not verify:', 'does not verify, nothing was written:'), error.data);
    }
    throw error;
  }
  // Whole milliseconds, as the other steps.
  timings.apply = Math.round(report.timings.apply * 1000) / 1000;
  if (report.timings.verify !== undefined) timings.verify = Math.round(report.timings.verify * 1000) / 1000;
  mark = Date.now();
  throwIfAborted(io.signal, 'inject');
  const verified = report.verified;
  const saved = delta
    ? { path: resolve(values.output), changedBytes: (await image.saveDelta(values.output)).payloadSize, reflinked: false }
    : await writeImage(image, output, io, writeOptions, prepared);
  onProgress?.clear();
  const bmap = values.bmap !== undefined ? await image.writeBmap(values.bmap) : undefined;
  lap('save');

  const summary = {
    base: image.sourcePath,
    output: saved.path,
    config: loaded.sources,
    changes: report.changes,
    warnings: report.warnings,
    outputs: report.outputs,
    verified,
    changedBytes: saved.changedBytes,
    ...('device' in saved && saved.device ? { device: saved.device } : {}),
    ...('blocks' in saved && saved.blocks ? { blocks: saved.blocks } : {}),
    ...(delta ? { delta: true } : {}),
    ...(bmap ? { bmap: { path: resolve(values.bmap!), mappedBlocks: bmap.mappedBlocksCount, blocks: bmap.blocksCount } } : {}),
    seconds: (Date.now() - started) / 1000,
    timings,
  };
  if (values.json) {
    writeJson(reportIo, summary);
    return EXIT.ok;
  }
  const color = useColor(reportIo.stdout, io.env);
  const lines = report.changes.map((c) => `  ${c.action.padEnd(7)} ${c.volume}:${c.path}${c.summary ? `  ${paint(color, 2, c.summary)}` : ''}`);
  reportIo.stdout.write(`${paint(color, 1, saved.path)}: ${report.changes.length} change${report.changes.length === 1 ? '' : 's'}${verified ? ', filesystems verified' : ''}\n`);
  if (lines.length) reportIo.stdout.write(lines.join('\n') + '\n');
  if ('device' in saved && saved.device) reportIo.stdout.write(deviceLine(saved.path, saved.device) + '\n');
  if (bmap) reportIo.stdout.write(`${values.bmap}: block map, ${bmap.mappedBlocksCount} of ${bmap.blocksCount} blocks mapped\n`);
  for (const warning of report.warnings) reportIo.stdout.write(paint(color, 33, `warning: ${warning}`) + '\n');
  for (const [key, value] of Object.entries(report.outputs)) if (value !== undefined) reportIo.stdout.write(`${key}: ${value}\n`);
  return EXIT.ok;
}
