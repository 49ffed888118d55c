import { Worker } from 'node:worker_threads';
import { PiimgError } from '../errors.js';

/** What an encoding worker answers: its result fields, or an error, or (id -1) that it closed its file. */
export interface WorkerAnswer {
  id: number;
  error?: string;
  code?: string;
  closed?: boolean;
}

/**
 * Worker threads running one encoder each (xz Blocks, zstd frames), every
 * thread started from `source` with `workerData`; a request goes to the
 * least busy one and its answer comes back by id. A worker that fails or
 * exits fails every request waiting and every later one.
 */
export class EncoderPool<Request extends object, Answer extends WorkerAnswer, Result> {
  private readonly workers: { worker: Worker; busy: number; exited: boolean }[] = [];
  private readonly waiting = new Map<number, { resolve: (result: Result) => void; reject: (error: Error) => void }>();
  private readonly closing = new Map<Worker, () => void>();
  private nextId = 0;
  private failure: Error | undefined;

  constructor(
    /** Names the encoder in errors ("xz", "zstd"). */
    private readonly name: string,
    source: string,
    workerData: unknown,
    threads: number,
    private readonly toResult: (answer: Answer) => Result,
  ) {
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(source, { eval: true, workerData, stdout: true, stderr: true });
      const entry = { worker, busy: 0, exited: false };
      worker.on('message', (answer: Answer) => {
        if (answer.closed) {
          this.closing.get(worker)?.();
          return;
        }
        entry.busy--;
        const waiter = this.waiting.get(answer.id);
        this.waiting.delete(answer.id);
        if (!waiter) return;
        if (answer.error === undefined) waiter.resolve(this.toResult(answer));
        else waiter.reject(new PiimgError(answer.code === 'E_TRUNCATED' ? 'E_TRUNCATED' : 'E_IO', `${this.name} encoding failed: ${answer.error}`, { code: answer.code }));
      });
      const fail = (error: Error) => {
        this.failure ??= error;
        for (const waiter of this.waiting.values()) waiter.reject(error);
        this.waiting.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        entry.exited = true;
        if (code !== 0) fail(new PiimgError('E_IO', `${this.name} encoding worker exited with code ${code}`));
      });
      this.workers.push(entry);
    }
  }

  /** Sends `request` (with an id added) to the least busy worker. */
  run(request: Request): Promise<Result> {
    if (this.failure) return Promise.reject(this.failure);
    const entry = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    entry.busy++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      entry.worker.postMessage({ ...request, id });
    });
  }

  /** Lets each worker close its file, then ends it. */
  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async ({ worker, exited }) => {
        // A live worker closes its file first: descriptors belong to the process, not the thread.
        if (!exited) {
          const closed = new Promise<void>((resolve) => this.closing.set(worker, resolve));
          worker.postMessage({ id: -1 });
          await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
        }
        await worker.terminate();
      }),
    );
  }
}
