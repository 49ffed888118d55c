import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { FileDevice, FileReader } from '../device/file.js';
import { Overlay, type OverlayOptions } from '../device/overlay.js';
import { SharedReader } from '../device/shared.js';
import { slice } from '../device/slice.js';
import type { BlockDevice, ByteRange } from '../device/types.js';
import { PiimgError } from '../errors.js';
import { checkFat, mountFat } from '../fs/fat/index.js';
import type { MountOptions, Volume } from '../fs/volume.js';
import type { LoadedConfig } from '../config/load.js';
import { applyToImage, type ImageApplyOptions, type ImageApplyResult } from './apply.js';
import { randomDiskId, readPartitionTable, setDiskId as writeDiskId } from '../partition/index.js';
import type { Partition, PartitionTable } from '../partition/types.js';
import { createBmap, type Bmap } from './bmap.js';
import { applyDeltaFile, writeDelta, type DeltaHeader } from './delta.js';
import { fileIdentityKey, rawSha256, readFileFact, writeFileFact } from './identity.js';
import { detectFilesystem, type FilesystemInfo } from './detect.js';
import { sameFile, type PrepareSaveOptions, type StartedSave } from './early.js';
import { partialName } from './partial.js';
import { diskUsedRanges, isRangeList, usedRanges } from './usage.js';
import { dataMapFor } from './datamap.js';
import { createOutputStream, formatFromPath, OUTPUT_FORMATS, writeAtomically, type CompressOptions, type ImageLayout, type OutputFormat, type OutputStats } from './output.js';
import { checkOutputPath, PreparedSave, SaveJob, saveOverlay, writeToDevice, type SaveOptions, type SaveResult } from './save.js';
import { defaultCacheDir, resolveSource, type Compression, type SourceOptions } from './source.js';

/** Options of `openImage`. */
export interface OpenImageOptions extends SourceOptions {
  /**
   * Edit the base file itself: save() without a path writes the changes into
   * it. Off by default: the base is opened read-only and never modified.
   */
  inPlace?: boolean;
  /** Where changes are kept: chunk size, memory before spilling to a temporary file (256 MiB). */
  overlay?: OverlayOptions;
  /** Logical sector size, when detection is not wanted. */
  sectorSize?: 512 | 4096;
}

/** A partition of an opened image, with the filesystem found in it. */
export interface ImagePartition extends Partition {
  filesystem: FilesystemInfo;
}

/** Selects a partition: its number, 'boot' (the first FAT partition), 'root' (the first ext partition), or its label. */
export type PartitionSelector = number | 'boot' | 'root' | string | ImagePartition;

/** The check of one partition by `Image.verify()`. */
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

