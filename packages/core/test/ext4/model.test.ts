import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/device/memory.js';
import { isPiimgError } from '../../src/errors.js';
import { mountExt4, type Ext4Volume } from '../../src/fs/ext4/index.js';
import { assertClean, cleanupWorkDir, fixtures, haveOracles, makeImage } from './support.js';

afterAll(cleanupWorkDir);

/** A plain in-memory filesystem: the reference the volume is checked against. */
type Node = { type: 'file'; data: Uint8Array; mode: number } | { type: 'dir' } | { type: 'symlink'; target: string };

class Model {
  readonly nodes = new Map<string, Node>([['/', { type: 'dir' }]]);

  private parentError(path: string): string | undefined {
    const parts = path.split('/').filter(Boolean);
    let here = '';
    for (let i = 0; i < parts.length - 1; i++) {
      here += '/' + parts[i];
      const node = this.nodes.get(here);
      if (node === undefined) return 'ENOENT';
      if (node.type === 'file') return 'ENOTDIR';
      // Every symlink in this model dangles.
      if (node.type === 'symlink') return 'ENOENT';
    }
    return undefined;
  }

  private children(path: string): string[] {
    const prefix = path === '/' ? '/' : path + '/';
    return [...this.nodes.keys()].filter((p) => p !== path && p.startsWith(prefix));
  }

  writeFile(path: string, data: Uint8Array): string {
    const error = this.parentError(path);
    if (error) return error;
    const node = this.nodes.get(path);
    if (node?.type === 'dir') return 'EISDIR';
    if (node?.type === 'symlink') return 'ENOENT';
    this.nodes.set(path, { type: 'file', data, mode: node?.type === 'file' ? node.mode : 0o644 });
    return 'OK';
  }

  mkdir(path: string): string {
    const error = this.parentError(path);
    if (error) return error;
    if (this.nodes.has(path)) return 'EEXIST';
    this.nodes.set(path, { type: 'dir' });
    return 'OK';
  }

  symlink(path: string): string {
    const error = this.parentError(path);
    if (error) return error;
    if (this.nodes.has(path)) return 'EEXIST';
    this.nodes.set(path, { type: 'symlink', target: 'nowhere' + path });
    return 'OK';
  }

  rm(path: string): string {
    const error = this.parentError(path);
    if (error) return error;
    if (!this.nodes.has(path)) return 'ENOENT';
    for (const child of this.children(path)) this.nodes.delete(child);
    this.nodes.delete(path);
    return 'OK';
  }

  chmod(path: string, mode: number): string {
    const error = this.parentError(path);
    if (error) return error;
    const node = this.nodes.get(path);
    if (node === undefined || node.type === 'symlink') return 'ENOENT';
    if (node.type === 'file') node.mode = mode;
    return 'OK';
  }

  rename(from: string, to: string): string {
    const fromError = this.parentError(from);
    if (fromError) return fromError;
    const node = this.nodes.get(from);
    if (node === undefined) return 'ENOENT';
    const toError = this.parentError(to);
    if (toError) return toError;
    if (from === to) return 'OK';
    const existing = this.nodes.get(to);
    if (node.type === 'dir' && (to + '/').startsWith(from + '/')) return 'EINVAL';
    if (existing) {
      if (node.type === 'dir' && existing.type !== 'dir') return 'ENOTDIR';
      if (node.type !== 'dir' && existing.type === 'dir') return 'EISDIR';
      if (existing.type === 'dir' && this.children(to).length > 0) return 'ENOTEMPTY';
    }
    const moved = [from, ...this.children(from)];
    const entries = moved.map((p) => [p, this.nodes.get(p)!] as const);
    for (const [p] of entries) this.nodes.delete(p);
    this.nodes.delete(to);
    for (const [p, n] of entries) this.nodes.set(to + p.slice(from.length), n);
    return 'OK';
  }
}

const names = ['a', 'b', 'c'];
const pathArb = fc
  .oneof(
    { weight: 2, arbitrary: fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 2 }) },
    { weight: 1, arbitrary: fc.array(fc.constantFrom(...names), { minLength: 3, maxLength: 3 }) },
  )
  .map((parts) => '/' + parts.join('/'));
