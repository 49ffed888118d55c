/** Messages between the image service's HTTP thread and its worker threads. */

export type ImageFormat = 'img' | 'img.gz' | 'img.zst';

export interface JobRequest {
  type: 'job';
  id: string;
  base: { name: string; path: string };
  /** The device configuration as received (JSON), validated in the worker. */
  config: unknown;
  format: ImageFormat;
  /** Directory that `files[].source` paths must stay inside; absent: sources are refused. */
  sourceRoot?: string;
  cacheDir?: string;
}

/** The HTTP side may take `count` more chunks (backpressure). */
export interface Credit {
  type: 'credit';
  id: string;
  count: number;
}

export interface Cancel {
  type: 'cancel';
  id: string;
}

export type ToWorker = JobRequest | Credit | Cancel;

export interface JobStarted {
  type: 'start';
  id: string;
  /** Size of the raw image in bytes. */
  size: number;
  changes: number;
  warnings: string[];
  outputs: Record<string, string | undefined>;
  timings: Record<string, number>;
}

/**
 * The next piece of the image: `length` bytes in slot `slot` of the worker's ring (a
 * SharedArrayBuffer of CREDIT_WINDOW slots), or, for a piece larger than a slot, `data`
 * itself (transferred).
 */
export interface JobChunk {
  type: 'chunk';
  id: string;
  slot: number;
  length: number;
  data?: Uint8Array;
}

export interface JobEnd {
  type: 'end';
  id: string;
}

export interface JobFailed {
  type: 'error';
  id: string;
  code: string;
  message: string;
  /** True when the client's input is at fault (bad configuration): HTTP 4xx. */
  client: boolean;
}

export type FromWorker = JobStarted | JobChunk | JobEnd | JobFailed;

/** Bytes per chunk sent from a worker; with CREDIT_WINDOW chunks in flight at most. */
export const CHUNK_BYTES = 1 << 20;
export const CREDIT_WINDOW = 8;
/** A slot of the ring holds a raw chunk or its gzip member (zlib's deflateBound for 1 MiB is about 1 MiB + 350 bytes). */
export const SLOT_BYTES = CHUNK_BYTES + (64 << 10);

/** What a worker thread gets at its start. */
export interface WorkerSetup {
  /** Nice value for the thread (Linux only; 0: unchanged). */
  nice: number;
  /** CREDIT_WINDOW slots of SLOT_BYTES, shared with the HTTP thread and reused for every job. */
  ring: SharedArrayBuffer;
}
