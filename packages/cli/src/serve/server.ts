// The piimg image service: HTTP on node:http, device images made on a pool
// of worker threads (see worker.ts), streamed to the client while they are
// made. node:http is enough for five routes with streamed bodies; a framework
// would add dependencies to every user of the CLI and nothing this needs.
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, renameSync, rmSync, statSync, type WriteStream } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { CREDIT_WINDOW, SLOT_BYTES, type FromWorker, type ImageFormat, type JobRequest, type WorkerSetup } from './protocol.js';

export interface ServiceOptions {
  /** Base images by name, as clients ask for them (`?base=NAME`). */
  bases: Record<string, string>;
  /** Worker threads, each making one image at a time (default 2). */
  workers?: number;
  /**
   * Nice value of the worker threads on Linux (default 10; 0 leaves them as they are): they
   * run behind the HTTP thread, which then keeps its event loop short while they are busy.
   * Ignored on other systems, where a thread's priority cannot be set apart from its process.
   */
  workerNice?: number;
  /** Jobs waiting for a worker before new ones get 503 (default 64). */
  maxQueue?: number;
  /** Largest accepted request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Directory that `files[].source` may read below; without it, configs naming host files are refused. */
  sourceRoot?: string;
  /** Where finished `/jobs` images are kept until fetched or expired. */
  jobsDir: string;
  /** Seconds a finished job's image is kept (default 3600). */
  jobTtlSeconds?: number;
  cacheDir?: string;
  /** One JSON object per line; never given configuration content or secrets. */
  log?: (entry: Record<string, unknown>) => void;
}

interface Task {
  id: string;
  request: JobRequest;
  /** Receives the worker's messages for this job. */
  onMessage: (message: FromWorker) => void;
  worker?: PoolWorker;
  done: boolean;
}

interface PoolWorker {
  worker: Worker;
  task?: Task;
}

interface StoredJob {
  id: string;
  state: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  base: string;
  format: ImageFormat;
  created: number;
  finished?: number;
  error?: { code: string; message: string };
  path: string;
  bytes: number;
}