/** Every run starts from this tree, so operations meet existing files and directories. */
const setup = [
  { kind: 'mkdir' as const, path: '/a' },
  { kind: 'mkdir' as const, path: '/a/b' },
  { kind: 'mkdir' as const, path: '/b' },
  { kind: 'writeFile' as const, path: '/a/c', size: 5000, seed: 1 },
  { kind: 'writeFile' as const, path: '/a/b/a', size: 10, seed: 2 },
  { kind: 'symlink' as const, path: '/c' },
];
const op = fc.oneof(
  fc.record({ kind: fc.constant('writeFile' as const), path: pathArb, size: fc.integer({ min: 0, max: 20_000 }), seed: fc.integer() }),
  fc.record({ kind: fc.constant('mkdir' as const), path: pathArb }),
  fc.record({ kind: fc.constant('symlink' as const), path: pathArb }),
  fc.record({ kind: fc.constant('rm' as const), path: pathArb }),
  fc.record({ kind: fc.constant('chmod' as const), path: pathArb, mode: fc.integer({ min: 0, max: 0o777 }) }),
  fc.record({ kind: fc.constant('rename' as const), path: pathArb, to: pathArb }),
);

function content(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (seed + i * 31) & 0xff;
  return out;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'OK';
  } catch (error) {
    if (isPiimgError(error)) return error.code;
    throw error;
  }
}

async function compareTree(volume: Ext4Volume, model: Model): Promise<void> {
  const seen = new Set<string>();
  async function walk(dir: string): Promise<void> {
    for (const entry of await volume.readdir(dir)) {
      const path = (dir === '/' ? '' : dir) + '/' + entry.name;
      if (path === '/lost+found') continue;
      seen.add(path);
      const node = model.nodes.get(path);
      expect(node, `unexpected ${path}`).toBeDefined();
      if (node!.type === 'dir') {
        expect(entry.type).toBe('directory');
        await walk(path);
      } else if (node!.type === 'file') {
        expect(entry.type).toBe('file');
        expect(await volume.readFile(path)).toEqual(node!.data);
        expect((await volume.stat(path)).mode & 0o7777).toBe(node!.mode);
      } else {
        expect(entry.type).toBe('symlink');
        expect(await volume.readlink(path)).toBe(node!.target);
      }
    }
  }
  await walk('/');
  expect([...seen].sort()).toEqual([...model.nodes.keys()].filter((p) => p !== '/').sort());
}

for (const fixture of [fixtures[0]!, fixtures[5]!]) {
  describe.skipIf(!haveOracles)(`random operations against a model (${fixture.name})`, () => {
    const base = haveOracles ? makeImage(fixture, 8) : new Uint8Array(0);
    it('every result matches the model and the filesystem stays clean', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
          const device = new MemoryDevice(base.slice());
          const volume = await mountExt4(device, { now: () => new Date('2022-02-02T00:00:00Z') });
          const model = new Model();
          try {
            for (const o of [...setup, ...ops]) {
              let expected: string;
              let actual: string;
              switch (o.kind) {
                case 'writeFile': {
                  const data = content(o.size, o.seed);
                  expected = model.writeFile(o.path, data);
                  actual = await codeOf(volume.writeFile(o.path, data));
                  break;
                }
                case 'mkdir':
                  expected = model.mkdir(o.path);
                  actual = await codeOf(volume.mkdir(o.path));
                  break;
                case 'symlink':
                  expected = model.symlink(o.path);
                  actual = await codeOf(volume.symlink('nowhere' + o.path, o.path));
                  break;
                case 'rm':
                  expected = model.rm(o.path);
                  actual = await codeOf(volume.rm(o.path, { recursive: true }));
                  break;
                case 'chmod':
                  expected = model.chmod(o.path, o.mode);
                  actual = await codeOf(volume.chmod(o.path, o.mode));
                  break;
                case 'rename':
                  expected = model.rename(o.path, o.to);
                  actual = await codeOf(volume.rename(o.path, o.to));
                  break;
              }
              expect(actual, `${JSON.stringify({ ...o, seed: undefined })}`).toBe(expected);
            }
            await compareTree(volume, model);
          } finally {
            await volume.close();
          }
          await assertClean(device.bytes);
        }),
        { numRuns: 60 },
      );
    });
  });
}
