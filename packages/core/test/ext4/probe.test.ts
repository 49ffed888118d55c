import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { probeExt } from '../../src/fs/ext4/probe.js';
import { readField, superblock, SUPERBLOCK_BYTE_OFFSET } from '../../src/fs/ext4/layout.js';
import { hasTool, run } from '../../../../test/support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-probe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function mkfs(name: string, args: string[], sizeKiB = 8192): Uint8Array {
  const path = join(dir, name);
  run('mke2fs', ['-q', '-F', '-E', 'nodiscard', ...args, path, `${sizeKiB}k`]);
  return new Uint8Array(readFileSync(path));
}

function dumpe2fs(name: string): Map<string, string> {
  const out = run('dumpe2fs', ['-h', join(dir, name)]).stdout;
  const fields = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) fields.set(m[1]!.trim(), m[2]!.trim());
  }
  return fields;
}

describe.skipIf(!hasTool('mke2fs'))('probeExt against mke2fs/dumpe2fs', () => {
  const cases: Array<{ name: string; args: string[]; type: string }> = [
    { name: 'ext4-default', args: ['-t', 'ext4', '-L', 'rootfs'], type: 'ext4' },
    { name: 'ext4-pigen', args: ['-t', 'ext4', '-O', '^64bit,^huge_file', '-L', 'rootfs'], type: 'ext4' },
    { name: 'ext4-1k', args: ['-t', 'ext4', '-b', '1024', '-O', 'orphan_file,metadata_csum_seed'], type: 'ext4' },
    { name: 'ext3', args: ['-t', 'ext3', '-L', 'τest'], type: 'ext3' },
    { name: 'ext2', args: ['-t', 'ext2'], type: 'ext2' },
  ];
  for (const c of cases) {
    it(`${c.name}: type, label, uuid, block size and features match dumpe2fs`, () => {
      const bytes = mkfs(c.name, c.args);
      const probe = probeExt(new MemoryDevice(bytes));
      const fields = dumpe2fs(c.name);
      expect(probe).toBeDefined();
      expect(probe!.type).toBe(c.type);
      expect(probe!.uuid).toBe(fields.get('Filesystem UUID'));
      expect(probe!.blockSize).toBe(Number(fields.get('Block size')));
      const label = fields.get('Filesystem volume name');
      expect(probe!.label).toBe(label === '<none>' ? undefined : label);
      expect([...probe!.features].sort()).toEqual(fields.get('Filesystem features')!.split(/\s+/).sort());
    });
  }

  it('the superblock table offsets agree with dumpe2fs', () => {
    const bytes = mkfs('table', ['-t', 'ext4', '-b', '1024', '-I', '256']);
    const fields = dumpe2fs('table');
    const view = new DataView(bytes.buffer, SUPERBLOCK_BYTE_OFFSET, 1024);
    expect(readField(view, superblock.s_inodes_count)).toBe(Number(fields.get('Inode count')));
    expect(readField(view, superblock.s_blocks_count_lo)).toBe(Number(fields.get('Block count')));
    expect(readField(view, superblock.s_r_blocks_count_lo)).toBe(Number(fields.get('Reserved block count')));
    expect(readField(view, superblock.s_free_blocks_count_lo)).toBe(Number(fields.get('Free blocks')));
    expect(readField(view, superblock.s_free_inodes_count)).toBe(Number(fields.get('Free inodes')));
    expect(readField(view, superblock.s_first_data_block)).toBe(Number(fields.get('First block')));
    expect(readField(view, superblock.s_blocks_per_group)).toBe(Number(fields.get('Blocks per group')));
    expect(readField(view, superblock.s_inodes_per_group)).toBe(Number(fields.get('Inodes per group')));
    expect(readField(view, superblock.s_first_ino)).toBe(Number(fields.get('First inode')));
    expect(readField(view, superblock.s_inode_size)).toBe(Number(fields.get('Inode size')));
    expect(readField(view, superblock.s_journal_inum)).toBe(Number(fields.get('Journal inode')));
    expect(readField(view, superblock.s_checksum).toString(16).padStart(8, '0')).toBe(fields.get('Checksum')!.replace(/^0x/, ''));
  });
});

describe('probeExt on non-ext data', () => {
  it('returns undefined for zeros, a short device and a FAT-like sector', () => {
    expect(probeExt(new MemoryDevice(4096))).toBeUndefined();
    expect(probeExt(new MemoryDevice(1500))).toBeUndefined();
    const fat = new Uint8Array(4096);
    fat[510] = 0x55;
    fat[511] = 0xaa;
    expect(probeExt(new MemoryDevice(fat))).toBeUndefined();
  });

  it('rejects a magic number with insane geometry', () => {
    const bytes = new Uint8Array(4096);
    const view = new DataView(bytes.buffer, 1024);
    view.setUint16(0x38, 0xef53, true);
    expect(probeExt(new MemoryDevice(bytes))).toBeUndefined();
    view.setUint32(0x00, 16, true);
    view.setUint32(0x04, 64, true);
    view.setUint32(0x20, 8192, true);
    view.setUint32(0x28, 16, true);
    view.setUint32(0x18, 7, true); // 128 KiB blocks: beyond what any kernel mounts
    expect(probeExt(new MemoryDevice(bytes))).toBeUndefined();
    view.setUint32(0x18, 2, true);
    expect(probeExt(new MemoryDevice(bytes))).toMatchObject({ type: 'ext2', blockSize: 4096 });
  });

  it('names unknown feature bits as e2fsprogs does, bit 31 included', () => {
    const bytes = new Uint8Array(4096);
    const view = new DataView(bytes.buffer, 1024);
    view.setUint16(0x38, 0xef53, true);
    view.setUint32(0x00, 16, true);
    view.setUint32(0x04, 64, true);
    view.setUint32(0x20, 8192, true);
    view.setUint32(0x28, 16, true);
    view.setUint32(0x60, 0x80000042, true);
    view.setUint32(0x64, 0x00100001, true);
    expect(probeExt(new MemoryDevice(bytes))?.features).toEqual(['filetype', 'extent', 'FEATURE_I31', 'sparse_super', 'FEATURE_R20']);
  });

  it('never throws for random superblocks carrying the magic', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1024, maxLength: 1024 }), (sb) => {
        const bytes = new Uint8Array(2048);
        bytes.set(sb, 1024);
        bytes[1024 + 0x38] = 0x53;
        bytes[1024 + 0x39] = 0xef;
        const result = probeExt(new MemoryDevice(bytes));
        if (result) {
          expect(['ext2', 'ext3', 'ext4']).toContain(result.type);
          expect(result.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        }
      }),
      { numRuns: 500 },
    );
  });
});
