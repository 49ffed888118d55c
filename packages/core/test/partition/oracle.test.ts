/**
 * Oracle tests: disks partitioned by util-linux (sfdisk, fdisk) are read and
 * compared with `sfdisk --json` and with the npm partitioninfo; writes are
 * compared with sfdisk doing the same change and checked by `sfdisk --verify`.
 */
import { closeSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getPartitions } from 'partitioninfo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasTool, run } from '../../../../test/support/tools.js';
import { FileDevice, FileReader } from '../../src/device/index.js';
import { readPartitionTable, resizePartition, setDiskId, type PartitionTable } from '../../src/partition/index.js';

interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
  bootable?: boolean;
}
interface SfdiskTable {
  label: 'dos' | 'gpt';
  id: string;
  sectorsize?: number;
  partitions: SfdiskPartition[];
}

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'piimg-partition-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A sparse file of `sizeBytes`, partitioned by sfdisk from `script`. */
function makeImage(name: string, sizeBytes: number, script: string): string {
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, sizeBytes);
  closeSync(fd);
  run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], { input: script });
  return path;
}

/** A second image from the same script (the scripts fix every id, so both are identical), for sfdisk to change. */
function twin(name: string, sizeBytes: number, script: string): [ours: string, theirs: string] {
  return [makeImage(name, sizeBytes, script), makeImage(`${name}.theirs`, sizeBytes, script)];
}

function sfdiskJson(path: string): SfdiskTable {
  return (JSON.parse(run('sfdisk', ['--json', path]).stdout) as { partitiontable: SfdiskTable }).partitiontable;
}

function numberOf(node: string): number {
  return Number(/(\d+)$/.exec(node)![1]);
}

function readFile(path: string): PartitionTable {
  const reader = FileReader.open(path);
  try {
    return readPartitionTable(reader);
  } finally {
    reader.close();
  }
}

function withDevice<T>(path: string, fn: (device: FileDevice) => T): T {
  const device = FileDevice.open(path);
  try {
    return fn(device);
  } finally {
    device.close();
  }
}

