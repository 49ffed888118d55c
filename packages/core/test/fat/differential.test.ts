/**
 * Differential test: seeded random damage to small FAT12/16/32 volumes,
 * piimg's checkFat verdict against `fsck.fat -n`. Every case where fsck.fat
 * finds damage and checkFat says clean fails the test; the reverse (piimg
 * stricter) is allowed, counted and printed. PIIMG_DIFF_SEED picks another
 * seed, PIIMG_DIFF_CASES the number of cases per FAT type.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { checkFat, formatFat, mountFat } from '../../src/fs/fat/index.js';
import { hasTool, run } from '../../../../test/support/tools.js';
// @ts-expect-error: plain JavaScript shared with the fuzzer, no type declarations.
import { FAT_TARGETS, caseSeed, mutateFat, rng } from '../../../../test/fuzz/mutate.mjs';
import { pattern, tempDir } from './support.js';

const seed = Number(process.env.PIIMG_DIFF_SEED ?? 20261130);
const casesPerType = Number(process.env.PIIMG_DIFF_CASES ?? 100);
const haveFsck = hasTool('fsck.fat');
const { dir, cleanup } = tempDir();
afterAll(cleanup);

async function volume(fatType: 'fat12' | 'fat16' | 'fat32'): Promise<Uint8Array> {
  // The smallest volumes of each type (FAT32 needs 65525 clusters), so that a case costs milliseconds.
  const device = new MemoryDevice(fatType === 'fat12' ? 1440 * 1024 : fatType === 'fat16' ? 4 * 2 ** 20 : 34 * 2 ** 20);
  formatFat(device, { fatType, label: 'DIFFTEST', clusterSize: 512 });
  const fat = await mountFat(device);
  await fat.mkdir('/overlays/deeper', { recursive: true });
  await fat.writeFile('/config.txt', pattern(900, 1));
  await fat.writeFile('/cmdline.txt', 'console=serial0,115200 root=PARTUUID=1234-02 rootwait\n');
  await fat.writeFile('/kernel8.img', pattern(12_000, 2));
  await fat.writeFile('/overlays/Some Overlay Name.dtbo', pattern(3000, 3));
  await fat.writeFile('/overlays/deeper/a-rather-long-file-name-with-two-slots.txt', pattern(700, 4));
  await fat.writeFile('/empty', new Uint8Array(0));
  for (let i = 0; i < 6; i++) await fat.writeFile(`/overlays/o${i}.dtbo`, pattern(600 * i + 1, 10 + i));
  await fat.close();
  return device.bytes.slice();
}

/** fsck.fat -n: exit status 0 means it would change nothing. */
function nativeVerdict(path: string): { clean: boolean; output: string } {
  const result = run('fsck.fat', ['-n', path], { allowFail: true });
  return { clean: result.status === 0, output: (result.stdout + result.stderr).split('\n').slice(1, 8).join(' | ') };
}

const CHUNK = 64 * 1024;

describe.skipIf(!haveFsck)('checkFat against fsck.fat -n on random damage', () => {
  it.each(['fat12', 'fat16', 'fat32'] as const)('%s: every damage fsck.fat finds, checkFat finds too', async (fatType) => {
    const base = await volume(fatType);
    const path = join(dir, `${fatType}.img`);
    const fd = openSync(path, 'w+');
    const started = performance.now();
    const missed: string[] = [];
    let stricter = 0;
    // What piimg reports that fsck.fat -n does not, by kind (numbers and paths left out).
    const stricterKinds = new Map<string, number>();
    let agreeDamaged = 0;
    let agreeClean = 0;
    try {
      writeSync(fd, base, 0, base.length, 0);
      expect(nativeVerdict(path).clean).toBe(true);
      expect(checkFat(new MemoryDevice(base)).problems).toEqual([]);
      // One working copy, mutated in place and put back after each case (a fresh 34 MiB copy per case costs more than the checks).
      const bytes = base.slice();
      for (let index = 0; index < casesPerType; index++) {
        const r = rng(caseSeed(seed, index));
        const edits: string[] = [];
        for (let n = 1 + r.int(2); n > 0; n--) {
          const target = r.pick(FAT_TARGETS);
          const description = mutateFat(bytes, target, r);
          if (description) edits.push(`${target}: ${description}`);
        }
        // Only the changed chunks are written to the file, and put back afterwards.
        // Mutations stay in the metadata and the first directory clusters: all within the first 4 MiB.
        const changed: number[] = [];
        for (let at = 0; at < Math.min(bytes.length, 4 * 2 ** 20); at += CHUNK) {
          const a = Buffer.from(bytes.buffer, at, Math.min(CHUNK, bytes.length - at));
          if (!a.equals(Buffer.from(base.buffer, at, a.length))) changed.push(at);
        }
        for (const at of changed) writeSync(fd, bytes, at, Math.min(CHUNK, bytes.length - at), at);
        const native = nativeVerdict(path);
        let ours: { clean: boolean; problems: string[] };
        try {
          ours = checkFat(new MemoryDevice(bytes));
        } catch (error) {
          if (!isPiimgError(error)) throw error;
          ours = { clean: false, problems: [`${error.code}: ${error.message}`] };
        }
        for (const at of changed) {
          const length = Math.min(CHUNK, base.length - at);
          writeSync(fd, base, at, length, at);
          bytes.set(base.subarray(at, at + length), at);
        }
        if (!native.clean && ours.clean) missed.push(`case ${index} (${edits.join('; ')}): fsck.fat says: ${native.output}`);
        else if (native.clean && !ours.clean) {
          stricter++;
          const kind = ours.problems[0]!.replace(/^[^:]*: /, '').replace(/0x[0-9a-f]+|\d+/g, 'N').replace(/"[^"]*"/g, '"…"');
          stricterKinds.set(kind, (stricterKinds.get(kind) ?? 0) + 1);
        }
        else if (native.clean) agreeClean++;
        else agreeDamaged++;
      }
    } finally {
      closeSync(fd);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `${fatType} differential (seed ${seed}, ${casesPerType} cases, ${seconds} s): both damaged ${agreeDamaged}, both clean ${agreeClean}, ` +
        `piimg stricter ${stricter}, missed by piimg ${missed.length}` +
        [...stricterKinds].sort((a, b) => b[1] - a[1]).map(([kind, count]) => `\n  stricter: ${count} × ${kind}`).join(''),
    );
    expect(missed, `seed ${seed}: damage fsck.fat -n finds and checkFat does not`).toEqual([]);
  });
});
