// Where worker threads cannot start, a save still copies everything: on the
// other worker, or on the calling thread when none starts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const failures = vi.hoisted(() => ({ remaining: 0 }));
vi.mock('node:worker_threads', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:worker_threads')>();
  class FlakyWorker extends actual.Worker {
    constructor(...args: ConstructorParameters<typeof actual.Worker>) {
      if (failures.remaining > 0) {
        failures.remaining--;
        throw Object.assign(new Error('cannot start a worker here'), { code: 'ERR_WORKER_INIT_FAILED' });
      }
      super(...args);
    }
  }
  return { ...actual, Worker: FlakyWorker };
});

const { copyRanges } = await import('../packages/core/src/image/copy.js');

const dir = mkdtempSync(join(tmpdir(), 'piimg-copy-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('copy without worker threads', () => {
  for (const failing of [1, 2]) {
    it(`${failing} of 2 workers cannot start: the copy is still complete`, async () => {
      const from = join(dir, `source-${failing}.img`);
      writeFileSync(from, Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20), randomBytes(1000)]));
      const to = join(dir, `copy-${failing}.img`);
      failures.remaining = failing;
      const handle = await open(to, 'wx');
      const map = await copyRanges(from, handle, statSync(from).size, undefined, { parallelMin: 0 });
      await handle.close();
      expect(failures.remaining).toBe(0);
      expect(readFileSync(to).equals(readFileSync(from))).toBe(true);
      expect(map).toEqual([
        { byteOffset: 0, length: 3 << 20 },
        { byteOffset: 5 << 20, length: 1000 },
      ]);
    });
  }
});
