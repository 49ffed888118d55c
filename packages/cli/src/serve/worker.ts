// A worker thread of the image service: it keeps each base open once and
// makes every device image as a copy-on-write overlay derived from it, so
// the CPU work (recipes, ext4 through WebAssembly, the checks, compression)
// never runs on the HTTP thread.
import { parentPort } from 'node:worker_threads';
import { isPiimgError, openImage, type Image } from '@piimg/core';
import { parseConfig } from '@piimg/core/config';
import { confineSources } from '../sources.js';
import { CHUNK_BYTES, type FromWorker, type JobRequest, type ToWorker } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('the image service worker runs in a worker thread');

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

async function waitForCredit(id: string): Promise<boolean> {
  const state = credits.get(id)!;
  while (state.count <= 0 && !state.cancelled) await new Promise<void>((wake) => (state.wake = wake));
  state.count--;
  return !state.cancelled;
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
    if (request.format === 'img.gz' || request.format === 'img.zst') {
      // The library's compressed output: free space as zeros, and (gzip) the members this device
      // shares with its base taken from the cache of the base's compressed members (docs/compressed-output.md).
      const stream = image.createReadStream({ format: request.format === 'img.gz' ? 'gzip' : 'zstd', threads: 1 });
      try {
        for await (const chunk of stream) {
          if (!(await waitForCredit(request.id))) {
            send({ type: 'error', id: request.id, code: 'E_CANCELLED', message: 'cancelled', client: false });
            return;
          }
          // A copy: the chunk may be a view of a larger buffer (a cache entry), which must not be transferred.
          const data = Uint8Array.from(chunk as Uint8Array);
          send({ type: 'chunk', id: request.id, data }, [data.buffer as ArrayBuffer]);
        }
      } finally {
        stream.destroy();
      }
    } else {
      const device = image.device;
      for (let position = 0; position < device.size; position += CHUNK_BYTES) {
        if (!(await waitForCredit(request.id))) {
          // Tell the HTTP side this worker is free again.
          send({ type: 'error', id: request.id, code: 'E_CANCELLED', message: 'cancelled', client: false });
          return;
        }
        const data = device.read(position, Math.min(CHUNK_BYTES, device.size - position)).slice();
        send({ type: 'chunk', id: request.id, data }, [data.buffer as ArrayBuffer]);
      }
    }
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
