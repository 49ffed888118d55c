// Device images as jobs on a BullMQ queue over Redis: any number of stateless
// worker processes take them, make each image from a base they keep open,
// verify it, and write it to a directory or PUT it to a URL (how object
// stores take uploads through presigned URLs). BullMQ gives retries, stalled
// job recovery (a worker that dies mid-job loses its lock; another takes the
// job) and completion events; piimg adds atomic outputs, so a job whose
// worker died leaves no partial image behind under the output name.
import { statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isPiimgError, openImage, PiimgError, type Image } from '@piimg/core';
import { parseConfig } from '@piimg/core/config';
import { Queue, UnrecoverableError, Worker, type Job, type ConnectionOptions } from 'bullmq';
import { checkFileNamePart } from '../batch/devices.js';
import { confineSources } from '../sources.js';

export const DEFAULT_QUEUE = 'piimg-images';

export interface DeviceJobData {
  /** Device name: the output file is `<name>.img` in the worker's output directory. */
  name: string;
  /** Name of a base the workers were started with. */
  base: string;
  /** The device configuration (no extends; files[].source relative to the workers' source root). */
  config: unknown;
  /** Upload with HTTP PUT here instead of writing to the output directory. */
  putUrl?: string;
}

export interface DeviceJobResult {
  name: string;
  output: string;
  bytes: number;
  changes: number;
  wireguardPublicKey?: string;
  worker: string;
}

export function connectionFrom(url: string): ConnectionOptions {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new PiimgError('E_USAGE', `--redis takes a redis:// URL, not ${url}`);
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    ...(parsed.pathname.length > 1 ? { db: Number(parsed.pathname.slice(1)) } : {}),
    // BullMQ's workers block on Redis: they must never give up on a command.
    maxRetriesPerRequest: null,
  };
}

export interface QueueWorkerOptions {
  redis: string;
  queue?: string;
  bases: Record<string, string>;
  outDir?: string;
  sourceRoot?: string;
  cacheDir?: string;
  /** Images made at once by this process (default 1). */
  concurrency?: number;
  /** Seconds before a job whose worker stopped answering goes to another (default 30). */
  lockSeconds?: number;
  log?: (entry: Record<string, unknown>) => void;
}

/**
 * Uploads the image with one HTTP PUT and a Content-Length, as presigned
 * object-store URLs require (no chunked encoding). The URL's query (the
 * signature) is never logged.
 */
async function putImage(url: string, image: Image): Promise<void> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : target.protocol === 'http:' ? httpRequest : undefined;
  if (!send) throw new PiimgError('E_CONFIG', `putUrl must be http(s), not ${target.protocol}`);
  const where = `${target.origin}${target.pathname}`;
  await new Promise<void>((resolve, reject) => {
    const req = send(target, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(image.size) } }, (res) => {
      res.resume();
      res.on('end', () => {
        if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) resolve();
        else reject(new PiimgError('E_IO', `PUT ${where} answered ${res.statusCode}`, { url: where }));
      });
    });
    req.on('error', (error) => reject(new PiimgError('E_IO', `PUT ${where} failed: ${error.message}`, { url: where }, { cause: error })));
    pipeline(image.createReadStream(), req).catch(reject);
  });
}

/** Starts a worker; resolves to a function that stops it (finishing the current job). */
export async function startQueueWorker(options: QueueWorkerOptions): Promise<{ close: () => Promise<void>; worker: Worker }> {
  const log = options.log ?? (() => undefined);
  const opened = new Map<string, Promise<Image>>();
  const workerName = `${process.pid}`;
  const base = (name: string): Promise<Image> => {
    const path = Object.hasOwn(options.bases, name) ? options.bases[name] : undefined;
    if (!path) throw new UnrecoverableError(`no base named '${name}' on this worker`);
    let image = opened.get(name);
    if (!image) {
      image = openImage(path, options.cacheDir ? { cacheDir: options.cacheDir } : {});
      image.catch(() => opened.delete(name));
      opened.set(name, image);
    }
    return image;
  };
  const processor = async (job: Job<DeviceJobData, DeviceJobResult>): Promise<DeviceJobResult> => {
    const { name, config: raw, putUrl } = job.data;
    log({ level: 'info', msg: 'job started', job: job.id, device: name, attempt: job.attemptsMade + 1 });
    let image: Image | undefined;
    try {
      checkFileNamePart(name, 'name');
      if (!putUrl && !options.outDir) throw new PiimgError('E_CONFIG', 'the job has no putUrl and this worker no --out directory');
      confineSources(raw, options.sourceRoot);
      const config = parseConfig(raw, { env: {}, baseDir: options.sourceRoot ?? process.cwd(), origin: `job ${job.id}` });
      image = await (await base(job.data.base)).derive();
      const report = await image.apply({ config, baseDir: options.sourceRoot ?? process.cwd(), sources: [] });
      let output: string;
      let bytes: number;
      if (putUrl) {
        await putImage(putUrl, image);
        output = `${new URL(putUrl).origin}${new URL(putUrl).pathname}`;
        bytes = image.size;
      } else {
        // save() writes a temporary file and renames it: the output name only ever holds a whole image.
        output = join(options.outDir!, `${name}.img`);
        await image.save(output);
        bytes = statSync(output).size;
      }
      log({ level: 'info', msg: 'job completed', job: job.id, device: name, output, bytes });
      return {
        name,
        output,
        bytes,
        changes: report.changes.length,
        ...(report.outputs.wireguardPublicKey ? { wireguardPublicKey: report.outputs.wireguardPublicKey } : {}),
        worker: workerName,
      };
    } catch (error) {
      log({ level: 'warn', msg: 'job failed', job: job.id, device: name, code: isPiimgError(error) ? error.code : 'E_INTERNAL' });
      // A configuration that is wrong stays wrong: no retries for it.
      if (isPiimgError(error) && (error.code === 'E_CONFIG' || error.code === 'E_USAGE')) throw new UnrecoverableError(`${error.code}: ${error.message}`);
      throw error;
    } finally {
      await image?.close().catch(() => undefined);
    }
  };
  const lockDuration = (options.lockSeconds ?? 30) * 1000;
  const worker = new Worker<DeviceJobData, DeviceJobResult>(options.queue ?? DEFAULT_QUEUE, processor, {
    connection: connectionFrom(options.redis),
    concurrency: options.concurrency ?? 1,
    lockDuration,
    stalledInterval: Math.max(1000, lockDuration / 2),
    maxStalledCount: 2,
  });
  worker.on('error', (error) => log({ level: 'error', msg: 'worker error', error: error.message }));
  await worker.waitUntilReady();
  return {
    worker,
    close: async () => {
      await worker.close();
      for (const image of opened.values()) await (await image.catch(() => undefined))?.close();
    },
  };
}

/** Adds device jobs (retried 3 times with backoff unless the configuration is wrong). */
export async function enqueueDevices(redis: string, jobs: DeviceJobData[], queueName = DEFAULT_QUEUE): Promise<string[]> {
  const queue = new Queue<DeviceJobData, DeviceJobResult>(queueName, { connection: connectionFrom(redis) });
  try {
    const added = await queue.addBulk(
      jobs.map((data) => ({
        name: data.name,
        data,
        opts: { attempts: 3, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: { age: 86_400 }, removeOnFail: { age: 7 * 86_400 } },
      })),
    );
    return added.map((job) => job.id!);
  } finally {
    await queue.close();
  }
}

