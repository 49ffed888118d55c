import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { FileDevice, FileReader } from '../device/file.js';
import { Overlay, type OverlayOptions } from '../device/overlay.js';
import { slice } from '../device/slice.js';
import type { BlockDevice } from '../device/types.js';
import { PiimgError } from '../errors.js';
import { checkFat, mountFat } from '../fs/fat/index.js';
import type { MountOptions, Volume } from '../fs/volume.js';
import { randomDiskId, readPartitionTable, setDiskId as writeDiskId } from '../partition/index.js';
import type { Partition, PartitionTable } from '../partition/types.js';
import { detectFilesystem, type FilesystemInfo } from './detect.js';
import { dataMapFor } from './datamap.js';
import { createOutputStream, formatFromPath, OUTPUT_FORMATS, writeAtomically, type CompressOptions, type ImageLayout, type OutputFormat } from './output.js';
import { saveOverlay, type SaveOptions, type SaveResult } from './save.js';
import { defaultCacheDir, resolveSource, type Compression, type SourceOptions } from './source.js';

export interface OpenImageOptions extends SourceOptions {
  /**
   * Edit the base file itself: save() without a path writes the changes into
   * it. Off by default: the base is opened read-only and never modified.
   */
  inPlace?: boolean;
  overlay?: OverlayOptions;
  /** Logical sector size, when detection is not wanted. */
  sectorSize?: 512 | 4096;
}

export interface ImagePartition extends Partition {
  filesystem: FilesystemInfo;
}

/** Selects a partition: its number, 'boot' (the first FAT partition), 'root' (the first ext partition), or its label. */
export type PartitionSelector = number | 'boot' | 'root' | string | ImagePartition;

export interface VerifyFinding {
  partition: number;
  filesystem: FilesystemInfo['type'];
  checked: boolean;
  clean: boolean;
  problems: string[];
  output?: string;
}

const isFat = (info: FilesystemInfo): boolean => info.type === 'fat12' || info.type === 'fat16' || info.type === 'fat32';
const isExt = (info: FilesystemInfo): boolean => info.type === 'ext2' || info.type === 'ext3' || info.type === 'ext4';

export class Image implements AsyncDisposable {
  /** The path given to openImage. */
  readonly sourcePath: string;
  /** The raw image actually read: the source, or its decompressed copy in the cache. */
  readonly rawPath: string;
  readonly compression: Compression | undefined;
  /** True when a decompressed copy of a compressed base was found in the cache. */
  readonly cached: boolean;
  readonly inPlace: boolean;
  private readonly cacheDir: string;
  private readonly base: FileReader;
  private readonly overlay: Overlay;
  private tableValue: PartitionTable;
  private partitionsValue: ImagePartition[];
  private readonly volumes = new Set<Volume>();
  private closed = false;

  /** @internal use openImage(). */
  constructor(init: { sourcePath: string; rawPath: string; compression?: Compression; cached?: boolean; cacheDir: string; inPlace: boolean; base: FileReader; overlay: Overlay; sectorSize?: 512 | 4096 }) {
    this.sourcePath = init.sourcePath;
    this.rawPath = init.rawPath;
    this.compression = init.compression;
    this.cached = init.cached ?? false;
    this.inPlace = init.inPlace;
    this.cacheDir = init.cacheDir;
    this.base = init.base;
    this.overlay = init.overlay;
    this.tableValue = readPartitionTable(this.overlay, init.sectorSize ? { sectorSize: init.sectorSize } : {});
    this.partitionsValue = this.describePartitions();
  }

  private describePartitions(): ImagePartition[] {
    return this.tableValue.partitions.map((partition) => ({
      ...partition,
      filesystem: detectFilesystem(slice(this.overlay, { byteOffset: partition.byteOffset, length: partition.size })),
    }));
  }

  get size(): number {
    return this.overlay.size;
  }

  get table(): PartitionTable {
    return this.tableValue;
  }

  get partitions(): readonly ImagePartition[] {
    return this.partitionsValue;
  }

  /** The whole disk, base merged with the changes. Writes land in the overlay. */
  get device(): BlockDevice {
    this.assertOpen();
    return this.overlay;
  }

