import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { checkFat, formatFat, mountFat } from '../../src/fs/fat/index.js';
import { hasTool } from '../../../../test/support/tools.js';
import { fsck, tempDir } from './support.js';

/** Names chosen to collide case-insensitively and in their short names. */
const NAME = fc.constantFrom('a.txt', 'A.TXT', 'Long File Name.txt', 'long file name.TXT', 'Long File Name2.txt', 'ñ.txt', 'UPPER', 'x y', 'dir');
const DIR = fc.constantFrom('/', '/dir', '/Other Dir');

type Op =
  | { op: 'write'; dir: string; name: string; size: number }
  | { op: 'append'; dir: string; name: string; size: number }
  | { op: 'truncate'; dir: string; name: string; size: number }
  | { op: 'rm'; dir: string; name: string }
  | { op: 'rename'; dir: string; name: string; toDir: string; toName: string }
  | { op: 'remount' };

const OP: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('write' as const), dir: DIR, name: NAME, size: fc.integer({ min: 0, max: 5000 }) }),
  fc.record({ op: fc.constant('append' as const), dir: DIR, name: NAME, size: fc.integer({ min: 0, max: 3000 }) }),
  fc.record({ op: fc.constant('truncate' as const), dir: DIR, name: NAME, size: fc.integer({ min: 0, max: 3000 }) }),
  fc.record({ op: fc.constant('rm' as const), dir: DIR, name: NAME }),
  fc.record({ op: fc.constant('rename' as const), dir: DIR, name: NAME, toDir: DIR, toName: NAME }),
  fc.constant({ op: 'remount' as const }),
);

const join2 = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

describe('random operations against an in-memory model', () => {
  const withFsck = hasTool('fsck.fat');
  it.each(['fat12', 'fat32'] as const)('%s stays equal to the model', async (fatType) => {
    const { dir: tmp, cleanup } = tempDir();
    let counter = 0;
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(OP, { minLength: 1, maxLength: 40 }), async (ops) => {
          const device = new MemoryDevice(fatType === 'fat12' ? 1440 * 1024 : 34 * 2 ** 20);
          formatFat(device, { fatType, clusterSize: 512 });
          let volume = await mountFat(device);
          await volume.mkdir('/dir');
          await volume.mkdir('/Other Dir');
          // Model: directory -> (upper-case key -> { name, data }).
          const model = new Map<string, Map<string, { name: string; data: Uint8Array }>>([
            ['/', new Map()],
            ['/dir', new Map()],
            ['/Other Dir', new Map()],
          ]);
          model.get('/')!.set('DIR', { name: 'dir', data: new Uint8Array() });
          model.get('/')!.set('OTHER DIR', { name: 'Other Dir', data: new Uint8Array() });
          const isDirKey = (dir: string, key: string) => dir === '/' && (key === 'DIR' || key === 'OTHER DIR');
          let step = 0;
          for (const op of ops) {
            step++;
            const fill = (n: number) => new Uint8Array(n).fill(step & 0xff);
            if (op.op === 'remount') {
              await volume.close();
              volume = await mountFat(device);
              continue;
            }
            const files = model.get(op.dir)!;
            const key = op.name.toUpperCase();
            const path = join2(op.dir, op.name);
            const current = files.get(key);
            const dirClash = isDirKey(op.dir, key);
            // Moving or removing the two fixed directories is covered by the oracle suite.
            if (op.op !== 'write' && op.op !== 'append' && dirClash) continue;
            if (op.op === 'rename' && isDirKey(op.toDir, op.toName.toUpperCase())) continue;
            try {
              if (op.op === 'write') {
                await volume.writeFile(path, fill(op.size));
                expect(dirClash).toBe(false);
                files.set(key, { name: current?.name ?? op.name, data: fill(op.size) });
              } else if (op.op === 'append') {
                await volume.appendFile(path, fill(op.size));
                expect(dirClash).toBe(false);
                files.set(key, { name: current?.name ?? op.name, data: new Uint8Array([...(current?.data ?? []), ...fill(op.size)]) });
              } else if (op.op === 'truncate') {
                await volume.truncate(path, op.size);
                expect(current && !dirClash).toBeTruthy();
                const data = new Uint8Array(op.size);
                data.set(current!.data.subarray(0, op.size));
                files.set(key, { name: current!.name, data });
              } else if (op.op === 'rm') {
                await volume.rm(path);
                expect(current && !dirClash).toBeTruthy();
                files.delete(key);
              } else {
                await volume.rename(path, join2(op.toDir, op.toName));
                expect(current && !dirClash).toBeTruthy();
                const target = model.get(op.toDir)!;
                const toKey = op.toName.toUpperCase();
                expect(isDirKey(op.toDir, toKey)).toBe(false);
                files.delete(key);
                target.set(toKey, { name: op.toName, data: current!.data });
              }
            } catch (error) {
              if (!isPiimgError(error)) throw error;
              // Failures the model predicts: missing source, a directory in the way, no space.
              const expected = ['ENOENT', 'EISDIR', 'ENOTDIR', 'ENOTEMPTY', 'ENOSPC'];
              expect(expected, `${op.op} ${path}: ${error.message}`).toContain(error.code);
              if (error.code === 'ENOENT') expect(current).toBeUndefined();
            }
          }
          await volume.close();
          const check = await mountFat(device, { readOnly: true });
          for (const [dir, files] of model) {
            const listed = (await check.readdir(dir)).map((e) => e.name).sort();
            expect(listed).toEqual([...files.values()].map((f) => f.name).sort());
            for (const file of files.values()) {
              if (isDirKey(dir, file.name.toUpperCase())) continue;
              expect(await check.readFile(join2(dir, file.name))).toEqual(file.data);
            }
          }
          // Our own check must agree with fsck.fat: the volume is clean.
          const checked = checkFat(device);
          expect(checked.problems).toEqual([]);
          expect(checked.clean).toBe(true);
          if (withFsck) {
            const image = join(tmp, `model-${counter++}.img`);
            writeFileSync(image, device.bytes);
            const result = fsck(image);
            expect(result.clean, result.output).toBe(true);
          }
        }),
        { numRuns: fatType === 'fat12' ? 40 : 15 },
      );
    } finally {
      cleanup();
    }
  });
});
