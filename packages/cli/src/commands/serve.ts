import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Command, parse, wantsHelp } from '../command.js';
import { EXIT, type CliIo } from '../io.js';
import { integerOption, jsonLog, parseBases } from '../service-options.js';

const usage = `Usage: piimg serve --base NAME=PATH [--base ...] [--port 8080] [--host 127.0.0.1]
                   [--workers N] [--worker-nice 10] [--max-queue 64] [--max-body BYTES] [--source-root DIR]
                   [--jobs-dir DIR] [--job-ttl SECONDS] [--grace 30]

An HTTP service that makes device images from the named bases:

  GET  /health                              200 while running, 503 while stopping
  GET  /ready                               503 when the queue is full
  POST /images?base=NAME&format=FORMAT      body: a device configuration (JSON); FORMAT is
                                            img, img.gz or img.zst; answers with the image,
                                            streamed while it is made
  POST /jobs?base=NAME&format=...           same body; answers 202 with a job id
  GET  /jobs/ID                             the job's state (queued, running, done, failed, cancelled)
  GET  /jobs/ID/image                       the finished image
  GET  /metrics                             counters and the longest event-loop stall

Every image is verified before it is sent. Configurations are validated like
'piimg inject' configurations, with no access to the server's environment
({{env.NAME}} fails); files[].source is refused unless --source-root DIR is
given, and then must lie below DIR. Logs are JSON lines on stderr and never
hold configuration content. SIGINT/SIGTERM: no new requests, running images
finish (--grace seconds at most), the rest are cancelled; every job is logged
as done or cancelled, and no partial file is left.

Options:
  --base NAME=PATH     a base image (.img, .img.xz, .zip, .gz, .zst), repeatable
  --port PORT          TCP port (default 8080; 0 picks a free one)
  --host HOST          address to listen on (default 127.0.0.1)
  --workers N          worker threads, one image each at a time (default: cores)
  --worker-nice N      nice value of the worker threads, 0-19 (Linux only; default 10):
                       the HTTP thread runs ahead of them; 0 leaves them as they are
  --max-queue N        images waiting for a worker before 503 (default 64)
  --max-body BYTES     largest configuration accepted (default 1048576)
  --source-root DIR    allow files[].source below DIR
  --jobs-dir DIR       where /jobs images are kept (default: a temporary directory)
  --job-ttl SECONDS    how long a finished job's image is kept (default 3600)
  --grace SECONDS      on SIGINT/SIGTERM, how long running images may take to finish (default 30)
  -h, --help           this help`;


export const serve: Command = {
  name: 'serve',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values } = parse(
      argv,
      {
        base: { type: 'string', multiple: true },
        port: { type: 'string' },
        host: { type: 'string' },
        workers: { type: 'string' },
        'worker-nice': { type: 'string' },
        'max-queue': { type: 'string' },
        'max-body': { type: 'string' },
        'source-root': { type: 'string' },
        'jobs-dir': { type: 'string' },
        'job-ttl': { type: 'string' },
        grace: { type: 'string' },
      },
      usage,
    );
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    const bases = parseBases(values.base, io, usage);
    const graceSeconds = integerOption(values.grace, '--grace', 30, 0);
    const { ImageService } = await import('../serve/server.js');
    const service = new ImageService({
      bases,
      workers: integerOption(values.workers, '--workers', availableParallelism()),
      workerNice: integerOption(values['worker-nice'], '--worker-nice', 10, 0, 19),
      maxQueue: integerOption(values['max-queue'], '--max-queue', 64),
      maxBodyBytes: integerOption(values['max-body'], '--max-body', 1 << 20),
      jobTtlSeconds: integerOption(values['job-ttl'], '--job-ttl', 3600),
      jobsDir: values['jobs-dir'] ? resolve(io.cwd, values['jobs-dir']) : mkdtempSync(join(tmpdir(), 'piimg-jobs-')),
      ...(values['source-root'] ? { sourceRoot: resolve(io.cwd, values['source-root']) } : {}),
      ...(io.env.PIIMG_CACHE_DIR ? { cacheDir: io.env.PIIMG_CACHE_DIR } : {}),
      log: jsonLog(io),
    });
    const address = await service.listen(integerOption(values.port, '--port', 8080, 0), values.host ?? '127.0.0.1');
    const log = jsonLog(io);
    log({ level: 'info', msg: 'listening', url: `http://${address.host}:${address.port}`, bases: Object.keys(bases) });
    const signal = await new Promise<NodeJS.Signals>((done) => {
      process.once('SIGINT', () => done('SIGINT'));
      process.once('SIGTERM', () => done('SIGTERM'));
    });
    log({ level: 'info', msg: 'stopping', signal });
    await service.close(graceSeconds);
    return EXIT.ok;
  },
};