  /** Bytes and chunks changed so far. */
  get changes(): { changedChunks: number; memoryBytes: number; spilledBytes: number } {
    return this.overlay.stats;
  }

  private assertOpen(): void {
    if (this.closed) throw new PiimgError('E_CLOSED', `${this.sourcePath} is closed`, { path: this.sourcePath });
  }

  partition(selector: PartitionSelector): ImagePartition {
    if (typeof selector === 'object') return selector;
    const found =
      typeof selector === 'number'
        ? this.partitionsValue.find((p) => p.number === selector)
        : selector === 'boot'
          ? this.partitionsValue.find((p) => isFat(p.filesystem))
          : selector === 'root'
            ? this.partitionsValue.find((p) => isExt(p.filesystem))
            : this.partitionsValue.find((p) => p.filesystem.label === selector || p.name === selector);
    if (!found) {
      throw new PiimgError('E_NO_PARTITION', `no partition ${JSON.stringify(selector)} in ${this.sourcePath}`, {
        selector,
        partitions: this.partitionsValue.map((p) => p.number),
      });
    }
    return found;
  }

  /** Mounts a partition's filesystem (FAT or ext2/3/4). Changes stay in memory until save(). */
  async mount(selector: PartitionSelector, options: MountOptions = {}): Promise<Volume> {
    this.assertOpen();
    const partition = this.partition(selector);
    const device = slice(this.overlay, { byteOffset: partition.byteOffset, length: partition.size });
    let volume: Volume;
    if (isFat(partition.filesystem)) volume = await mountFat(device, options);
    else if (isExt(partition.filesystem)) {
      // Loaded on first use: opening an image to list it never pulls in the WebAssembly engine.
      const { mountExt4 } = await import('../fs/ext4/index.js');
      volume = await mountExt4(device, options);
    }
    else {
      throw new PiimgError('E_UNSUPPORTED_FILESYSTEM', `partition ${partition.number} holds ${partition.filesystem.type}, which piimg cannot mount`, {
        partition: partition.number,
        filesystem: partition.filesystem.type,
      });
    }
    this.volumes.add(volume);
    const close = volume.close.bind(volume);
    volume.close = async () => {
      this.volumes.delete(volume);
      await close();
    };
    return volume;
  }

  /**
   * Checks every filesystem piimg can check, read-only: ext2/3/4 with e2fsck -fn
   * (WebAssembly), FAT with piimg's own checker (what fsck.fat -n checks).
   * Flushes mounted volumes first.
   */
  async verify(): Promise<VerifyFinding[]> {
    await this.flushVolumes();
    const findings: VerifyFinding[] = [];
    for (const partition of this.partitionsValue) {
      const base = { partition: partition.number, filesystem: partition.filesystem.type };
      if (isExt(partition.filesystem)) {
        const { verifyExt4 } = await import('../fs/ext4/index.js');
        const result = await verifyExt4(slice(this.overlay, { byteOffset: partition.byteOffset, length: partition.size }));
        findings.push({ ...base, checked: true, clean: result.clean, problems: result.problems, output: result.output });
      } else if (isFat(partition.filesystem)) {
        const result = checkFat(slice(this.overlay, { byteOffset: partition.byteOffset, length: partition.size }));
        findings.push({ ...base, checked: true, clean: result.clean, problems: result.problems });
      } else {
        findings.push({ ...base, checked: false, clean: true, problems: [] });
      }
    }
    return findings;
  }

  /** Sets the MBR disk identifier (8 hex digits) or GPT disk GUID; 'random' picks one. Returns the new id. */
  setDiskId(diskId: string | 'random'): string {
    this.assertOpen();
    const id = diskId === 'random' ? randomDiskId(this.tableValue.scheme) : diskId;
    this.tableValue = writeDiskId(this.overlay, this.tableValue, id);
    this.partitionsValue = this.describePartitions();
    return this.tableValue.diskId;
  }

  private async flushVolumes(): Promise<void> {
    for (const volume of this.volumes) await volume.flush();
  }

