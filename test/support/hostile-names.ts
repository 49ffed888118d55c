import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage } from '../../packages/core/src/image/image.js';
import { rawFixture } from './fixtures.js';
import { run } from './tools.js';

/**
 * Names that no tool will create, made by writing a placeholder name of the
 * same length and patching its bytes in place. The ext4 volume is made
 * without metadata_csum, so a patched directory block needs no new checksum,
 * and small enough that its directories are linear (no htree hashes).
 */
export const EXT4_HOSTILE = [
  { placeholder: 'AAAAAAA', bytes: Buffer.from('../../x'), content: 'escaped two levels up\n' },
  { placeholder: 'BBBBBBBB', bytes: Buffer.from('nul\0name'), content: 'nul\n' },
  { placeholder: 'CCCCCCCC', bytes: Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]), content: 'latin-1 name\n' }, // "caf\xe9.txt"
  { placeholder: 'DDDDD', bytes: Buffer.from([0x64, 0x69, 0x72, 0xff, 0xfe]), content: undefined }, // directory "dir\xff\xfe"
] as const;

function patchUnique(bytes: Buffer, from: Buffer, to: Buffer): void {
  const at = bytes.indexOf(from);
  if (at < 0 || bytes.indexOf(from, at + 1) >= 0) throw new Error(`placeholder ${from.toString()} must occur exactly once`);
  to.copy(bytes, at);
}

/**
 * An ext4 volume whose /dir holds ok.txt, "../../x", "nul\0name",
 * "caf\xe9.txt" and the directory "dir\xff\xfe" with inner.txt in it.
 */
export function hostileExt4(): Buffer {
  const work = mkdtempSync(join(tmpdir(), 'piimg-names-'));
  try {
    const tree = join(work, 'tree', 'dir');
    mkdirSync(tree, { recursive: true });
    writeFileSync(join(tree, 'ok.txt'), 'fine\n');
    for (const entry of EXT4_HOSTILE) {
      if (entry.content === undefined) {
        mkdirSync(join(tree, entry.placeholder));
        writeFileSync(join(tree, entry.placeholder, 'inner.txt'), 'inner\n');
      } else writeFileSync(join(tree, entry.placeholder), entry.content);
    }
    const image = join(work, 'ext4.img');
    run('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', '^metadata_csum,^dir_index', '-E', 'nodiscard', '-d', join(work, 'tree'), image, '8M']);
    const bytes = readFileSync(image);
    for (const entry of EXT4_HOSTILE) patchUnique(bytes, Buffer.from(entry.placeholder), entry.bytes);
    return bytes;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The FAT long name "..%zz" becomes "../zz" (long-name characters are not covered by any checksum). */
export const FAT_PLACEHOLDER = '..%zz';
export const FAT_HOSTILE = '../zz';

/**
 * A full disk image: the bookworm fixture whose boot partition gains
 * /evil/{ok.txt, "../zz"} and whose root partition is replaced by hostileExt4().
 */
export async function hostileDiskImage(dir: string): Promise<string> {
  const path = await rawFixture('pi-bookworm', dir);
  const staged = join(dir, 'staged.img');
  {
    await using image = await openImage(path);
    const boot = await image.mount('boot');
    await boot.mkdir('/evil');
    await boot.writeFile('/evil/ok.txt', 'fine\n');
    await boot.writeFile(`/evil/${FAT_PLACEHOLDER}`, 'escaped one level up\n');
    await boot.close();
    await image.save(staged);
  }
  const bytes = readFileSync(staged);
  rmSync(staged);
  const utf16 = (text: string) => Buffer.from(text, 'utf16le');
  patchUnique(bytes, utf16(FAT_PLACEHOLDER), utf16(FAT_HOSTILE));
  writeFileSync(path, bytes);
  {
    await using image = await openImage(path);
    const root = image.partition('root');
    const ext4 = hostileExt4();
    if (ext4.length > root.size) throw new Error('hostile ext4 does not fit the root partition');
    const fd = openSync(path, 'r+');
    try {
      writeSync(fd, ext4, 0, ext4.length, root.byteOffset);
    } finally {
      closeSync(fd);
    }
  }
  return path;
}
