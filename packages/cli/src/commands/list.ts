import type { CliIo } from '../base.js';
import type { Command } from '../command.js';

/**
 * The commands as `--help` and shell completion know them; each one's code,
 * and with it @piimg/core, is loaded only when it runs. `options` are written
 * as in the help (`-o, --output FILE`: short, long, value) for shell
 * completion; test/cli-shell.test.ts checks them against each command's help.
 */
export interface CommandEntry {
  name: string;
  summary: string;
  options: string[];
  load(): Promise<Command>;
  /**
   * Work a command starts from its arguments before its modules (and
   * @piimg/core) load; returns the loader of the command that carries it on.
   * inject starts the copy of its base (inject-start.ts).
   */
  start?(argv: string[], io: CliIo): Promise<() => Promise<Command>>;
}

export const commandList: CommandEntry[] = [
  {
    name: 'inject',
    summary: 'write a device image from a base image and a device configuration',
    options: ['-o, --output FILE', '-c, --config FILE', '--set VALUE', '--var VALUE', '--format FORMAT', '--level N', '--threads N', '--keep-free-space', '--no-verify', '--sync', '--to-device', '--source-root DIR', '--bmap FILE', '--delta', '--json', '-h, --help'],
    load: async () => (await import('./inject.js')).injectCommand(),
    start: async (argv, io) => {
      const early = (await import('./inject-start.js')).startInjectSave(argv, io);
      return async () => (await import('./inject.js')).injectCommand(early);
    },
  },
  {
    name: 'batch',
    summary: 'write one device image per row of a devices file (CSV or YAML) from one base',
    options: ['-c, --config FILE', '-d, --devices FILE', '-o, --output PATTERN', '-j, --jobs N', '--in-process', '--no-stage', '--json', '-h, --help'],
    load: async () => (await import('./batch.js')).batch,
  },
  {
    name: 'serve',
    summary: 'run an HTTP service that makes device images',
    options: ['--base SPEC', '--port PORT', '--host HOST', '--workers N', '--worker-nice N', '--max-queue N', '--max-body BYTES', '--source-root DIR', '--jobs-dir DIR', '--job-ttl SECONDS', '--grace SECONDS', '-h, --help'],
    load: async () => (await import('./serve.js')).serve,
  },
  {
    name: 'worker',
    summary: 'take device image jobs from a Redis queue (BullMQ)',
    options: ['--redis URL', '--base SPEC', '--out DIR', '--source-root DIR', '--queue NAME', '--concurrency N', '--lock-seconds N', '-h, --help'],
    load: async () => (await import('./worker.js')).worker,
  },
  {
    name: 'enqueue',
    summary: 'add a device image job to a Redis queue for piimg workers',
    options: ['--redis URL', '--base NAME', '-c, --config FILE', '--name DEVICE', '--put URL', '--set VALUE', '--var VALUE', '--queue NAME', '--json', '-h, --help'],
    load: async () => (await import('./enqueue.js')).enqueue,
  },
  {
    name: 'apply',
    summary: 'write a device image from a base image and a delta',
    options: ['-o, --output FILE', '--bmap FILE', '--no-verify', '--json', '-h, --help'],
    load: async () => (await import('./apply.js')).apply,
  },
  {
    name: 'info',
    summary: 'show partitions, filesystems, labels and ext4 features of an image',
    options: ['--json', '-h, --help'],
    load: async () => (await import('./info.js')).info,
  },
  {
    name: 'verify',
    summary: 'check the filesystems of an image (read-only)',
    options: ['--json', '-h, --help'],
    load: async () => (await import('./verify.js')).verify,
  },
  { name: 'ls', summary: 'list files inside an image', options: ['-l, --long', '--json', '-h, --help'], load: async () => (await import('./ls.js')).ls },
  { name: 'cat', summary: 'print a file from inside an image', options: ['-h, --help'], load: async () => (await import('./cat.js')).cat },
  {
    name: 'cp',
    summary: 'copy files into or out of an image',
    options: ['-r, --recursive', '--mode MODE', '--owner OWNER', '-o, --output FILE', '--format FORMAT', '--level N', '--threads N', '--keep-free-space', '--to-device', '--in-place', '--json', '-h, --help'],
    load: async () => (await import('./cp.js')).cp,
  },
  {
    name: 'diff',
    summary: 'list files added, removed and changed between two images',
    options: ['--times', '--json', '-h, --help'],
    load: async () => (await import('./diff.js')).diff,
  },
  {
    name: 'completion',
    summary: 'print a shell completion script (bash, zsh or fish)',
    options: ['-h, --help'],
    load: async () => (await import('./completion.js')).completion,
  },
];