/** An opened disk image: its partition table and partitions, mountable volumes, and a copy-on-write overlay that holds every change until `save`. Made by `openImage`. */
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
  /** Saves started by prepareSave and not finished yet: close() cancels them. */
  private readonly prepared = new Set<PreparedSave>();

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

  /** The partition a selector names; E_NO_PARTITION when none matches. */
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
   * current content (its changes so far are shared with the new image's own
   * copy-on-write overlay, and copied by whichever writes them first). The two are independent from then on: edits,
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
      overlay.adopt(this.overlay);
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
   * atomically; the base is untouched. A path that exists must be a regular
   * file (E_BAD_OUTPUT otherwise), unless `toDevice` asks to write onto a
   * block device in place. Without a path: only for images opened
   * with inPlace, the changes are written into the base file.
   */
  async save(outPath?: string, options: SaveOptions = {}): Promise<SaveResult> {
    this.assertOpen();
    if (outPath === undefined) {
      await this.flushVolumes();
      if (!this.inPlace || this.compression) {
        throw new PiimgError('EINVAL', 'save() needs an output path unless the image was opened with inPlace on a raw image', {
          path: this.sourcePath,
        });
      }
      return this.saveInPlace(options);
    }
    return this.prepareSave(outPath, options).finish();
  }

  /**
   * Starts a save to `outPath` before the changes are made: the copy of the
   * base into a temporary file next to `outPath` begins at once and runs
   * while the caller edits the image (in a cp process where the system has
   * GNU cp, on worker threads otherwise; a reflink clone takes no time at
   * all), since the base does not depend on the changes. `finish()` then
   * waits for that copy, writes the changes (as they are at that moment)
   * and renames the file into place: the same output as `save(outPath,
   * options)`, sooner. Checks the output path at once (E_BAD_OUTPUT,
   * E_SAME_FILE). Leaving it unfinished (`cancel()`, `await using`, a failed
   * step, `close()` of the image, the options' signal) removes the temporary
   * file. Compressed formats and `toDevice` start nothing early: `finish()`
   * then does what save() does. `started`: a copy begun by startSave before
   * the image was opened, used when it fits (see PrepareSaveOptions).
   *
   * @example
   * const save = image.prepareSave('device.img');
   * try {
   *   await image.apply(config);
   *   await save.finish();
   * } finally {
   *   await save.cancel(); // removes the temporary file, unless finish() put it in place
   * }
   */
  prepareSave(outPath: string, { started, ...options }: PrepareSaveOptions = {}): PreparedSave {
    try {
      return this.prepareOwnSave(outPath, options, started);
    } finally {
      // A started copy the save did not take (another base or output, a stream format, an error) stops.
      void started?.cancel();
    }
  }

  private prepareOwnSave(outPath: string, options: SaveOptions, started: StartedSave | undefined): PreparedSave {
    this.assertOpen();
    const target = resolve(outPath);
    if (sameFile(target, this.rawPath) || sameFile(target, this.sourcePath)) {
      throw new PiimgError('E_SAME_FILE', `refusing to overwrite the base image ${outPath}; open it with inPlace to edit it`, { path: outPath });
    }
    const format = options.format ?? (options.toDevice ? 'img' : formatFromPath(outPath));
    if (!OUTPUT_FORMATS.includes(format)) throw new PiimgError('EINVAL', `unknown output format ${String(format)}`, { format });
    // A raw file with free space as zeros is written like a compressed output: from the stream.
    if (format !== 'img' || options.freeSpace === 'zero' || options.toDevice || this.inPlace) {
      if (options.toDevice && format !== 'img') throw new PiimgError('EINVAL', `a device takes the raw image, not ${format}`, { path: outPath });
      if (!options.toDevice) checkOutputPath(target);
      const later: PreparedSave = new PreparedSave(
        target,
        () => {
          this.prepared.delete(later);
          return this.saveLater(target, format, options);
        },
        async () => void this.prepared.delete(later),
      );
      return this.track(later);
    }
    const job = started?.take(this.rawPath, this.overlay.size, target, options) ?? new SaveJob(this.rawPath, this.overlay.size, target, this.cacheDir, options);
    const prepared: PreparedSave = new PreparedSave(
      target,
      async () => {
        try {
          this.assertOpen();
          await this.flushVolumes();
        } catch (error) {
          await job.cancel();
          throw error;
        } finally {
          this.prepared.delete(prepared);
        }
        return job.finish(this.overlay);
      },
      async () => {
        this.prepared.delete(prepared);
        await job.cancel();
      },
    );
    return this.track(prepared);
  }

  private track(prepared: PreparedSave): PreparedSave {
    this.prepared.add(prepared);
    return prepared;
  }

  /** A save whose work all happens at finish(): compressed formats, devices, in-place images. */
  private async saveLater(target: string, format: OutputFormat, options: SaveOptions): Promise<SaveResult> {
    this.assertOpen();
    await this.flushVolumes();
    if (options.toDevice) return await writeToDevice(this.overlay, target, options);
    if (format === 'img' && options.freeSpace !== 'zero') return await saveOverlay(this.rawPath, this.overlay, target, this.cacheDir, options);
    checkOutputPath(target);
    const changedBytes = this.overlay.changedRanges().reduce((sum, range) => sum + range.length, 0);
    let stats: OutputStats | undefined;
    const stream = this.outputStream(format, {
      ...options,
      onStats: (made) => {
        stats = made;
        options.onStats?.(made);
      },
    });
    await writeAtomically(stream, target, { sync: options.sync ?? false, ...(options.signal ? { signal: options.signal } : {}) });
    return { path: target, changedBytes, reflinked: false, format, ...(stats ? { blocks: stats } : {}) };
  }

  private outputStream(format: OutputFormat, options: CompressOptions & { chunkSize?: number }): Readable {
    const freeSpace = options.freeSpace ?? (format === 'img' ? 'keep' : 'zero');
    if (freeSpace !== 'zero' && freeSpace !== 'keep') throw new PiimgError('EINVAL', `freeSpace must be 'zero' or 'keep', not ${String(freeSpace)}`, { freeSpace });
    const layout = async (): Promise<ImageLayout> => {
      this.assertOpen();
      await this.flushVolumes();
      const needsMap = format !== 'img' || freeSpace === 'zero';
      return {
        basePath: this.rawPath,
        overlay: this.overlay,
        baseMap: needsMap ? dataMapFor(this.rawPath, this.cacheDir) : [],
        ...(freeSpace === 'zero' ? await this.keptRanges() : {}),
        ...(format !== 'img' ? { cache: { dir: this.cacheDir, baseKey: fileIdentityKey(this.rawPath) } } : {}),
      };
    };
    return createOutputStream(layout, format, options);
  }

  /**
   * The ranges in use in this image and in its base (remembered per base
   * file): what an output with free space as zeros keeps. Only filesystem
   * free space is left out; areas no filesystem describes are kept whole
   * (their holes are in the data map already), so nothing is scanned. An
   * image whose table or filesystems cannot be read keeps everything.
   */
  private async keptRanges(): Promise<{ keep?: ByteRange[]; baseKeep?: ByteRange[] }> {
    try {
      const keep = await diskUsedRanges(this.overlay, this.sectorSize, { scan: false });
      const key = `${fileIdentityKey(this.rawPath)}-${this.sectorSize ?? 'auto'}`;
      const known = readFileFact(this.cacheDir, 'kept', key);
      let baseKeep = isRangeList(known, this.base.size) ? known : undefined;
      if (!baseKeep) {
        baseKeep = await diskUsedRanges(this.base, this.sectorSize, { scan: false });
        writeFileFact(this.cacheDir, 'kept', key, baseKeep);
      }
      return { keep, baseKeep };
    } catch {
      return {};
    }
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
   * raw or compressed (`format`: 'img', 'xz', 'gzip', 'zstd'), with backpressure: the
   * image is never held in memory. Compressed formats write free space as
   * zeros unless `freeSpace: 'keep'`, and take the Blocks this image shares
   * with its base from the cache (CompressOptions.blockCache).
   */
  createReadStream(options: { format?: OutputFormat; chunkSize?: number } & CompressOptions = {}): Readable {
    this.assertOpen();
    const format = options.format ?? 'img';
    if (!OUTPUT_FORMATS.includes(format)) throw new PiimgError('EINVAL', `unknown output format ${String(format)}`, { format });
    return this.outputStream(format, options);
  }

  /**
   * The byte ranges in use, with the changes: allocated FAT clusters and ext
   * blocks with their metadata, and wherever else the image is not zeros
   * (partition tables, unknown partitions). Flushes mounted volumes first.
   */
  async usedRanges(): Promise<ByteRange[]> {
    this.assertOpen();
    await this.flushVolumes();
    return usedRanges(this.overlay, this.partitionsValue.map((p) => ({ byteOffset: p.byteOffset, size: p.size, filesystem: p.filesystem })));
  }

  /** The image's block map in bmaptool's format 2.0 (`bmaptool copy --bmap FILE`), with the changes. */
  async bmap(): Promise<Bmap> {
    return createBmap(this.overlay, await this.usedRanges());
  }

  /** Writes the block map to `path` atomically (temporary file + rename). */
  async writeBmap(path: string): Promise<Bmap> {
    const map = await this.bmap();
    const temporary = join(dirname(path), partialName(basename(path)));
    try {
      await writeFile(temporary, map.text, { flag: 'wx' });
      await rename(temporary, path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      const code = (error as NodeJS.ErrnoException).code;
      throw new PiimgError(code === 'ENOSPC' ? 'ENOSPC' : 'E_IO', `cannot write ${path}: ${(error as Error).message}`, { path }, { cause: error });
    }
    return map;
  }

  /**
   * SHA-256 of the raw base (decompressed), without the changes: the
   * identity a delta names. Computed once per base file and remembered in
   * the cache, keyed by the file's identity.
   */
  async baseSha256(): Promise<string> {
    this.assertOpen();
    return rawSha256(this.rawPath, this.cacheDir);
  }

  /**
   * Writes the changes as a delta file (docs/delta-format.md): the base's
   * identity and the changed chunks, compressed. `applyDelta` on the same
   * base gives back this image byte for byte.
   */
  async saveDelta(path: string): Promise<DeltaHeader> {
    this.assertOpen();
    await this.flushVolumes();
    const sha256 = await this.baseSha256();
    return writeDelta(path, { size: this.base.size, sha256 }, this.overlay.size, this.overlay.changedChunks());
  }

  /**
   * Applies a delta written by saveDelta to this image, which must be opened
   * on the delta's base and have no changes or mounted volumes yet. A delta
   * for another base gives E_DELTA_BASE_MISMATCH; a damaged one E_BAD_DELTA,
   * and then the image is left without changes.
   */
  async applyDelta(path: string): Promise<DeltaHeader> {
    this.assertOpen();
    if (this.overlay.stats.changedChunks > 0 || this.volumes.size > 0) {
      throw new PiimgError('EINVAL', 'applyDelta needs an image without changes or mounted volumes', { path });
    }
    const sha256 = await this.baseSha256();
    try {
      const header = applyDeltaFile(path, this.overlay, (found) => {
        if (found.baseSize !== this.base.size || found.baseSha256 !== sha256) {
          throw new PiimgError(
            'E_DELTA_BASE_MISMATCH',
            `${path} was made for another base image (SHA-256 ${found.baseSha256.slice(0, 16)}..., ${found.baseSize} bytes); ${this.sourcePath} is ${sha256.slice(0, 16)}..., ${this.base.size} bytes`,
            { path, expected: found.baseSha256, actual: sha256 },
          );
        }
      });
      this.tableValue = readPartitionTable(this.overlay, { sectorSize: this.tableValue.sectorSize as 512 | 4096 });
      this.partitionsValue = this.describePartitions();
      return header;
    } catch (error) {
      this.overlay.discard();
      if (error instanceof PiimgError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new PiimgError('ENOENT', `no such delta file: ${path}`, { path }, { cause: error });
      throw new PiimgError('E_IO', `cannot read ${path}: ${(error as Error).message}`, { path }, { cause: error });
    }
  }

  /** Closes the mounted volumes and the base, and drops unsaved changes. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const prepared of [...this.prepared]) await prepared.cancel().catch(() => undefined);
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

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
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
