import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { FileDevice, FileReader } from '../device/file.js';
import { Overlay, type OverlayOptions } from '../device/overlay.js';
import { SharedReader } from '../device/shared.js';
import { slice } from '../device/slice.js';
import type { BlockDevice } from '../device/types.js';
import { PiimgError } from '../errors.js';
import { checkFat, mountFat } from '../fs/fat/index.js';
import type { MountOptions, Volume } from '../fs/volume.js';
import type { LoadedConfig } from '../config/load.js';
import { applyToImage, type ImageApplyOptions, type ImageApplyResult } from './apply.js';
import { randomDiskId, readPartitionTable, setDiskId as writeDiskId } from '../partition/index.js';
import type { Partition, PartitionTable } from '../partition/types.js';
import { detectFilesystem, type FilesystemInfo } from './detect.js';
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
  private readonly base: SharedReader;
  private readonly overlay: Overlay;
  private readonly overlayOptions: OverlayOptions | undefined;
  private readonly sectorSize: 512 | 4096 | undefined;
  private tableValue: PartitionTable;
  private partitionsValue: ImagePartition[];
  private readonly volumes = new Set<Volume>();
  private closed = false;
  private applying = false;

  /** @internal use openImage(). */
  constructor(init: { sourcePath: string; rawPath: string; compression?: Compression; cached?: boolean; cacheDir: string; inPlace: boolean; base: SharedReader; overlay: Overlay; overlayOptions?: OverlayOptions; sectorSize?: 512 | 4096 }) {
    this.sourcePath = init.sourcePath;
    this.rawPath = init.rawPath;
    this.compression = init.compression;
    this.cached = init.cached ?? false;
    this.inPlace = init.inPlace;
    this.cacheDir = init.cacheDir;
    this.base = init.base;
    this.overlay = init.overlay;
    this.overlayOptions = init.overlayOptions;
    this.sectorSize = init.sectorSize;
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

  /**
   * A new image over the same read-only base, starting from this image's
   * current content (its changes so far are copied into the new image's own
   * copy-on-write overlay). The two are independent from then on: edits,
   * saves and close() of one never show in the other, and they may be used
   * concurrently. The base file stays open until this image and every image
   * derived from it are closed. Not for images opened with inPlace, whose
   * base changes on save().
   */
  async derive(options: { overlay?: OverlayOptions } = {}): Promise<Image> {
    this.assertOpen();
    if (this.inPlace) {
      throw new PiimgError('EINVAL', `${this.sourcePath} is opened with inPlace: its base changes on save(), so nothing can be derived from it`, {
        path: this.sourcePath,
      });
    }
    await this.flushVolumes();
    this.assertOpen();
    const base = this.base.share();
    const overlayOptions = options.overlay ?? this.overlayOptions;
    const overlay = new Overlay(base, overlayOptions);
    try {
      for (const chunk of this.overlay.changedChunks()) overlay.write(chunk.byteOffset, chunk.data);
      return new Image({
        sourcePath: this.sourcePath,
        rawPath: this.rawPath,
        ...(this.compression ? { compression: this.compression } : {}),
        cached: this.cached,
        cacheDir: this.cacheDir,
        inPlace: false,
        base,
        overlay,
        ...(overlayOptions ? { overlayOptions } : {}),
        ...(this.sectorSize ? { sectorSize: this.sectorSize } : {}),
      });
    } catch (error) {
      overlay.close();
      base.close();
      throw error;
    }
  }

  /**
   * Does to this image what `piimg inject` does: applies a device
   * configuration (the recipes, with the disk identifier wired to the
   * partition table), then verifies every filesystem unless `verify: false`.
   * Throws E_VERIFY_FAILED when a filesystem does not verify. Mounted volumes
   * must be closed first (E_BUSY): the recipes mount their own.
   */
  async apply(config: LoadedConfig, options: ImageApplyOptions = {}): Promise<ImageApplyResult> {
    this.assertOpen();
    if (this.volumes.size > 0 || this.applying) {
      throw new PiimgError('E_BUSY', `${this.sourcePath} has mounted volumes; close them before apply()`, { path: this.sourcePath });
    }
    this.applying = true;
    try {
      return await applyToImage(this, config, options);
    } finally {
      this.applying = false;
    }
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
    return await saveOverlay(this.rawPath, this.overlay, target, this.cacheDir, options);
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

  /** The whole image with its changes as a stream (an HTTP response, a compressor, stdout). */
  createReadStream(options: { chunkSize?: number } = {}): Readable {
    this.assertOpen();
    const chunkSize = options.chunkSize ?? 1 << 20;
    const overlay = this.overlay;
    const flush = () => this.flushVolumes();
    async function* chunks(): AsyncGenerator<Uint8Array> {
      await flush();
      for (let position = 0; position < overlay.size; position += chunkSize) {
        yield overlay.read(position, Math.min(chunkSize, overlay.size - position));
      }
    }
    return Readable.from(chunks(), { objectMode: false });
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
  const base = SharedReader.over(FileReader.open(source.rawPath));
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
      ...(options.overlay ? { overlayOptions: options.overlay } : {}),
      ...(options.sectorSize ? { sectorSize: options.sectorSize } : {}),
    });
  } catch (error) {
    overlay.close();
    base.close();
    throw error;
  }
}