function bytesAt(path: string, byteOffset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const out = Buffer.alloc(length);
    expect(readSync(fd, out, 0, length, byteOffset)).toBe(length);
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Our table in sfdisk's JSON vocabulary, extended partitions left out as we list them apart. */
function expectSameAsSfdisk(table: PartitionTable, path: string): void {
  const json = sfdiskJson(path);
  expect(table.scheme).toBe(json.label === 'dos' ? 'mbr' : 'gpt');
  expect(table.sectorSize).toBe(json.sectorsize ?? 512);
  expect(table.diskId).toBe(json.label === 'dos' ? json.id.replace(/^0x/, '') : json.id.toLowerCase());
  const expected = json.partitions
    .filter((p) => !['5', 'f', '85'].includes(p.type))
    .map((p) => ({
      number: numberOf(p.node),
      firstLba: p.start,
      sectorCount: p.size,
      type: json.label === 'dos' ? `0x${p.type.padStart(2, '0')}` : p.type.toLowerCase(),
      ...(json.label === 'gpt' ? { partUuid: p.uuid!.toLowerCase(), name: p.name ?? '' } : { bootable: p.bootable === true }),
    }));
  expect(table.partitions.map((p) => ({ ...expected.find((e) => e.number === p.number), ...pick(p, expected[0] ?? {}) }))).toEqual(expected);
  expect(table.partitions.map((p) => p.number)).toEqual(expected.map((e) => e.number));
}

function pick<T extends object>(value: T, keysFrom: object): Partial<T> {
  return Object.fromEntries(Object.keys(keysFrom).map((k) => [k, (value as Record<string, unknown>)[k]])) as Partial<T>;
}

/**
 * partitioninfo 6 finds a GPT at 4096 but still converts its LBAs with 512
 * bytes per sector; for those disks compare LBAs (its offset / 512).
 */
async function expectSameAsPartitioninfo(table: PartitionTable, path: string): Promise<void> {
  const info = await getPartitions(path, { includeExtended: false });
  expect(info.type).toBe(table.scheme);
  const scale = table.sectorSize / 512;
  const ours = table.partitions.map((p) => ({ offset: p.byteOffset / scale, size: p.size / scale }));
  expect(info.partitions.map((p) => ({ offset: p.offset, size: p.size }))).toEqual(ours);
  if (info.type === 'mbr') {
    expect(info.partitions.map((p) => p.type)).toEqual(table.partitions.map((p) => parseInt(p.type, 16)));
  } else {
    expect(info.partitions.map((p) => [p.type.toLowerCase(), p.guid.toLowerCase(), p.name])).toEqual(
      table.partitions.map((p) => [p.type, p.partUuid, p.name]),
    );
  }
}

function verify(path: string): void {
  const result = run('sfdisk', ['--verify', path], { allowFail: true });
  expect(result.status, result.stdout + result.stderr).toBe(0);
  expect(result.stdout).toMatch(/No errors detected/);
  expect(result.stdout + result.stderr).not.toMatch(/mismatch|corrupt|overlap|invalid/i);
}

const RPI_SCRIPT = 'label: dos\nlabel-id: 0x1234abcd\nstart=8192, size=524288, type=c, bootable\nstart=532480, size=4194304, type=83\n';
const LOGICAL_SCRIPT =
  'label: dos\nlabel-id: 0x0badcafe\nstart=2048, size=20480, type=c, bootable\nstart=22528, type=f\nsize=10240, type=83\nsize=10240, type=82\nsize=20480, type=83\n';
const GPT_SCRIPT =
  'label: gpt\nlabel-id: 0A0B0C0D-1111-2222-3333-444455556666\n' +
  'start=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=11111111-2222-3333-4444-555555555555, name="BOOT"\n' +
  'start=22528, size=40960, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, uuid=66666666-7777-8888-9999-AAAAAAAAAAAA, name="ROOT", attrs="LegacyBIOSBootable GUID:63"\n' +
  'size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=BBBBBBBB-CCCC-4DDD-8EEE-FFFFFFFFFFFF, name="swap ünïcode"\n';

describe.skipIf(!hasTool('sfdisk'))('partition tables against sfdisk and partitioninfo', () => {
  it('MBR, Raspberry Pi OS layout (two primaries from sector 8192)', async () => {
    const path = makeImage('rpi.img', 3 * 1024 ** 3, RPI_SCRIPT);
    const table = readFile(path);
    expect(table.partitions.map((p) => [p.partUuid, p.typeName])).toEqual([
      ['1234abcd-01', 'W95 FAT32 (LBA)'],
      ['1234abcd-02', 'Linux'],
    ]);
    expectSameAsSfdisk(table, path);
    await expectSameAsPartitioninfo(table, path);
  });

  it('MBR with an extended partition and three logicals', async () => {
    const path = makeImage('logical.img', 128 * 1024 ** 2, LOGICAL_SCRIPT);
    const table = readFile(path);
    expect(table.partitions.map((p) => [p.number, p.kind, p.partUuid])).toEqual([
      [1, 'primary', '0badcafe-01'],
      [5, 'logical', '0badcafe-05'],
      [6, 'logical', '0badcafe-06'],
      [7, 'logical', '0badcafe-07'],
    ]);
    expect(table.extended).toMatchObject({ number: 2, firstLba: 22528, type: '0x0f' });
    expectSameAsSfdisk(table, path);
    await expectSameAsPartitioninfo(table, path);
  });

  it('GPT with 512-byte sectors', async () => {
    const path = makeImage('gpt.img', 64 * 1024 ** 2, GPT_SCRIPT);
    const table = readFile(path);
    expect(table.warnings).toEqual([]);
    expect(table.partitions.map((p) => [p.name, p.typeName])).toEqual([
      ['BOOT', 'EFI System'],
      ['ROOT', 'Linux root (ARM-64)'],
      ['swap ünïcode', 'Linux swap'],
    ]);
    expect(table.partitions.map((p) => p.attributes)).toEqual(['0x0000000000000000', '0x8000000000000004', '0x0000000000000000']);
    expectSameAsSfdisk(table, path);
    await expectSameAsPartitioninfo(table, path);
  });

  it('setDiskId (MBR) writes what sfdisk --disk-id writes', () => {
    const [path, theirs] = twin('rpi-id.img', 3 * 1024 ** 3, RPI_SCRIPT);
    run('sfdisk', ['--disk-id', theirs, '0xc0ffee42']);
    const table = withDevice(path, (device) => setDiskId(device, readPartitionTable(device), 'c0ffee42'));
    expect(table.partitions.map((p) => p.partUuid)).toEqual(['c0ffee42-01', 'c0ffee42-02']);
    expect(bytesAt(path, 0, 512)).toEqual(bytesAt(theirs, 0, 512));
    expect(run('sfdisk', ['--dump', path]).stdout).toMatch(/label-id: 0xc0ffee42/);
    verify(path);
  });

  it('setDiskId (GPT) rewrites both headers as sfdisk --disk-id does', () => {
    const [path, theirs] = twin('gpt-id.img', 64 * 1024 ** 2, GPT_SCRIPT);
    const guid = 'f00dfeed-1234-4abc-8def-0123456789ab';
    run('sfdisk', ['--disk-id', theirs, guid.toUpperCase()]);
    const table = withDevice(path, (device) => setDiskId(device, readPartitionTable(device), guid));
    expect(table.diskId).toBe(guid);
    const lastLbaByteOffset = 64 * 1024 ** 2 - 512;
    expect(bytesAt(path, 512, 512)).toEqual(bytesAt(theirs, 512, 512));
    expect(bytesAt(path, lastLbaByteOffset, 512)).toEqual(bytesAt(theirs, lastLbaByteOffset, 512));
    expect(run('sfdisk', ['--dump', path]).stdout).toMatch(new RegExp(`label-id: ${guid.toUpperCase()}`));
    verify(path);
  });

  it('resizePartition (MBR primary) matches sfdisk -N', () => {
    const [path, theirs] = twin('rpi-resize.img', 3 * 1024 ** 3, RPI_SCRIPT);
    run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '-N', '2', theirs], { input: ',5000000\n' });
    const table = withDevice(path, (device) => resizePartition(device, readPartitionTable(device), 2, 5000000));
    expect(table.partitions[1]).toMatchObject({ firstLba: 532480, sectorCount: 5000000 });
    expect(bytesAt(path, 0, 512)).toEqual(bytesAt(theirs, 0, 512));
    expect(run('sfdisk', ['--dump', path]).stdout).toMatch(/start=\s*532480, size=\s*5000000, type=83/);
    verify(path);
  });

  it('resizePartition (MBR logical) updates the EBR and its link as sfdisk -N does', () => {
    const [path, theirs] = twin('logical-resize.img', 128 * 1024 ** 2, LOGICAL_SCRIPT);
    run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '-N', '6', theirs], { input: ',6000\n' });
    const before = readFile(path);
    const table = withDevice(path, (device) => resizePartition(device, before, 6, 6000));
    expect(table.partitions.find((p) => p.number === 6)).toMatchObject({ sectorCount: 6000 });
    // The EBR of partition 6 and the MBR are byte for byte what sfdisk writes.
    expect(bytesAt(path, 0, 512)).toEqual(bytesAt(theirs, 0, 512));
    expect(bytesAt(path, 34816 * 512, 512)).toEqual(bytesAt(theirs, 34816 * 512, 512));
    // The link to it in the EBR of partition 5 differs on purpose: sfdisk -N leaves its size
    // stale, we keep the convention sfdisk itself uses when it creates the chain (the link
    // spans the next EBR through the end of its logical partition: 36864 + 6000 - 34816).
    const ours = bytesAt(path, 22528 * 512, 512);
    const theirsEbr = bytesAt(theirs, 22528 * 512, 512);
    expect(ours.readUInt32LE(0x1ce + 8)).toBe(theirsEbr.readUInt32LE(0x1ce + 8));
    expect(ours.readUInt32LE(0x1ce + 12)).toBe(36864 + 6000 - 34816);
    expect(theirsEbr.readUInt32LE(0x1ce + 12)).toBe(12288);
    expect(ours.subarray(0, 0x1ce + 5)).toEqual(theirsEbr.subarray(0, 0x1ce + 5));
    expect(ours.subarray(0x1de)).toEqual(theirsEbr.subarray(0x1de));
    expect(run('sfdisk', ['--dump', path]).stdout).toMatch(/size=\s*6000, type=82/);
    expectSameAsSfdisk(table, path);
    verify(path);
  });

  it('resizePartition grows the last logical partition together with its extended partition', () => {
    const script =
      'label: dos\nlabel-id: 0x0badcafe\nstart=2048, size=20480, type=c\nstart=22528, size=60000, type=f\n' +
      'start=24576, size=10240, type=83\nstart=36864, size=10240, type=82\nstart=49152, size=33376, type=83\n';
    const path = makeImage('logical-grow.img', 128 * 1024 ** 2, script);
    const before = readFile(path);
    expect(before.extended).toMatchObject({ firstLba: 22528, sectorCount: 60000 });
    const last = before.partitions.at(-1)!;
    expect(last.firstLba + last.sectorCount).toBe(22528 + 60000);
    const table = withDevice(path, (device) => resizePartition(device, before, 7, last.sectorCount + 40000));
    expect(table.extended).toMatchObject({ firstLba: 22528, sectorCount: 100000 });
    expect(run('sfdisk', ['--dump', path]).stdout).toMatch(/start=\s*22528, size=\s*100000, type=f/);
    expectSameAsSfdisk(table, path);
    verify(path);
  });

  it('resizePartition (GPT) keeps both entry arrays and headers consistent, as sfdisk -N does', () => {
    const [path, theirs] = twin('gpt-resize.img', 64 * 1024 ** 2, GPT_SCRIPT);
    run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '-N', '2', theirs], { input: ',30000\n' });
    const table = withDevice(path, (device) => resizePartition(device, readPartitionTable(device), 2, 30000));
    expect(table.partitions[1]).toMatchObject({ firstLba: 22528, sectorCount: 30000 });
    expect(table.warnings).toEqual([]);
    const size = 64 * 1024 ** 2;
    expect(bytesAt(path, 512, 33 * 512)).toEqual(bytesAt(theirs, 512, 33 * 512));
    expect(bytesAt(path, size - 33 * 512, 33 * 512)).toEqual(bytesAt(theirs, size - 33 * 512, 33 * 512));
    expectSameAsSfdisk(table, path);
    verify(path);
  });

  it('a grown GPT image: the backup moves to the end and the partition grows into the space, as sfdisk does', () => {
    const [path, theirs] = twin('gpt-grow.img', 64 * 1024 ** 2, GPT_SCRIPT.split('\n').slice(0, 4).join('\n') + '\n');
    const grownBytes = 96 * 1024 ** 2;
    for (const file of [path, theirs]) {
      const fd = openSync(file, 'r+');
      ftruncateSync(fd, grownBytes);
      closeSync(fd);
    }
    const before = readFile(path);
    expect(before.warnings.join()).toMatch(/backup GPT header is at LBA 131071, not at the last LBA 196607/);
    run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '-N', '2', theirs], { input: ',+\n' });
    const lastUsableLba = 196607 - 32 - 1;
    const table = withDevice(path, (device) => resizePartition(device, before, 2, lastUsableLba - 22528 + 1));
    expect(table).toMatchObject({ warnings: [], lastUsableLba });
    expect(table.partitions[1]).toMatchObject({ firstLba: 22528, sectorCount: 174047 });
    for (const [byteOffset, length] of [
      [0, 34 * 512],
      [grownBytes - 33 * 512, 33 * 512],
    ] as const) {
      expect(bytesAt(path, byteOffset, length), `bytes at ${byteOffset}`).toEqual(bytesAt(theirs, byteOffset, length));
    }
    // sfdisk leaves the old backup header, still valid, inside the grown partition; we wipe it
    // so no scanner can mistake it for a table later.
    expect(bytesAt(theirs, 131071 * 512, 8).toString('latin1')).toBe('EFI PART');
    expect(bytesAt(path, 131071 * 512, 512).every((b) => b === 0)).toBe(true);
    expectSameAsSfdisk(table, path);
    verify(path);
  });

  it('a damaged primary GPT is read from the backup, as sfdisk does, and a write repairs it', () => {
    const path = makeImage('gpt-damaged.img', 64 * 1024 ** 2, GPT_SCRIPT);
    withDevice(path, (device) => device.write(512 + 0x38, new Uint8Array([0xff])));
    const table = readFile(path);
    expect(table.warnings.join()).toMatch(/primary GPT header is damaged/);
    expectSameAsSfdisk(table, path);
    withDevice(path, (device) => setDiskId(device, table, table.diskId));
    expect(readFile(path).warnings).toEqual([]);
    verify(path);
  });
});

