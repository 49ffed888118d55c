import { parseArgs } from 'node:util';
import { startSave, type StartedSave } from '@piimg/core/early';
import type { CliIo } from '../base.js';
import { outputOptions } from '../output-options.js';

/** The options of `piimg inject` (parse() adds -h, --help). */
export const injectOptions = {
  output: { type: 'string', short: 'o' },
  config: { type: 'string', short: 'c' },
  set: { type: 'string', multiple: true },
  var: { type: 'string', multiple: true },
  'no-verify': { type: 'boolean' },
  sync: { type: 'boolean' },
  'to-device': { type: 'boolean' },
  bmap: { type: 'string' },
  delta: { type: 'boolean' },
  'source-root': { type: 'string' },
  json: { type: 'boolean' },
  ...outputOptions,
} as const;

/**
 * Starts the copy of BASE into OUT's temporary file (startSave) before the
 * command's modules load, when the arguments ask for a raw OUT file: in a
 * fresh process the copy then runs during the ~60-90 ms that loading takes,
 * instead of after it (bench/inject.bench.mjs). The command takes the copy
 * over once it has opened the image and checked everything, or cancels it.
 * Arguments that are wrong, or ask for anything else (standard output, a
 * device, a delta, a compressed OUT or BASE), start nothing: the command's
 * own parse and checks report them as always.
 */
export function startInjectSave(argv: string[], io: CliIo): StartedSave | undefined {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...injectOptions, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch {
    return undefined;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length !== 1 || values.config === undefined) return undefined;
  if (values.output === undefined || values.output === '-' || values['to-device'] || values.delta) return undefined;
  return startSave(positionals[0]!, values.output, {
    ...(values.format !== undefined ? { format: values.format } : {}),
    ...(io.signal ? { signal: io.signal } : {}),
  });
}
