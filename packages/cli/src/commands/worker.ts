import { resolve } from 'node:path';
import { type Command, parse, wantsHelp } from '../command.js';
import { EXIT, UsageError, type CliIo } from '../io.js';
import { integerOption, jsonLog, parseBases } from '../service-options.js';

const usage = `Usage: piimg worker --redis redis://HOST:PORT --base NAME=PATH [--base ...]
                    [--out DIR] [--source-root DIR] [--queue NAME] [--concurrency 1]
                    [--lock-seconds 30]

A stateless queue worker: takes device jobs from a BullMQ queue on Redis
(added with 'piimg enqueue' or the library), makes each image from a base it
keeps open, verifies it, and writes DIR/<name>.img atomically or uploads it
with HTTP PUT to the job's putUrl. Run any number of workers on any number of
machines. A worker that dies mid-job loses its lock after --lock-seconds and
another worker takes the job; failed jobs are retried (3 attempts), except
invalid configurations. Logs are JSON lines on stderr. SIGINT/SIGTERM finish
the current job, then stop.

Options:
  --redis URL          redis://[user:password@]host:port[/db] (rediss:// for TLS)
  --base NAME=PATH     a base image jobs may name, repeatable
  --out DIR            where images are written (jobs without a putUrl)
  --source-root DIR    files[].source of jobs is read below DIR (else refused)
  --queue NAME         queue name (default piimg-images)
  --concurrency N      images at once in this process (default 1)
  --lock-seconds N     seconds before a silent worker's job is taken over (default 30)
  -h, --help           this help`;

export const worker: Command = {
  name: 'worker',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values } = parse(
      argv,
      {
        redis: { type: 'string' },
        base: { type: 'string', multiple: true },
        out: { type: 'string' },
        'source-root': { type: 'string' },
        queue: { type: 'string' },
        concurrency: { type: 'string' },
        'lock-seconds': { type: 'string' },
      },
      usage,
    );
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    if (!values.redis) throw new UsageError(`--redis URL is required\n\n${usage}`);
    const bases = parseBases(values.base, io, usage);
    const log = jsonLog(io);
    const { startQueueWorker } = await import('../queue/jobs.js');
    const running = await startQueueWorker({
      redis: values.redis,
      bases,
      ...(values.queue ? { queue: values.queue } : {}),
      ...(values.out ? { outDir: resolve(io.cwd, values.out) } : {}),
      ...(values['source-root'] ? { sourceRoot: resolve(io.cwd, values['source-root']) } : {}),
      ...(io.env.PIIMG_CACHE_DIR ? { cacheDir: io.env.PIIMG_CACHE_DIR } : {}),
      concurrency: integerOption(values.concurrency, '--concurrency', 1),
      lockSeconds: integerOption(values['lock-seconds'], '--lock-seconds', 30),
      log,
    });
    log({ level: 'info', msg: 'worker ready', queue: values.queue ?? 'piimg-images', bases: Object.keys(bases), pid: process.pid });
    const signal = await new Promise<NodeJS.Signals>((done) => {
      process.once('SIGINT', () => done('SIGINT'));
      process.once('SIGTERM', () => done('SIGTERM'));
    });
    log({ level: 'info', msg: 'stopping', signal });
    await running.close();
    return EXIT.ok;
  },
};
