import { parseArgs, type ParseArgsConfig } from 'node:util';
import { type CliIo, UsageError } from './base.js';

export interface Command {
  name: string;
  usage: string;
  run(argv: string[], io: CliIo): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;
type WithHelp<T extends Options> = T & { help: { type: 'boolean'; short: 'h' } };
type Parsed<T extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: WithHelp<T>; allowPositionals: true; strict: true }>>;

/** Strict argument parsing: unknown options and missing values are usage errors. */
export function parse<T extends Options>(argv: string[], options: T, usage: string): Parsed<T> {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${usage}`);
  }
}

export function wantsHelp(values: Record<string, unknown>, io: CliIo, usage: string): boolean {
  if (values.help) {
    io.stdout.write(usage.trimEnd() + '\n');
    return true;
  }
  return false;
}

export function requirePositionals(positionals: string[], count: number, usage: string): void {
  if (positionals.length !== count) {
    throw new UsageError(`expected ${count} argument${count === 1 ? '' : 's'}, got ${positionals.length}\n\n${usage}`);
  }
}