const FORMATS: Record<string, { format: ImageFormat; type: string }> = {
  img: { format: 'img', type: 'application/octet-stream' },
  'img.gz': { format: 'img.gz', type: 'application/gzip' },
  'img.zst': { format: 'img.zst', type: 'application/zstd' },
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class ImageService {
  readonly server: Server;
  private readonly pool: PoolWorker[] = [];
  private readonly waiting: Task[] = [];
  private readonly jobs = new Map<string, StoredJob>();
  private readonly delay = monitorEventLoopDelay({ resolution: 10 });
  private readonly log: (entry: Record<string, unknown>) => void;
  private closing = false;
  private readonly expiry: NodeJS.Timeout;
  private readonly stats = { requests: 0, images: 0, failed: 0, cancelled: 0 };
  /** Jobs whose last chunk is out and whose file is being closed and renamed. */
  private readonly finishing = new Set<Promise<void>>();

  constructor(private readonly options: ServiceOptions) {
    this.log = options.log ?? ((entry) => process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n'));
    mkdirSync(options.jobsDir, { recursive: true });
    const count = Math.max(1, options.workers ?? 2);
    for (let i = 0; i < count; i++) this.pool.push(this.startWorker());
    this.server = createServer((request, response) => {
      this.route(request, response).catch((error: unknown) => this.fail(response, error));
    });
    // Node's default of 5 s closes an idle kept-alive connection while a client that spent
    // longer on the last image (checking it, say) has not yet seen the close, and that
    // client's next POST then fails on a dead connection ("other side closed").
    this.server.keepAliveTimeout = 60_000;
    this.delay.enable();
    this.expiry = setInterval(() => this.expireJobs(), 60_000).unref();
  }

  private startWorker(): PoolWorker {
    const setup: WorkerSetup = { nice: process.platform === 'linux' ? (this.options.workerNice ?? 10) : 0, ring: new SharedArrayBuffer(CREDIT_WINDOW * SLOT_BYTES) };
    const ring = Buffer.from(setup.ring);
    const entry: PoolWorker = { worker: new Worker(new URL('./serve-worker.js', import.meta.url), { workerData: setup }) };
    entry.worker.on('message', (message: FromWorker) => {
      const task = entry.task;
      if (!task || message.id !== task.id) return;
      // A view of the ring: the worker does not touch that slot again before its credit comes back.
      if (message.type === 'chunk' && !message.data) message.data = ring.subarray(message.slot * SLOT_BYTES, message.slot * SLOT_BYTES + message.length);
      task.onMessage(message);
      if (message.type === 'end' || message.type === 'error') this.release(entry);
    });
    entry.worker.on('error', (error) => {
      this.log({ level: 'error', msg: 'worker failed', error: error.message });
      const task = entry.task;
      const index = this.pool.indexOf(entry);
      if (index >= 0) this.pool.splice(index, 1, ...(this.closing ? [] : [this.startWorker()]));
      if (task && !task.done) task.onMessage({ type: 'error', id: task.id, code: 'E_INTERNAL', message: 'the worker failed', client: false });
      this.dispatch();
    });
    return entry;
  }

  private release(entry: PoolWorker): void {
    if (entry.task) entry.task.done = true;
    entry.task = undefined;
    this.dispatch();
  }

  private dispatch(): void {
    for (const entry of this.pool) {
      if (entry.task) continue;
      const task = this.waiting.shift();
      if (!task) return;
      entry.task = task;
      task.worker = entry;
      entry.worker.postMessage(task.request);
    }
  }

  /** Queues a job; returns a function that cancels it (before or while it runs). */
  private submit(request: JobRequest, onMessage: (message: FromWorker) => void): { cancel: () => void; credit: (count: number) => void } {
    if (this.waiting.length >= (this.options.maxQueue ?? 64)) throw new HttpError(503, 'E_BUSY', 'too many images queued; try again later');
    const task: Task = { id: request.id, request, onMessage, done: false };
    this.waiting.push(task);
    this.dispatch();
    return {
      cancel: () => {
        if (task.done) return;
        const index = this.waiting.indexOf(task);
        if (index >= 0) {
          this.waiting.splice(index, 1);
          task.done = true;
        } else if (task.worker) {
          task.worker.worker.postMessage({ type: 'cancel', id: task.id });
          // The worker stops at its next chunk; it is free again once it says so.
          task.onMessage = () => undefined;
        }
      },
      credit: (count) => task.worker?.worker.postMessage({ type: 'credit', id: task.id, count }),
    };
  }

  private async readBody(request: IncomingMessage): Promise<unknown> {
    const limit = this.options.maxBodyBytes ?? 1 << 20;
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > limit) throw new HttpError(413, 'E_TOO_LARGE', `the configuration may be at most ${limit} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size > limit) throw new HttpError(413, 'E_TOO_LARGE', `the configuration may be at most ${limit} bytes`);
      chunks.push(chunk as Buffer);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'E_CONFIG', 'the request body must be a JSON device configuration');
    }
  }

  private jobRequest(url: URL, config: unknown): JobRequest {
    const name = url.searchParams.get('base') ?? '';
    const path = Object.hasOwn(this.options.bases, name) ? this.options.bases[name] : undefined;
    if (!path) throw new HttpError(404, 'E_NO_BASE', `no base named '${name}'; bases: ${Object.keys(this.options.bases).join(', ')}`);
    const formatName = url.searchParams.get('format') ?? 'img';
    const format = FORMATS[formatName];
    if (!format) throw new HttpError(400, 'E_USAGE', `format must be one of ${Object.keys(FORMATS).join(', ')}`);
    return {
      type: 'job',
      id: randomUUID(),
      base: { name, path },
      config,
      format: format.format,
      ...(this.options.sourceRoot ? { sourceRoot: this.options.sourceRoot } : {}),
      ...(this.options.cacheDir ? { cacheDir: this.options.cacheDir } : {}),
    };
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    this.stats.requests++;
    const url = new URL(request.url ?? '/', 'http://service');
    const method = request.method ?? 'GET';
    if (method === 'GET' && url.pathname === '/health') {
      return this.json(response, this.closing ? 503 : 200, { status: this.closing ? 'stopping' : 'ok' });
    }
    if (method === 'GET' && url.pathname === '/ready') {
      const busy = this.waiting.length >= (this.options.maxQueue ?? 64);
      return this.json(response, this.closing || busy ? 503 : 200, { ready: !this.closing && !busy, queued: this.waiting.length });
    }
    if (method === 'GET' && url.pathname === '/metrics') {
      return this.json(response, 200, {
        ...this.stats,
        queued: this.waiting.length,
        running: this.pool.filter((w) => w.task).length,
        workers: this.pool.length,
        eventLoopDelayMaxMs: this.delay.max / 1e6,
        eventLoopDelayP99Ms: this.delay.percentile(99) / 1e6,
      });
    }
    if (method === 'POST' && url.pathname === '/metrics/reset') {
      this.delay.reset();
      return this.json(response, 200, { reset: true });
    }
    if (this.closing) throw new HttpError(503, 'E_STOPPING', 'the service is shutting down');
    if (method === 'POST' && url.pathname === '/images') return this.streamImage(request, response, url);
    if (method === 'POST' && url.pathname === '/jobs') return this.createJob(request, response, url);
    const match = /^\/jobs\/([0-9a-f-]{36})(\/image)?$/.exec(url.pathname);
    if (method === 'GET' && match) return this.getJob(response, match[1]!, match[2] !== undefined);
    throw new HttpError(404, 'E_NOT_FOUND', `no route ${method} ${url.pathname}`);
  }

  /** POST /images: the image is streamed while it is made; a client that goes away cancels it. */
  private async streamImage(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const job = this.jobRequest(url, await this.readBody(request));
    const started = performance.now();
    const type = FORMATS[job.format]!.type;
    let sent = 0;
    await new Promise<void>((resolve) => {
      let handle: ReturnType<ImageService['submit']> | undefined;
      let finished = false;
      const finish = (outcome: string, extra: Record<string, unknown> = {}) => {
        if (finished) return;
        finished = true;
        this.log({ level: outcome === 'done' ? 'info' : 'warn', msg: 'image', id: job.id, base: job.base.name, format: job.format, outcome, bytes: sent, seconds: (performance.now() - started) / 1000, ...extra });
        resolve();
      };
      response.on('close', () => {
        if (!response.writableFinished) {
          handle?.cancel();
          this.stats.cancelled++;
          finish('cancelled');
        }
      });
      handle = this.submit(job, (message) => {
        if (message.type === 'start') {
          response.writeHead(200, {
            'content-type': type,
            'content-disposition': `attachment; filename="${job.base.name}-device.${job.format}"`,
            ...(job.format === 'img' ? { 'content-length': String(message.size) } : {}),
            'x-piimg-job': job.id,
            'x-piimg-changes': String(message.changes),
            ...(message.outputs.wireguardPublicKey ? { 'x-piimg-wireguard-public-key': message.outputs.wireguardPublicKey } : {}),
          });
          handle!.credit(CREDIT_WINDOW);
        } else if (message.type === 'chunk') {
          sent += message.length;
          // Backpressure, and the ring slot's reuse: the credit comes back once the socket took the chunk.
          response.write(message.data, () => handle!.credit(1));
        } else if (message.type === 'end') {
          this.stats.images++;
          response.end();
          finish('done');
        } else {
          this.stats.failed++;
          if (!response.headersSent) this.json(response, message.client ? 400 : message.code === 'E_CANCELLED' ? 503 : 500, { error: { code: message.code, message: message.message } });
          else response.destroy();
          finish('failed', { code: message.code });
        }
      });
    });
  }

  /** POST /jobs: made in the background, kept in the jobs directory. */
  private async createJob(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const job = this.jobRequest(url, await this.readBody(request));
    const stored: StoredJob = { id: job.id, state: 'queued', base: job.base.name, format: job.format, created: Date.now(), path: join(this.options.jobsDir, `${job.id}.${job.format}`), bytes: 0 };
    const partial = `${stored.path}.piimg-partial`;
    let out: WriteStream | undefined;
    const handle = this.submit(job, (message) => {
      if (message.type === 'start') {
        stored.state = 'running';
        out = createWriteStream(partial, { flags: 'wx' });
        out.on('error', (error) => {
          handle.cancel();
          stored.state = 'failed';
          stored.error = { code: 'E_IO', message: error.message };
          rmSync(partial, { force: true });
        });
        handle.credit(CREDIT_WINDOW);
      } else if (message.type === 'chunk') {
        stored.bytes += message.length;
        out!.write(message.data, () => handle.credit(1));
      } else if (message.type === 'end') {
        let written!: () => void;
        const closing = new Promise<void>((resolve) => (written = resolve));
        this.finishing.add(closing);
        out!.end(() => {
          try {
            // Renamed only when complete: a job's image is never read half-written.
            renameSync(partial, stored.path);
            stored.state = 'done';
            this.stats.images++;
          } catch (error) {
            stored.state = 'failed';
            stored.error = { code: 'E_IO', message: (error as Error).message };
          }
          stored.finished = Date.now();
          this.log({ level: 'info', msg: 'job', id: job.id, base: job.base.name, format: job.format, outcome: stored.state, bytes: stored.bytes });
          this.finishing.delete(closing);
          written();
        });
      } else if (message.type === 'error') {
        if (stored.finished !== undefined) return;
        out?.destroy();
        rmSync(partial, { force: true });
        const cancelled = message.code === 'E_CANCELLED';
        stored.state = cancelled ? 'cancelled' : 'failed';
        stored.finished = Date.now();
        stored.error = { code: message.code, message: message.message };
        if (cancelled) this.stats.cancelled++;
        else this.stats.failed++;
        this.log({ level: 'warn', msg: 'job', id: job.id, base: job.base.name, outcome: stored.state, code: message.code });
      }
    });
    this.jobs.set(job.id, stored);
    this.json(response, 202, { id: job.id, state: stored.state, status: `/jobs/${job.id}`, image: `/jobs/${job.id}/image` });
  }

  private getJob(response: ServerResponse, id: string, image: boolean): void {
    const job = this.jobs.get(id);
    if (!job) throw new HttpError(404, 'E_NOT_FOUND', `no job ${id}`);
    if (!image) {
      return this.json(response, 200, { id, state: job.state, base: job.base, format: job.format, bytes: job.bytes, ...(job.error ? { error: job.error } : {}) });
    }
    if (job.state !== 'done') throw new HttpError(409, 'E_NOT_READY', `job ${id} is ${job.state}`);
    response.writeHead(200, { 'content-type': FORMATS[job.format]!.type, 'content-length': String(statSync(job.path).size) });
    createReadStream(job.path).pipe(response);
  }

  private expireJobs(): void {
    const ttl = (this.options.jobTtlSeconds ?? 3600) * 1000;
    for (const [id, job] of this.jobs) {
      if (job.finished !== undefined && Date.now() - job.finished > ttl) {
        rmSync(job.path, { force: true });
        this.jobs.delete(id);
      }
    }
  }

  private json(response: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body) + '\n';
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    response.end(text);
  }

  private fail(response: ServerResponse, error: unknown): void {
    const known = error instanceof HttpError;
    if (!known) this.log({ level: 'error', msg: 'request failed', error: (error as Error)?.message ?? String(error) });
    if (response.headersSent) {
      response.destroy();
      return;
    }
    this.json(response, known ? error.status : 500, { error: { code: known ? error.code : 'E_INTERNAL', message: known ? error.message : 'internal error' } });
  }

  listen(port: number, host = '127.0.0.1'): Promise<{ port: number; host: string }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        const address = this.server.address();
        resolve({ port: typeof address === 'object' && address ? address.port : port, host });
      });
    });
  }

  /**
   * Graceful shutdown: no new requests; running and queued images finish
   * (up to `graceSeconds`), then the rest are cancelled. Every job ends in a
   * logged outcome, done (its image complete on disk) or cancelled/failed
   * (no file at all); partial files are removed; the workers stop.
   */
  async close(graceSeconds = 30): Promise<void> {
    this.closing = true;
    clearInterval(this.expiry);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const busy = () => this.waiting.length > 0 || this.pool.some((w) => w.task);
    const deadline = Date.now() + graceSeconds * 1000;
    while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const task of this.waiting.splice(0)) {
      task.done = true;
      task.onMessage({ type: 'error', id: task.id, code: 'E_CANCELLED', message: 'the service stopped before the image was made', client: false });
    }
    for (const entry of this.pool) if (entry.task) entry.worker.postMessage({ type: 'cancel', id: entry.task.id });
    // A worker stops at its next chunk; one still in the recipes says so when they are done.
    const stopDeadline = Date.now() + 10_000;
    while (this.pool.some((w) => w.task) && Date.now() < stopDeadline) await new Promise((r) => setTimeout(r, 50));
    for (const entry of this.pool) entry.task?.onMessage({ type: 'error', id: entry.task.id, code: 'E_CANCELLED', message: 'the service stopped before the image was made', client: false });
    await Promise.all(this.finishing);
    this.server.closeAllConnections();
    await closed;
    await Promise.all(this.pool.map((entry) => entry.worker.terminate()));
    // A job's file is written as .piimg-partial and renamed only when whole (createJob).
    for (const job of this.jobs.values()) rmSync(`${job.path}.piimg-partial`, { force: true });
    this.delay.disable();
  }
}
