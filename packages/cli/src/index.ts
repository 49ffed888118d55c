// The entry point stays light: `--version` and `--help` import nothing from @piimg/core
// (bench/cli-start.bench.mjs); a command and the library load only when one runs.
import { type CliIo, defaultIo, EXIT } from './base.js';
import { commandList } from './commands/list.js';

export type { CliIo } from './base.js';
export { EXIT } from './base.js';
export { runCli } from './process.js';

/** The version of this package (test/cli-shell.test.ts compares it with package.json). */
export { version } from './version.js';
import { version } from './version.js';

function help(): string {
  const width = Math.max(...commandList.map((c) => c.name.length));
  return `piimg ${version}: customize Raspberry Pi OS images offline, without root

Usage: piimg <command> [options]
       piimg --version | --help

Commands:
${commandList.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Options:
  -V, --version  print the version
  -h, --help     this help

Run 'piimg <command> --help' for a command's options.

Exit status:
  0   success
  1   usage error (unknown command or option, missing argument, an output path
      that is a directory, device node, FIFO or socket)
  2   bad or unsupported image (corrupt table, unknown filesystem feature, ...)
  3   bad device configuration
  4   verification found filesystem problems
  5   file, image or path not found
  6   other failure (no space left, I/O error, ...)
  7   piimg batch: some devices failed (the others were written)
  10  piimg diff: the images differ
  70  internal error (a bug: please report it)
  130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: temporary files removed, the
      output left absent or as it was before

Environment:
  NO_COLOR           no colors (when set and not empty)
  FORCE_COLOR        colors even when not on a terminal (0 or false: never)
  PIIMG_CACHE_DIR    where decompressed base images are cached
  PIIMG_WASM_DIR     where @piimg/wasm's .wasm files are, for bundled installs
  SOURCE_DATE_EPOCH  fixed timestamps and password salts for reproducible images
  PIIMG_SEED         secret seed for generated keys and random disk ids (see inject --help)
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
  const entry = commandList.find((c) => c.name === name);
  if (!entry) {
    io.stderr.write(`piimg: unknown command '${name}'\n\n${help()}`);
    return EXIT.usage;
  }
  // Started before run.js loads @piimg/core: inject's copy of its base (commands/inject-start.ts).
  const load = entry.start ? await entry.start(rest, io) : entry.load;
  const { runCommand } = await import('./run.js');
  return runCommand(entry, rest, io, load);
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