/** sfdisk 2.38 cannot force a sector size on a file; fdisk -b can. */
function fdiskList(path: string): { stdout: string; stderr: string } {
  return run('fdisk', ['-b', '4096', '-l', '-o', 'Device,Start,Sectors,Type-UUID,UUID,Name', path]);
}

describe.skipIf(!hasTool('fdisk'))('GPT with 4096-byte sectors against fdisk -b 4096 and partitioninfo', () => {
  function makeGpt4096(name: string): string {
    const path = join(dir, name);
    const fd = openSync(path, 'w');
    ftruncateSync(fd, 64 * 1024 ** 2);
    closeSync(fd);
    // g: new GPT; n 1 +8M; t 1 (EFI System); n 2 rest; w.
    run('fdisk', ['-b', '4096', path], { input: 'g\nn\n1\n\n+8M\nt\n1\nn\n2\n\n\nw\n', allowFail: true });
    return path;
  }

  function expectSameAsFdisk(table: PartitionTable, path: string): void {
    const listing = fdiskList(path);
    expect(listing.stderr).toBe('');
    expect(listing.stdout).toContain(`Disk identifier: ${table.diskId.toUpperCase()}`);
    const rows = listing.stdout
      .split('\n')
      .filter((line) => line.startsWith(path))
      .map((line) => line.trim().split(/\s+/));
    expect(rows.map(([node, start, sectors, type, uuid]) => [numberOf(node!), Number(start), Number(sectors), type!.toLowerCase(), uuid!.toLowerCase()])).toEqual(
      table.partitions.map((p) => [p.number, p.firstLba, p.sectorCount, p.type, p.partUuid]),
    );
  }

  it('reads it like fdisk and partitioninfo', async () => {
    const path = makeGpt4096('gpt4k.img');
    const table = readFile(path);
    expect(table).toMatchObject({ scheme: 'gpt', sectorSize: 4096, warnings: [] });
    expect(table.partitions.map((p) => [p.firstLba, p.sectorCount, p.typeName])).toEqual([
      [256, 2048, 'EFI System'],
      [2304, 13824, 'Linux filesystem'],
    ]);
    expectSameAsFdisk(table, path);
    await expectSameAsPartitioninfo(table, path);
  });

  it('setDiskId and resizePartition leave a table fdisk reads without complaint', () => {
    const path = makeGpt4096('gpt4k-write.img');
    const guid = '12345678-9abc-4def-8123-456789abcdef';
    const table = withDevice(path, (device) => {
      const resized = resizePartition(device, readPartitionTable(device), 2, 10000);
      return setDiskId(device, resized, guid);
    });
    expect(table).toMatchObject({ diskId: guid, warnings: [] });
    expect(table.partitions[1]).toMatchObject({ firstLba: 2304, sectorCount: 10000 });
    expectSameAsFdisk(table, path);
  });
});

