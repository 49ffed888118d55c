/**
 * A batch worker thread: opens the base once and makes the devices the main
 * thread posts to it, one at a time, each derived from that base. Its CPU
 * work (ext4 through WebAssembly, the checks, the copy of the base) runs
 * here, off the main thread, and in parallel with the other workers. Each
 * worker makes its own stage of the fleet's shared files.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openImage } from '@piimg/core';
import { describeError, loadStageRows, makeDevice, type DeviceTask } from './device.js';
import type { DeviceRow } from './devices.js';
import { fleetStage } from './stage.js';

export interface WorkerInit {
  basePath: string;
  configPath: string;
  env: NodeJS.ProcessEnv;
  baseIdentity: string;
  /** The two rows whose shared files: make the stage the devices are derived from (see stage.ts), if any. */
  stageRows?: [DeviceRow, DeviceRow];
}

export type WorkerRequest = { type: 'device'; index: number; task: DeviceTask } | { type: 'stop' };
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'step'; index: number; what: string }
  | { type: 'done'; index: number; result: import('./device.js').DeviceResult }
  | { type: 'fatal'; error: { code: string; message: string } };

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (reply: WorkerReply) => port.postMessage(reply);

try {
  const base = await openImage(init.basePath);
  const stage = init.stageRows ? fleetStage(base, loadStageRows(init.configPath, init.env, init.stageRows)) : undefined;
  const context = { base, configPath: init.configPath, env: init.env, baseIdentity: init.baseIdentity, parallelCopyMin: Infinity, ...(stage ? { stage: stage.get } : {}) };
  port.on('message', (request: WorkerRequest) => {
    if (request.type === 'stop') {
      void (stage?.close() ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => base.close())
        .finally(() => port.close());
      return;
    }
    void makeDevice(context, request.task, (what) => post({ type: 'step', index: request.index, what })).then((result) =>
      post({ type: 'done', index: request.index, result }),
    );
  });
  post({ type: 'ready' });
} catch (error) {
  post({ type: 'fatal', error: describeError(error) });
  port.close();
}
