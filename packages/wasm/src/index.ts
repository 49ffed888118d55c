/**
 * @piimg/wasm: e2fsprogs 1.47.2 (libext2fs, e2fsck, mke2fs) compiled to
 * WebAssembly from Debian's source package by build/build.sh, with an
 * io_manager that calls synchronously into a JavaScript block device.
 *
 * Loading is explicit or lazy: `loadExt2fs()` compiles the modules once
 * (synchronously) and caches them; `load()` is the same behind a promise
 * for callers that prefer to warm up early.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// liblzma (xz-utils) lives in its own module.
export * from './lzma.js';
export * from './zstd.js';

/** The device interface libext2fs reads and writes through (same shape as @piimg/core's BlockDevice). */
export interface Device {
  readonly size: number;
  read(byteOffset: number, length: number): Uint8Array;
  write?(byteOffset: number, data: Uint8Array): void;
  flush?(): void;
}

/** A libext2fs call failed. `errorName` is the symbolic name (`EXT2_ET_FILE_NOT_FOUND`, `ENOSPC`). */
export class Ext2fsCallError extends Error {
  override readonly name = 'Ext2fsCallError';
  constructor(
    readonly errorName: string,
    message: string,
    readonly operation: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${operation}: ${message} (${errorName})`, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

// ---- loading ----

interface EmscriptenModule {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(ptr: number): void;
  UTF8ToString(ptr: number, maxBytes?: number): string;
  callMain(args: string[]): number;
  piimgIo: IoBridge;
  [name: string]: unknown;
}

type Factory = (options: Record<string, unknown>) => unknown;

// The project compiles without the DOM library, where WebAssembly's types
// live; this is the little of it used here.
interface WasmModule {
  readonly __wasmModule?: never;
}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => WasmModule;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  Instance: new (module: WasmModule, imports: Record<string, unknown>) => WasmInstance;
};

const require = createRequire(import.meta.url);

/**
 * A `file:` URL as a path of this platform (or of Windows when `windows` is
 * true). `URL.pathname` is not a path: it keeps `%20` for a space and gives
 * `/C:/...` on Windows.
 */
export function urlToPath(url: URL, options: { windows?: boolean } = {}): string {
  return options.windows === undefined ? fileURLToPath(url) : fileURLToPath(url, { windows: options.windows });
}

/** The directory holding the `.cjs` and `.wasm` files: see {@link setWasmDirectory}. */
let wasmDirectory: string | undefined;

/**
 * Sets the directory that holds this package's `dist/` files (`ext2fs.cjs`,
 * `ext2fs.wasm`, `e2fsck.*`, `mke2fs.*`), for applications bundled into one
 * file, where the package's own location is gone. Call it before the first
 * ext4 operation; `undefined` restores the default. Without it, the
 * `PIIMG_WASM_DIR` environment variable is used, then the package's own
 * `dist/`, then the directory of the running module (files copied next to a
 * bundle).
 */
export function setWasmDirectory(directory: string | URL | undefined): void {
  wasmDirectory = directory instanceof URL ? urlToPath(directory) : directory;
  compiled.clear();
}

/** Where the wasm files are looked for, in order (see {@link setWasmDirectory}). */
export function wasmDirectoryCandidates(): string[] {
  if (wasmDirectory !== undefined) return [wasmDirectory];
  const fromEnv = process.env.PIIMG_WASM_DIR;
  if (fromEnv) return [fromEnv];
  return [urlToPath(new URL('../dist/', import.meta.url)), urlToPath(new URL('./', import.meta.url))];
}

function findWasmDirectory(): string {
  const candidates = wasmDirectoryCandidates();
  const found = candidates.find((dir) => existsSync(join(dir, 'ext2fs.wasm')));
  if (found === undefined) {
    throw new Error(
      `@piimg/wasm: ext2fs.wasm not found in ${candidates.join(' or ')}; ` +
        'set PIIMG_WASM_DIR or call setWasmDirectory() with the directory holding the files of @piimg/wasm/dist',
    );
  }
  return found;
}

interface Compiled {
  factory: Factory;
  module: WasmModule;
}
const compiled = new Map<string, Compiled>();

function compile(name: 'ext2fs' | 'e2fsck' | 'mke2fs'): Compiled {
  let entry = compiled.get(name);
  if (entry === undefined) {
    const dir = findWasmDirectory();
    const factory = require(join(dir, `${name}.cjs`)) as Factory;
    const bytes = readFileSync(join(dir, `${name}.wasm`));
    entry = { factory, module: new WebAssembly.Module(bytes) };
    compiled.set(name, entry);
  }
  return entry;
}

const compiling = new Map<string, Promise<void>>();

/**
 * Compiles a module in the background (WebAssembly.compile works off the main
 * thread), so that its first use, which compiles synchronously otherwise,
 * finds it ready: `piimg inject` starts the checker's compile while it edits.
 * Failures are left to that first use to report.
 */
export function precompile(name: 'ext2fs' | 'e2fsck' | 'mke2fs'): Promise<void> {
  if (compiled.has(name)) return Promise.resolve();
  let pending = compiling.get(name);
  if (pending === undefined) {
    const started = (async () => {
      const dir = findWasmDirectory();
      const module = await WebAssembly.compile(await readFile(join(dir, `${name}.wasm`)));
      // A compile for a directory that setWasmDirectory() has replaced meanwhile is dropped.
      if (!compiled.has(name) && findWasmDirectory() === dir) compiled.set(name, { factory: require(join(dir, `${name}.cjs`)) as Factory, module });
    })();
    pending = started.catch(() => undefined).finally(() => compiling.delete(name));
    compiling.set(name, pending);
  }
  return pending;
}

/**
 * Instantiates a fresh copy synchronously: the glue's own loader would
 * fetch() the .wasm, which Node's global fetch cannot do for files.
 */
function instantiate(
  name: 'ext2fs' | 'e2fsck' | 'mke2fs',
  io: IoBridge,
  print?: (text: string) => void,
  printErr?: (text: string) => void,
  env: Record<string, string> = {},
): EmscriptenModule {
  const { factory, module } = compile(name);
  const options: Record<string, unknown> = {
    piimgIo: io,
    noInitialRun: true,
    // libc copies ENV into environ while the runtime starts, before main: set later, getenv() never sees it.
    // (Only the tools export ENV.)
    preRun: Object.keys(env).length > 0 ? [(runtime: { ENV: Record<string, string> }) => Object.assign(runtime.ENV, env)] : [],
    print: print ?? (() => {}),
    printErr: printErr ?? (() => {}),
    instantiateWasm(imports: Record<string, unknown>, receive: (instance: WasmInstance, module: WasmModule) => void) {
      const instance = new WebAssembly.Instance(module, imports);
      receive(instance, module);
      return instance.exports;
    },
  };
  // The factory returns a promise, but with a synchronous instantiateWasm the
  // runtime is ready when it returns; the options object becomes the module.
  const ready = factory(options) as Promise<unknown>;
  ready.then(undefined, () => {});
  if (typeof options._malloc !== 'function') throw new Error(`${name}.wasm did not initialise synchronously`);
  return options as unknown as EmscriptenModule;
}

// ---- the io bridge (see build/src/library.js) ----

class IoBridge {
  readonly devices = new Map<number, { device: Device; writable: boolean }>();
  lastError: unknown;
  private nextId = 1;

  add(device: Device, writable: boolean): number {
    const id = this.nextId++;
    this.devices.set(id, { device, writable });
    return id;
  }
  remove(id: number): void {
    this.devices.delete(id);
  }
  private get(id: number): { device: Device; writable: boolean } {
    const entry = this.devices.get(id);
    if (entry === undefined) throw new Error(`no device ${id}`);
    return entry;
  }
  size(id: number): number {
    return this.get(id).device.size;
  }
  read(id: number, byteOffset: number, length: number): Uint8Array {
    return this.get(id).device.read(byteOffset, length);
  }
  write(id: number, byteOffset: number, data: Uint8Array): void {
    const { device, writable } = this.get(id);
    if (!writable || device.write === undefined) throw new Error('write to a device opened read-only');
    device.write(byteOffset, data);
  }
  flush(id: number): void {
    const { device, writable } = this.get(id);
    if (writable) device.flush?.();
  }
  takeError(): unknown {
    const error = this.lastError;
    this.lastError = undefined;
    return error;
  }
}

// ---- libext2fs through the shim ----

export interface InodeStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  atime: { sec: number; nsec: number };
  mtime: { sec: number; nsec: number };
  ctime: { sec: number; nsec: number };
  crtime?: { sec: number; nsec: number };
  flags: number;
}

export interface RawDirEntry {
  ino: number;
  /** ext2 directory entry file type (EXT2_FT_*), 0 when the filesystem does not record it. */
  fileType: number;
  name: Uint8Array;
}

export interface Time {
  sec: number;
  nsec: number;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Time;
  mtime?: Time;
  /** The filesystem clock when absent. */
  ctime?: Time;
}

export interface FsInfo {
  blockSize: number;
  blocksCount: number;
  freeBlocksCount: number;
  inodesCount: number;
  freeInodesCount: number;
}

type Fn = (...args: number[]) => number;

/** The loaded libext2fs module. One instance serves every open filesystem. */
export class Ext2fs {
  readonly io = new IoBridge();
  readonly wasm: EmscriptenModule;
  /** Scratch words for out-parameters. */
  private readonly scratch: number;

  constructor() {
    this.wasm = instantiate('ext2fs', this.io);
    this.scratch = this.wasm._malloc(256);
  }

  /** Set once WebAssembly trapped (a libext2fs abort or fault): the instance is not used again. */
  broken = false;
  private readonly fns = new Map<string, Fn>();

  /**
   * A shim function. Errors from the device never arrive here (library.js
   * keeps them); anything thrown is a trap inside WebAssembly, after which
   * the instance's state cannot be trusted: it is marked broken and
   * loadExt2fs() makes a new one.
   */
  fn(name: string): Fn {
    let wrapped = this.fns.get(name);
    if (wrapped === undefined) {
      const raw = this.wasm[`_piimg_${name}`] as Fn;
      wrapped = (...args: number[]): number => {
        if (this.broken) throw new Ext2fsCallError('WASM_TRAP', 'libext2fs stopped after an earlier fault; mount again', name);
        try {
          return raw(...args);
        } catch (error) {
          this.broken = true;
          throw new Ext2fsCallError('WASM_TRAP', `libext2fs faulted: ${error instanceof Error ? error.message : String(error)}`, name, {
            cause: error,
          });
        }
      };
      this.fns.set(name, wrapped);
    }
    return wrapped;
  }

  /** Heap views are re-created each time: memory growth replaces the buffer. */
  get heap(): Uint8Array {
    return this.wasm.HEAPU8;
  }

  u32(ptr: number): number {
    return new DataView(this.heap.buffer).getUint32(ptr, true);
  }
  i32(ptr: number): number {
    return new DataView(this.heap.buffer).getInt32(ptr, true);
  }
  outPtr(index = 0): number {
    return this.scratch + index * 8;
  }
  doubles(count: number): Float64Array {
    return new Float64Array(this.heap.buffer, this.scratch + 64, count);
  }

  /** Copies bytes into a fresh malloc'd block (NUL-terminated); the caller frees it. */
  alloc(bytes: Uint8Array, nulTerminate = true): number {
    const ptr = this.wasm._malloc(bytes.length + (nulTerminate ? 1 : 0));
    if (ptr === 0) throw new Ext2fsCallError('ENOMEM', 'out of WebAssembly memory', 'malloc');
    this.heap.set(bytes, ptr);
    if (nulTerminate) this.heap[ptr + bytes.length] = 0;
    return ptr;
  }

  withCString<T>(text: string | Uint8Array, body: (ptr: number) => T): T {
    const ptr = this.alloc(typeof text === 'string' ? new TextEncoder().encode(text) : text);
    try {
      return body(ptr);
    } finally {
      this.wasm._free(ptr);
    }
  }

  /** Throws Ext2fsCallError for a non-zero errcode_t, with the device's own error as cause. */
  check(code: number, operation: string): void {
    if (code === 0) return;
    const name = this.wasm.UTF8ToString(this.fn('error_name')(code));
    const message = this.wasm.UTF8ToString(this.fn('error_message')(code));
    const cause = this.io.takeError();
    throw new Ext2fsCallError(name, message, operation, cause === undefined ? {} : { cause });
  }

  /** Opens the filesystem on `device`. Read-only unless `writable`; a read-only open never writes. */
  open(device: Device, options: { writable: boolean }): Ext2Filesystem {
    const writable = options.writable && device.write !== undefined;
    const id = this.io.add(device, writable);
    try {
      const handle = this.withCString(`piimg:${id}`, (name) => {
        this.check(this.fn('fs_open')(name, writable ? 1 : 0, this.outPtr()), 'open');
        return this.u32(this.outPtr());
      });
      return new Ext2Filesystem(this, handle, id, writable);
    } catch (error) {
      this.io.remove(id);
      throw error;
    }
  }
}

let shared: Ext2fs | undefined;

/** The shared libext2fs instance, created on first use. */
export function loadExt2fs(): Ext2fs {
  if (shared === undefined || shared.broken) shared = new Ext2fs();
  return shared;
}

/** Loads and compiles every module ahead of use. */
export async function load(): Promise<Ext2fs> {
  const lib = loadExt2fs();
  compile('e2fsck');
  compile('mke2fs');
  return lib;
}

/** Chunk size for file data moved through WebAssembly memory; Ext2Writer hands data to libext2fs (and allocates) in steps of this size. */
export const CHUNK_BYTES = 1 << 20;

export class Ext2Filesystem {
  private closed = false;

  constructor(
    readonly lib: Ext2fs,
    private readonly handle: number,
    private readonly deviceId: number,
    readonly writable: boolean,
  ) {}

  private call(name: string, operation: string, ...args: number[]): void {
    if (this.closed) throw new Ext2fsCallError('EXT2_ET_MAGIC_EXT2FS_FILSYS', 'filesystem is closed', operation);
    this.lib.check(this.lib.fn(name)(this.handle, ...args), operation);
  }

  setNow(time: Time): void {
    this.lib.fn('fs_set_now')(this.handle, time.sec, time.nsec);
  }

  info(): FsInfo {
    this.lib.fn('fs_info')(this.handle, this.lib.outPtr(8));
    const out = this.lib.doubles(5);
    return { blockSize: out[0]!, blocksCount: out[1]!, freeBlocksCount: out[2]!, inodesCount: out[3]!, freeInodesCount: out[4]! };
  }

  /** Resolves an absolute path from the root; intermediate symlinks are followed, the last one only with `follow`. */
  namei(path: Uint8Array, follow: boolean): number {
    return this.lib.withCString(path, (ptr) => {
      this.call('namei', 'namei', ptr, follow ? 1 : 0, this.lib.outPtr());
      return this.lib.u32(this.lib.outPtr());
    });
  }

  /** The inode of `name` in directory `dir`, or 0 when there is none. */
  lookup(dir: number, name: Uint8Array): number {
    return this.lib.withCString(name, (ptr) => {
      const code = this.lib.fn('lookup')(this.handle, dir, ptr, this.lib.outPtr());
      if (code !== 0) {
        const errorName = this.lib.wasm.UTF8ToString(this.lib.fn('error_name')(code));
        if (errorName === 'EXT2_ET_FILE_NOT_FOUND') {
          this.notFoundCode = code;
          return 0;
        }
        this.lib.check(code, 'lookup');
      }
      return this.lib.u32(this.lib.outPtr());
    });
  }

  /** The errcode_t of EXT2_ET_FILE_NOT_FOUND, once a lookup has met it. */
  private notFoundCode = 0;

  /**
   * The error `operation` (namei) gives for a path with a missing component,
   * for callers that found the missing name with lookup() and need not walk
   * the path again. Undefined before any lookup() has returned 0.
   */
  notFoundError(operation: string): Ext2fsCallError | undefined {
    if (this.notFoundCode === 0) return undefined;
    const message = this.lib.wasm.UTF8ToString(this.lib.fn('error_message')(this.notFoundCode));
    return new Ext2fsCallError('EXT2_ET_FILE_NOT_FOUND', message, operation);
  }

  stat(ino: number): InodeStat {
    this.call('stat', 'stat', ino, this.lib.outPtr(8));
    const o = this.lib.doubles(15);
    const stat: InodeStat = {
      mode: o[0]!,
      uid: o[1]!,
      gid: o[2]!,
      size: o[3]!,
      links: o[4]!,
      atime: { sec: o[5]!, nsec: o[6]! },
      mtime: { sec: o[7]!, nsec: o[8]! },
      ctime: { sec: o[9]!, nsec: o[10]! },
      flags: o[14]!,
    };
    if (o[13]) stat.crtime = { sec: o[11]!, nsec: o[12]! };
    return stat;
  }

  setattr(ino: number, attr: SetAttr): void {
    const mask =
      (attr.mode !== undefined ? 1 : 0) |
      (attr.uid !== undefined ? 2 : 0) |
      (attr.gid !== undefined ? 4 : 0) |
      (attr.atime ? 8 : 0) |
      (attr.mtime ? 16 : 0) |
      (attr.ctime ? 32 : 0);
    this.call(
      'setattr',
      'setattr',
      ino,
      mask,
      attr.mode ?? 0,
      attr.uid ?? 0,
      attr.gid ?? 0,
      attr.atime?.sec ?? 0,
      attr.atime?.nsec ?? 0,
      attr.mtime?.sec ?? 0,
      attr.mtime?.nsec ?? 0,
      attr.ctime?.sec ?? 0,
      attr.ctime?.nsec ?? 0,
    );
  }

  create(dir: number, name: Uint8Array, mode: number, uid: number, gid: number): number {
    return this.lib.withCString(name, (ptr) => {
      this.call('create', 'create', dir, ptr, mode, uid, gid, this.lib.outPtr());
      return this.lib.u32(this.lib.outPtr());
    });
  }

  mkdir(dir: number, name: Uint8Array, mode: number, uid: number, gid: number): number {
    return this.lib.withCString(name, (ptr) => {
      this.call('mkdir', 'mkdir', dir, ptr, mode, uid, gid, this.lib.outPtr());
      return this.lib.u32(this.lib.outPtr());
    });
  }

  symlink(dir: number, name: Uint8Array, target: Uint8Array, uid: number, gid: number): number {
    return this.lib.withCString(name, (namePtr) =>
      this.lib.withCString(target, (targetPtr) => {
        this.call('symlink', 'symlink', dir, namePtr, targetPtr, uid, gid, this.lib.outPtr());
        return this.lib.u32(this.lib.outPtr());
      }),
    );
  }

  readlink(ino: number, maxBytes: number): Uint8Array {
    const buf = this.lib.wasm._malloc(maxBytes + 1);
    try {
      this.call('readlink', 'readlink', ino, buf, maxBytes, this.lib.outPtr());
      const length = this.lib.i32(this.lib.outPtr());
      return this.lib.heap.slice(buf, buf + length);
    } finally {
      this.lib.wasm._free(buf);
    }
  }

  link(dir: number, name: Uint8Array, ino: number): void {
    this.lib.withCString(name, (ptr) => this.call('link', 'link', dir, ptr, ino));
  }

  unlink(dir: number, name: Uint8Array): void {
    this.lib.withCString(name, (ptr) => this.call('unlink', 'unlink', dir, ptr));
  }

  replaceEntry(dir: number, name: Uint8Array, ino: number): void {
    this.lib.withCString(name, (ptr) => this.call('replace_entry', 'rename', dir, ptr, ino));
  }

  setDotdot(dir: number, parent: number): void {
    this.call('set_dotdot', 'rename', dir, parent);
  }

  /** Changes the link count; the inode is freed when it reaches zero. Returns the new count. */
  adjustLinks(ino: number, delta: number): number {
    this.call('adjust_links', 'link count', ino, delta, this.lib.outPtr());
    return this.lib.i32(this.lib.outPtr());
  }

  release(ino: number): void {
    this.call('release', 'release', ino);
  }

  readdir(dir: number): RawDirEntry[] {
    this.call('readdir', 'readdir', dir, this.lib.outPtr(), this.lib.outPtr(1));
    const ptr = this.lib.u32(this.lib.outPtr());
    const length = this.lib.i32(this.lib.outPtr(1));
    if (ptr === 0) return [];
    try {
      const bytes = this.lib.heap.slice(ptr, ptr + length);
      const view = new DataView(bytes.buffer);
      const entries: RawDirEntry[] = [];
      for (let at = 0; at + 6 <= length; ) {
        const nameLength = bytes[at + 5]!;
        entries.push({ ino: view.getUint32(at, true), fileType: bytes[at + 4]!, name: bytes.slice(at + 6, at + 6 + nameLength) });
        at += 6 + nameLength;
      }
      return entries;
    } finally {
      this.lib.fn('free')(ptr);
    }
  }

  /**
   * Fills `target` with the file's bytes from `offset` on; returns how many
   * were read (fewer at the end of the file). Extent-mapped data is read in
   * runs of contiguous blocks.
   */
  readInto(ino: number, offset: number, target: Uint8Array): number {
    const buf = this.lib.wasm._malloc(CHUNK_BYTES);
    if (buf === 0) throw new Ext2fsCallError('ENOMEM', 'out of WebAssembly memory', 'malloc');
    try {
      let done = 0;
      while (done < target.length) {
        const want = Math.min(CHUNK_BYTES, target.length - done);
        this.call('read_at', 'read', ino, offset + done, buf, want, CHUNK_BYTES, this.lib.outPtr(2));
        const got = this.lib.i32(this.lib.outPtr(2));
        if (got <= 0) break;
        target.set(this.lib.heap.subarray(buf, buf + got), done);
        done += got;
      }
      return done;
    } finally {
      this.lib.wasm._free(buf);
    }
  }

  /**
   * A sequential writer appending to `ino` from byte `offset`. Data is staged
   * in WebAssembly memory and handed over in block-aligned 1 MiB pieces, so
   * whole runs of blocks are allocated and written at once.
   */
  openWriter(ino: number, offset = 0): Ext2Writer {
    return new Ext2Writer(this.lib, this.handle, ino, offset);
  }

  /** Sets the length of a file (frees the blocks past it). */
  truncate(ino: number, size: number): void {
    this.call('file_open', 'open file', ino, 1, this.lib.outPtr());
    const file = this.lib.u32(this.lib.outPtr());
    let failed = true;
    try {
      this.lib.check(this.lib.fn('file_truncate')(file, size), 'truncate');
      failed = false;
    } finally {
      // Closed even after a failed truncate; its own failure is reported only if truncate succeeded.
      const closed = this.lib.fn('file_close')(file, 1);
      if (!failed) this.lib.check(closed, 'close file');
    }
  }

  /** Writes superblock, descriptors and bitmaps, then flushes the device. */
  flush(): void {
    this.call('fs_flush', 'flush');
  }

  /** Flushes (when writable) and frees the filesystem. */
  close(): void {
    if (this.closed) return;
    try {
      this.call('fs_close', 'close');
    } finally {
      this.closed = true;
      this.lib.io.remove(this.deviceId);
    }
  }
}

export class Ext2Writer {
  private buffer: number;
  private fill = 0;

  constructor(
    private readonly lib: Ext2fs,
    private readonly fsHandle: number,
    private readonly ino: number,
    private offset: number,
  ) {
    this.buffer = lib.wasm._malloc(CHUNK_BYTES);
    if (this.buffer === 0) throw new Ext2fsCallError('ENOMEM', 'out of WebAssembly memory', 'malloc');
  }

  /** Bytes accepted so far, counted from the start offset. */
  get position(): number {
    return this.offset + this.fill;
  }

  private flushStage(): void {
    if (this.fill === 0) return;
    this.lib.check(this.lib.fn('write_at')(this.fsHandle, this.ino, this.offset, this.buffer, this.fill), 'write');
    this.offset += this.fill;
    this.fill = 0;
  }

  write(data: Uint8Array): void {
    if (this.buffer === 0) throw new Ext2fsCallError('EXT2_ET_MAGIC_EXT2_FILE', 'writer is closed', 'write');
    for (let at = 0; at < data.length; ) {
      const count = Math.min(CHUNK_BYTES - this.fill, data.length - at);
      this.lib.heap.set(data.subarray(at, at + count), this.buffer + this.fill);
      this.fill += count;
      at += count;
      if (this.fill === CHUNK_BYTES) this.flushStage();
    }
  }

  /** Writes what is staged and releases the buffer; `abort` drops it instead. */
  close(options: { abort?: boolean } = {}): void {
    if (this.buffer === 0) return;
    try {
      if (!options.abort) this.flushStage();
    } finally {
      this.lib.wasm._free(this.buffer);
      this.buffer = 0;
    }
  }
}

// ---- e2fsck and mke2fs ----

export interface ToolResult {
  /** Exit status as the native tool gives it (e2fsck: 0 clean, 1 fixed, 4 errors left, 8 operational error). */
  status: number;
  stdout: string;
  stderr: string;
}

function runTool(
  name: 'e2fsck' | 'mke2fs',
  device: Device,
  writable: boolean,
  args: (deviceName: string) => string[],
  env: Record<string, string> = {},
): ToolResult {
  const io = new IoBridge();
  const id = io.add(device, writable);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const wasm = instantiate(
    name,
    io,
    (text) => stdout.push(text),
    (text) => stderr.push(text),
    env,
  );
  let status: number;
  try {
    status = wasm.callMain(args(`piimg:${id}`));
  } catch (error) {
    const code = (error as { status?: unknown }).status;
    if (typeof code === 'number') {
      status = code;
    } else {
      // A trap inside the tool (hostile input can make it abort): report it
      // as e2fsck's "operational error" rather than crash the caller.
      status = 8;
      stderr.push(`${name} faulted: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const ioError = io.takeError();
  if (ioError !== undefined) stderr.push(`device error: ${ioError instanceof Error ? ioError.message : String(ioError)}`);
  return { status, stdout: stdout.join('\n'), stderr: stderr.join('\n') };
}

/**
 * Runs e2fsck on the device. Without `fix` it runs `-fn` and opens the device
 * read-only: nothing is ever written. With `fix` it runs `-fy`.
 */
export function e2fsck(device: Device, options: { fix?: boolean; extraArgs?: string[] } = {}): ToolResult {
  const fix = options.fix === true;
  return runTool('e2fsck', device, fix, (name) => [fix ? '-fy' : '-fn', ...(options.extraArgs ?? []), name]);
}

/**
 * Runs mke2fs with the given options over the whole device (the size, in
 * KiB, is passed on the command line: mke2fs insists on a size argument for
 * anything that is not an existing file). `env` entries are visible to mke2fs through getenv(),
 * for example SOURCE_DATE_EPOCH for fixed timestamps.
 */
export function mke2fs(device: Device, args: string[], options: { env?: Record<string, string> } = {}): ToolResult {
  return runTool('mke2fs', device, true, (name) => [...args, name, `${Math.floor(device.size / 1024)}k`], options.env ?? {});
}