describe.skipIf(!hasTool('mkfs.fat'))('a FAT filesystem without partition table (mkfs.fat)', () => {
  it('is E_NO_PARTITION_TABLE, not an empty MBR', () => {
    const path = join(dir, 'superfloppy.img');
    run('mkfs.fat', ['-C', path, '8192']);
    expect(() => readFile(path)).toThrow(expect.objectContaining({ code: 'E_NO_PARTITION_TABLE', message: expect.stringMatching(/FAT boot sector/) }));
  });
});

describe.skipIf(!hasTool('fdisk') || !hasTool('mkfs.ext4'))('MBR with 4096-byte sectors (fdisk -b 4096, mkfs.ext4 at the 4096-based start)', () => {
  it('detects 4096 from the ext4 superblock and reads what fdisk reads', async () => {
    const path = join(dir, 'mbr4k.img');
    const fd = openSync(path, 'w');
    ftruncateSync(fd, 64 * 1024 ** 2);
    closeSync(fd);
    run('fdisk', ['-b', '4096', path], { input: 'o\nn\np\n1\n\n+8M\nt\nc\nn\np\n2\n\n\nw\n', allowFail: true });
    const asIfNothingFound = readFile(path);
    expect(asIfNothingFound.sectorSize).toBe(512); // no filesystem yet: the documented default
    run('mkfs.ext4', ['-q', '-F', '-E', `offset=${2304 * 4096}`, path, '8M']);
    const table = readFile(path);
    expect(table.sectorSize).toBe(4096);
    const listing = run('fdisk', ['-b', '4096', '-l', '-o', 'Device,Start,Sectors,Id', path]).stdout;
    expect(listing).toContain(`Disk identifier: 0x${table.diskId}`);
    const rows = listing
      .split('\n')
      .filter((line) => line.startsWith(path))
      .map((line) => line.trim().split(/\s+/));
    expect(rows.map(([node, start, sectors, id]) => [numberOf(node!), Number(start), Number(sectors), `0x${id!.padStart(2, '0')}`])).toEqual(
      table.partitions.map((p) => [p.number, p.firstLba, p.sectorCount, p.type]),
    );
    expect(table.partitions[1]!.byteOffset).toBe(2304 * 4096);
  });
});
