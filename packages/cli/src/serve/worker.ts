// A worker thread of the image service: it keeps each base open once and
// makes every device image as a copy-on-write overlay derived from it, so
// the CPU work (recipes, ext4 through WebAssembly, the checks, compression)
// never runs on the HTTP thread.
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { isPiimgError, openImage, type Image } from '@piimg/core';
import { parseConfig } from '@piimg/core/config';
import { confineSources } from '../sources.js';
import { CHUNK_BYTES, CREDIT_WINDOW, SLOT_BYTES, type FromWorker, type JobRequest, type ToWorker, type WorkerSetup } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('the image service worker runs in a worker thread');

// On Linux the nice value belongs to a thread, not to the process (setpriority(2), BUGS:
// "under the current Linux/NPTL implementation of POSIX threads, the nice value is a
// per-thread attribute"), and os.setPriority(0, n) is setpriority(PRIO_PROCESS, 0, n) on
// the calling thread: this lowers this worker only, so the HTTP thread wins a core from it
// whenever it has something to do. Elsewhere the call would lower the whole process, so the
// server sends a nice value only on Linux.
const setup = workerData as WorkerSetup;
// Only ever lowered: a service started at a nice value above it leaves its workers there.
if (setup.nice > getPriority(0)) setPriority(0, setup.nice);
// Chunks go through a ring shared with the HTTP thread instead of a fresh transferred buffer
// each: every transferred buffer is new external memory on the HTTP thread, and V8 answers a
// few hundred MiB/s of it with a full garbage collection several times a second there.
const ring = new Uint8Array(setup.ring);

const bases = new Map<string, Promise<Image>>();
const credits = new Map<string, { count: number; wake?: () => void; cancelled: boolean }>();

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

function base(request: JobRequest): Promise<Image> {
  let opened = bases.get(request.base.name);
  if (!opened) {
    opened = openImage(request.base.path, request.cacheDir ? { cacheDir: request.cacheDir } : {});
    opened.catch(() => bases.delete(request.base.name));
    bases.set(request.base.name, opened);
  }
  return opened;
}

/** Takes one credit (a chunk the HTTP thread has written out returns one); false once cancelled. */
async function waitForCredit(id: string): Promise<boolean> {
  const state = credits.get(id)!;
  while (state.count <= 0 && !state.cancelled) await new Promise<void>((wake) => (state.wake = wake));
  state.count--;
  return !state.cancelled;
}

/** Waits until every chunk sent is written out: the ring is then free for the next job. */
async function waitForAllWritten(id: string): Promise<boolean> {
  const state = credits.get(id)!;
  while (state.count < CREDIT_WINDOW && !state.cancelled) await new Promise<void>((wake) => (state.wake = wake));
  return !state.cancelled;
}

/**
 * Sends chunk number `index` of a job (after waitForCredit) through the ring. Slot
 * `index % CREDIT_WINDOW` last held chunk index - CREDIT_WINDOW, whose credit came back only
 * once the HTTP thread had written it out: at most CREDIT_WINDOW chunks are unwritten.
 */
function sendChunk(id: string, index: number, data: Uint8Array): void {
  const slot = index % CREDIT_WINDOW;
  if (data.length <= SLOT_BYTES) {
    ring.set(data, slot * SLOT_BYTES);
    send({ type: 'chunk', id, slot, length: data.length });
  } else {
    const copy = data.slice();
    send({ type: 'chunk', id, slot, length: copy.length, data: copy }, [copy.buffer as ArrayBuffer]);
  }
}

async function run(request: JobRequest): Promise<void> {
  credits.set(request.id, { count: 0, cancelled: false });
  let image: Image | undefined;
  try {
    confineSources(request.config, request.sourceRoot);
    // No environment: a client's {{env.NAME}} must not read the server's secrets.
    const config = parseConfig(request.config, { env: {}, baseDir: request.sourceRoot ?? process.cwd(), origin: 'request body' });
    image = await (await base(request)).derive();
    const started = performance.now();
    const result = await image.apply({ config, baseDir: request.sourceRoot ?? process.cwd(), sources: [] });
    const { changes, warnings, outputs, timings } = result;
    send({ type: 'start', id: request.id, size: image.size, changes: changes.length, warnings, outputs, timings: { ...timings, total: (performance.now() - started) / 1000 } });
    const cancelled = () => {
      // Tell the HTTP side this worker is free again.
      send({ type: 'error', id: request.id, code: 'E_CANCELLED', message: 'cancelled', client: false });
    };
    if (request.format === 'img.gz' || request.format === 'img.zst') {
      // The library's compressed output: free space as zeros, and (gzip) the members this device
      // shares with its base taken from the cache of the base's compressed members (docs/compressed-output.md).
      const stream = image.createReadStream({ format: request.format === 'img.gz' ? 'gzip' : 'zstd', threads: 1 });
      try {
        let index = 0;
        for await (const chunk of stream) {
          if (!(await waitForCredit(request.id))) return cancelled();
          // Copied into the ring (or, when larger than a slot, into a buffer of its own): the
          // chunk may be a view of a larger buffer (a cache entry), which must not be transferred.
          sendChunk(request.id, index++, chunk as Uint8Array);
        }
      } finally {
        stream.destroy();
      }
    } else {
      const device = image.device;
      for (let position = 0, index = 0; position < device.size; position += CHUNK_BYTES, index++) {
        if (!(await waitForCredit(request.id))) return cancelled();
        sendChunk(request.id, index, device.read(position, Math.min(CHUNK_BYTES, device.size - position)));
      }
    }
    // The ring is reused by the next job only after every chunk of this one is written out.
    if (!(await waitForAllWritten(request.id))) return cancelled();
    send({ type: 'end', id: request.id });
  } catch (error) {
    const typed = isPiimgError(error);
    send({
      type: 'error',
      id: request.id,
      code: typed ? error.code : 'E_INTERNAL',
      message: typed ? error.message : 'internal error',
      client: typed && (error.code === 'E_CONFIG' || error.code === 'ENOENT'),
    });
    if (!typed) console.error(error);
  } finally {
    credits.delete(request.id);
    await image?.close().catch(() => undefined);
  }
}

let queue = Promise.resolve();
port.on('message', (message: ToWorker) => {
  if (message.type === 'job') {
    // One job at a time per worker: the pool size is the concurrency.
    queue = queue.then(() => run(message));
  } else {
    const state = credits.get(message.id);
    if (!state) return;
    if (message.type === 'credit') state.count += message.count;
    else state.cancelled = true;
    const wake = state.wake;
    state.wake = undefined;
    wake?.();
  }
});
