import { isPiimgError } from '@piimg/core';
import type { Command } from './command.js';
import { cat } from './commands/cat.js';
import { cp } from './commands/cp.js';
import { diff } from './commands/diff.js';
import { info } from './commands/info.js';
import { inject } from './commands/inject.js';
import { ls } from './commands/ls.js';
import { verify } from './commands/verify.js';
import { batch } from './commands/batch.js';
import { serve } from './commands/serve.js';
import { worker } from './commands/worker.js';
import { enqueue } from './commands/enqueue.js';
import { version } from './version.js';
import { type CliIo, defaultIo, EXIT, exitCodeFor, UsageError } from './io.js';

export type { CliIo } from './io.js';
export { EXIT } from './io.js';

const commands: Command[] = [inject, batch, serve, worker, enqueue, info, verify, ls, cat, cp, diff];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `piimg ${version}: customize Raspberry Pi OS images offline, without root

Usage: piimg <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run 'piimg <command> --help' for a command's options.

Exit status:
  0  success
  1  usage error (unknown command or option, missing argument)
  2  bad or unsupported image (corrupt table, unknown filesystem feature, ...)
  3  bad device configuration
  4  verification found filesystem problems
 10  piimg diff: the images differ
  7  piimg batch: some devices failed (the others were written)
  5  file, image or path not found
  6  other failure (no space left, I/O error, ...)
 70  internal error (a bug: please report it)

Environment:
  NO_COLOR           no colors
  PIIMG_CACHE_DIR    where decompressed base images are cached
  SOURCE_DATE_EPOCH  fixed timestamps for reproducible images
`;
}

/** Runs the piimg command line with `argv` (without node and script) and returns the exit status. */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(help());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-V') {
    io.stdout.write(`${version}\n`);
    return EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`piimg: unknown command '${name}'\n\n${help()}`);
    return EXIT.usage;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    const code = exitCodeFor(error);
    if (error instanceof UsageError) {
      io.stderr.write(`piimg ${name}: ${error.message}\n`);
    } else if (isPiimgError(error)) {
      io.stderr.write(`piimg ${name}: ${error.message} [${error.code}]\n`);
    } else {
      io.stderr.write(`piimg ${name}: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
    }
    return code;
  }
}

export type { DeviceJobData, DeviceJobResult, QueueWorkerOptions } from './queue/jobs.js';
export type { ServiceOptions } from './serve/server.js';

/** Starts a queue worker in this process (see docs/service.md); loaded on first use. */
export async function startQueueWorker(options: import('./queue/jobs.js').QueueWorkerOptions) {
  return (await import('./queue/jobs.js')).startQueueWorker(options);
}

/** Adds device image jobs for queue workers; returns their ids. */
export async function enqueueDevices(redis: string, jobs: import('./queue/jobs.js').DeviceJobData[], queue?: string): Promise<string[]> {
  return (await import('./queue/jobs.js')).enqueueDevices(redis, jobs, queue);
}

/** The HTTP image service of `piimg serve`, for embedding (see docs/service.md). */
export async function createImageService(options: import('./serve/server.js').ServiceOptions) {
  return new (await import('./serve/server.js')).ImageService(options);
}