  /**
   * Writes the image with its changes. With a path: a new file, written
   * atomically; the base is untouched. Without a path: only for images opened
   * with inPlace, the changes are written into the base file.
   */
  async save(outPath?: string, options: SaveOptions = {}): Promise<SaveResult> {
    this.assertOpen();
    await this.flushVolumes();
    if (outPath === undefined) {
      if (!this.inPlace || this.compression) {
        throw new PiimgError('EINVAL', 'save() needs an output path unless the image was opened with inPlace on a raw image', {
          path: this.sourcePath,
        });
      }
      return this.saveInPlace(options);
    }
    const target = resolve(outPath);
    if (sameFile(target, this.rawPath) || sameFile(target, this.sourcePath)) {
      throw new PiimgError('E_SAME_FILE', `refusing to overwrite the base image ${outPath}; open it with inPlace to edit it`, { path: outPath });
    }
    const format = options.format ?? formatFromPath(outPath);
    if (format === 'img') return await saveOverlay(this.rawPath, this.overlay, target, this.cacheDir, options);
    const changedBytes = this.overlay.changedRanges().reduce((sum, range) => sum + range.length, 0);
    await writeAtomically(this.outputStream(format, options), target, { sync: options.sync ?? false });
    return { path: target, changedBytes, reflinked: false, format };
  }

  private outputStream(format: OutputFormat, options: CompressOptions & { chunkSize?: number }): Readable {
    const layout = async (): Promise<ImageLayout> => {
      this.assertOpen();
      await this.flushVolumes();
      return { basePath: this.rawPath, overlay: this.overlay, baseMap: format === 'img' ? [] : dataMapFor(this.rawPath, this.cacheDir) };
    };
    return createOutputStream(layout, format, options);
  }

  private saveInPlace(options: SaveOptions): SaveResult {
    const device = FileDevice.open(this.rawPath);
    let changedBytes = 0;
    try {
      for (const chunk of this.overlay.changedChunks()) {
        device.write(chunk.byteOffset, chunk.data);
        changedBytes += chunk.data.length;
      }
      if (options.sync ?? true) device.flush();
    } finally {
      device.close();
    }
    this.overlay.discard();
    return { path: this.rawPath, changedBytes, reflinked: false };
  }

  /**
   * The whole image with its changes as a stream (an HTTP response, stdout),
   * raw or compressed (`format`: 'img', 'xz', 'gzip'), with backpressure: the
   * image is never held in memory.
   */
  createReadStream(options: { format?: OutputFormat; chunkSize?: number } & CompressOptions = {}): Readable {
    this.assertOpen();
    const format = options.format ?? 'img';
    if (!OUTPUT_FORMATS.includes(format)) throw new PiimgError('EINVAL', `unknown output format ${String(format)}`, { format });
    return this.outputStream(format, options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const volume of [...this.volumes]) {
      try {
        await volume.close();
      } catch {
        // Closing the image must release the files whatever a volume says.
      }
    }
    this.closed = true;
    this.overlay.close();
    this.base.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/**
 * Opens a disk image (.img, or .img.xz / .zip / .gz decompressed once into the
 * cache) with its partitions and their filesystems. The base is opened
 * read-only; every change lands in a copy-on-write overlay until save().
 */
export async function openImage(path: string, options: OpenImageOptions = {}): Promise<Image> {
  const source = await resolveSource(path, options);
  if (options.inPlace && source.compression) {
    throw new PiimgError('EINVAL', `${path} is ${source.compression}-compressed and cannot be edited in place`, { path });
  }
  const base = FileReader.open(source.rawPath);
  const overlay = new Overlay(base, options.overlay);
  try {
    return new Image({
      sourcePath: path,
      rawPath: source.rawPath,
      ...(source.compression ? { compression: source.compression } : {}),
      cached: source.cached,
      cacheDir: options.cacheDir ?? defaultCacheDir(),
      inPlace: options.inPlace ?? false,
      base,
      overlay,
      ...(options.sectorSize ? { sectorSize: options.sectorSize } : {}),
    });
  } catch (error) {
    overlay.close();
    base.close();
    throw error;
  }
}
