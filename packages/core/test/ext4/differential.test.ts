/**
 * Differential test: seeded random damage to a small ext4 image (with and
 * without metadata_csum; the superblock checksum is recomputed after a
 * superblock edit), piimg's verifyExt4 verdict against the native
 * `e2fsck -fn`. Damage the native tool finds and piimg does not fails the
 * test; piimg stricter is counted. PIIMG_DIFF_SEED / PIIMG_DIFF_CASES as in
 * the FAT differential test.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { verifyExt4 } from '../../src/fs/ext4/verify.js';
import { run } from '../../../../test/support/tools.js';
// @ts-expect-error: plain JavaScript shared with the fuzzer, no type declarations.
import { EXT4_TARGETS, caseSeed, mutateExt4, rng } from '../../../../test/fuzz/mutate.mjs';
import { cleanupWorkDir, haveOracles, tempPath, workDir } from './support.js';

afterAll(cleanupWorkDir);

const seed = Number(process.env.PIIMG_DIFF_SEED ?? 20261130);
const cases = Number(process.env.PIIMG_DIFF_CASES ?? 40);

function base(features: string): Uint8Array {
  const tree = join(workDir, `tree-${features.replace(/\W+/g, '')}`);
  mkdirSync(join(tree, 'many'), { recursive: true });
  writeFileSync(join(tree, 'hostname'), 'raspberrypi\n');
  writeFileSync(join(tree, 'big'), new Uint8Array(100_000).fill(9));
  for (let i = 0; i < 120; i++) writeFileSync(join(tree, 'many', `file-with-a-longer-name-${i}`), String(i));
  const path = tempPath(features);
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '1024', '-N', '256', '-O', features, '-E', 'nodiscard', '-U', '0c4a2b6e-6a34-4b1f-9d4e-1d9f0b7c1a10', '-d', tree, path, '4M']);
  // An htree for /many (mke2fs -d does not index directories).
  run('e2fsck', ['-fyD', path], { allowFail: true });
  const bytes = new Uint8Array(readFileSync(path));
  rmSync(path);
  return bytes;
}

describe.skipIf(!haveOracles)('verifyExt4 against native e2fsck -fn on random damage', () => {
  it.each(['metadata_csum,^64bit', '^metadata_csum,^64bit'])('-O %s: every damage e2fsck finds, verifyExt4 finds too', async (features) => {
    const pristine = base(features);
    const path = tempPath('diff');
    const missed: string[] = [];
    let stricter = 0;
    let bothDamaged = 0;
    let bothClean = 0;
    for (let index = 0; index < cases; index++) {
      const r = rng(caseSeed(seed, index));
      const bytes = pristine.slice();
      const target = r.pick(EXT4_TARGETS);
      const description = mutateExt4(bytes, target, r) ?? 'nothing';
      writeFileSync(path, bytes);
      const native = run('e2fsck', ['-fn', path], { allowFail: true });
      const ours = await verifyExt4(new MemoryDevice(bytes));
      if (native.status !== 0 && ours.clean) missed.push(`case ${index} (${target}: ${description}): e2fsck exit ${native.status}: ${native.stdout.split('\n').slice(1, 5).join(' | ')}`);
      else if (native.status === 0 && !ours.clean) stricter++;
      else if (native.status === 0) bothClean++;
      else bothDamaged++;
    }
    rmSync(path, { force: true });
    console.log(`ext4 -O ${features} differential (seed ${seed}, ${cases} cases): both damaged ${bothDamaged}, both clean ${bothClean}, piimg stricter ${stricter}, missed by piimg ${missed.length}`);
    expect(missed, `seed ${seed}`).toEqual([]);
  });
});
