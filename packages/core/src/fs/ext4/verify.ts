import { e2fsck, precompile } from '@piimg/wasm';
import type { BlockReader } from '../../device/types.js';

/** What `verifyExt4` found: e2fsck -fn, run in WebAssembly. */
export interface Ext4VerifyResult {
  /** True when e2fsck -fn found nothing to fix (exit status 0). */
  clean: boolean;
  /** e2fsck's exit status: 0 clean, 4 errors left uncorrected, 8 operational error. */
  status: number;
  /** Everything e2fsck printed. */
  output: string;
  /** The lines describing problems (pass headers and the summary left out). */
  problems: string[];
}

const noise = [
  /^Pass \d[A-Z]?: /,
  /^e2fsck \d/,
  /^piimg:\d+: \d+\/\d+ files /,
  /^\s*$/,
  /^Checking for /,
];

/**
 * Checks an ext2/3/4 filesystem with e2fsck -fn compiled to WebAssembly.
 * The device is opened read-only: checking never writes. A volume mounted
 * on the same device keeps recent changes in its cache until flush() or
 * close(): call one of them first.
 */
export async function verifyExt4(reader: BlockReader, options: { fix?: false } = {}): Promise<Ext4VerifyResult> {
  if ((options as { fix?: boolean }).fix) throw new TypeError('verifyExt4 only checks; repairing is not offered here');
  const readOnly: BlockReader = { size: reader.size, read: (byteOffset, length) => reader.read(byteOffset, length) };
  // Finishes a compile started earlier (or compiles off the main thread now).
  await precompile('e2fsck');
  const result = e2fsck(readOnly, { fix: false });
  const output = [result.stdout, result.stderr].filter((text) => text !== '').join('\n');
  const problems = output.split('\n').filter((line) => !noise.some((pattern) => pattern.test(line)));
  return { clean: result.status === 0, status: result.status, output, problems: result.status === 0 ? [] : problems };
}
