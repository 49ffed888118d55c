// piimg serve: the HTTP image service, started as users start it (the built
// CLI in its own process), driven over loopback.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '@piimg/core';
import { zstdDecompress } from '@piimg/wasm';
import { rawFixture, testCacheDir } from './support/fixtures.js';
import { startService, type RunningService } from './support/service.js';
import { hasTool } from './support/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-serve-'));
const jobsDir = join(dir, 'jobs');
const sourceRoot = join(dir, 'sources');
let service: RunningService;
let base = '';

beforeAll(async () => {
  base = await rawFixture('pi-bookworm', join(dir, 'base'));
  mkdirSync(join(sourceRoot, 'agent'), { recursive: true });
  writeFileSync(join(sourceRoot, 'agent', 'run.sh'), '#!/bin/sh\necho agent\n');
  service = await startService(['--base', `bookworm=${base}`, '--workers', '2', '--jobs-dir', jobsDir, '--source-root', sourceRoot, '--max-body', '65536'], {
    PIIMG_CACHE_DIR: testCacheDir,
    SERVER_SECRET: 'do-not-leak',
  });
});
afterAll(async () => {
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function json(response: Response | Promise<Response>): Promise<any> {
  return (await response).json();
}

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${service.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function deviceOf(bytes: Uint8Array, name: string): Promise<{ hostname: string; clean: boolean }> {
  const path = join(dir, `${name}.img`);
  writeFileSync(path, bytes);
  await using image = await openImage(path, { cacheDir: testCacheDir });
  const clean = (await image.verify()).every((f) => f.clean);
  const root = await image.mount('root');
  const hostname = new TextDecoder().decode(await root.readFile('/etc/hostname')).trim();
  rmSync(path, { force: true });
  return { hostname, clean };
}

describe('piimg serve', () => {
  it('answers health and readiness', async () => {
    expect((await fetch(`${service.url}/health`)).status).toBe(200);
    expect(await json(fetch(`${service.url}/ready`))).toMatchObject({ ready: true });
  });

  // Linux only: elsewhere a thread's nice value is its process's, and the service leaves it.
  it.runIf(process.platform === 'linux')('runs its worker threads at nice 10 and its HTTP thread as started', async () => {
    const pid = service.process.pid!;
    const nice = () =>
      readdirSync(`/proc/${pid}/task`).map((tid) => {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        // proc(5): field 19 is nice; fields are counted after the ")" that ends the name.
        return { tid: Number(tid), nice: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]) };
      });
    let threads = nice();
    for (let i = 0; i < 100 && threads.filter((t) => t.nice >= 10).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      threads = nice();
    }
    // The service inherits this process's nice value; its workers go to 10 unless already above.
    const started = getPriority();
    expect(threads.filter((t) => t.nice === Math.max(10, started))).toHaveLength(started >= 10 ? threads.length : 2);
    expect(threads.find((t) => t.tid === pid)?.nice).toBe(started);
  });

  it('streams a verified device image for a JSON configuration', async () => {
    const response = await post('/images?base=bookworm', { hostname: 'svc-0001', ssh: { enabled: true, passwordAuthentication: false } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    const bytes = new Uint8Array(await response.arrayBuffer());
    expect(bytes.length).toBe(Number(response.headers.get('content-length')));
    expect(await deviceOf(bytes, 'stream')).toEqual({ hostname: 'svc-0001', clean: true });
  });

  it('streams gzip members that gunzip to the raw image', async () => {
    const response = await post('/images?base=bookworm&format=img.gz', { hostname: 'svc-gz' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/gzip');
    const raw = gunzipSync(Buffer.from(await response.arrayBuffer()));
    expect(await deviceOf(raw, 'gz')).toEqual({ hostname: 'svc-gz', clean: true });
  });

  it('streams zstd frames that zstd -dc and piimg decode to the raw image', async () => {
    // Its own connection, closed after the response: the checks below take seconds, and a pooled
    // socket left idle that long can be closed by the server just as the next test reuses it.
    const { status, type, zst } = await new Promise<{ status: number; type: string; zst: Uint8Array }>((resolve, reject) => {
      const req = request(`${service.url}/images?base=bookworm&format=img.zst`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', connection: 'close' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), zst: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ hostname: 'svc-zst' }));
    });
    expect(status).toBe(200);
    expect(type).toBe('application/zstd');
    const raw = zstdDecompress(zst, { maxOutput: 2 ** 31 });
    expect(await deviceOf(raw, 'zst')).toEqual({ hostname: 'svc-zst', clean: true });
    // piimg opens the .img.zst itself too (decompressed into the cache).
    expect(await deviceOf(zst, 'zst-input')).toEqual({ hostname: 'svc-zst', clean: true });
    if (hasTool('zstd')) {
      const decoded = spawnSync('zstd', ['-dc'], { input: zst, maxBuffer: 2 ** 31 });
      expect(decoded.status, String(decoded.stderr)).toBe(0);
      expect(Buffer.compare(decoded.stdout, raw)).toBe(0);
    }
  });

  it('reads files[].source only below --source-root', async () => {
    const ok = await post('/images?base=bookworm', { hostname: 'svc-files', files: [{ source: 'agent', target: '/opt/agent' }] });
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
    for (const source of ['../base/pi-bookworm.img', '/etc/passwd']) {
      const refused = await post('/images?base=bookworm', { hostname: 'svc-files', files: [{ source, target: '/opt/x' }] });
      expect(refused.status).toBe(400);
      expect((await json(refused)).error.code).toBe('E_CONFIG');
    }
  });

  it('rejects bad requests with JSON errors, and never reads the server environment', async () => {
    const cases: [string, unknown, number, string][] = [
      ['/images?base=nope', { hostname: 'x' }, 404, 'E_NO_BASE'],
      ['/images?base=bookworm&format=img.rar', { hostname: 'x' }, 400, 'E_USAGE'],
      ['/images?base=bookworm', '{not json', 400, 'E_CONFIG'],
      ['/images?base=bookworm', { hostname: 'not_a_hostname!' }, 400, 'E_CONFIG'],
      ['/images?base=bookworm', { hostname: '{{env.SERVER_SECRET}}' }, 400, 'E_CONFIG'],
      ['/images?base=bookworm', { hostname: 'x', note: 'a'.repeat(70_000) }, 413, 'E_TOO_LARGE'],
      ['/nowhere', {}, 404, 'E_NOT_FOUND'],
    ];
    for (const [path, body, status, code] of cases) {
      const response = await post(path, body);
      const payload = await json(response);
      expect([path, response.status, payload.error?.code]).toEqual([path, status, code]);
      expect(JSON.stringify(payload)).not.toContain('do-not-leak');
    }
  });

  it('runs background jobs and serves their images', async () => {
    const created = await post('/jobs?base=bookworm', { hostname: 'svc-job' });
    expect(created.status).toBe(202);
    const { id } = await json(created);
    let state = 'queued';
    for (let i = 0; i < 600 && (state === 'queued' || state === 'running'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = (await json(fetch(`${service.url}/jobs/${id}`))).state;
    }
    expect(state).toBe('done');
    const image = await fetch(`${service.url}/jobs/${id}/image`);
    expect(image.status).toBe(200);
    expect(await deviceOf(new Uint8Array(await image.arrayBuffer()), 'job')).toEqual({ hostname: 'svc-job', clean: true });
    expect(readdirSync(jobsDir).filter((name) => name.endsWith('.piimg-partial'))).toEqual([]);
    expect((await fetch(`${service.url}/jobs/00000000-0000-4000-8000-000000000000`)).status).toBe(404);
  });

  it('cancels an image whose client goes away, and goes on serving', async () => {
    const before = await json(fetch(`${service.url}/metrics`));
    await new Promise<void>((resolve, reject) => {
      const req = request(`${service.url}/images?base=bookworm`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (error) => ((error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(error)));
      req.end(JSON.stringify({ hostname: 'svc-gone' }));
    });
    let after = before;
    for (let i = 0; i < 100 && after.cancelled === before.cancelled; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await json(fetch(`${service.url}/metrics`));
    }
    expect(after.cancelled).toBe(before.cancelled + 1);
    // The worker is free again: the next image comes.
    const next = await post('/images?base=bookworm', { hostname: 'svc-next' });
    expect(next.status).toBe(200);
    expect((await next.arrayBuffer()).byteLength).toBeGreaterThan(0);
    expect((await json(fetch(`${service.url}/metrics`))).running).toBe(0);
  });

  it('logs no configuration content', () => {
    const text = JSON.stringify(service.logs);
    expect(text).not.toContain('svc-0001');
    expect(text).not.toContain('do-not-leak');
    expect(service.logs.some((entry) => entry.msg === 'image' && entry.outcome === 'done')).toBe(true);
  });

  it('stops gracefully on SIGTERM: the running job finishes with a verified image, nothing partial is left', async () => {
    const { id } = await json(post('/jobs?base=bookworm', { hostname: 'svc-last' }));
    await jobState(service, id, ['running', 'done']);
    expect(await service.stop('SIGTERM')).toBe(0);
    // Within the 30 s grace period a job of a few seconds finishes: logged done, its image whole.
    expect(await settled(service, id, jobsDir, 'img')).toBe('done');
    expect(await deviceOf(readFileSync(join(jobsDir, `${id}.img`)), 'last')).toEqual({ hostname: 'svc-last', clean: true });
  });

  it('stops on SIGTERM with --grace 0: the running job is reported cancelled, and no file of it is left', async () => {
    const jobs = join(dir, 'jobs-grace-0');
    const quick = await startService(['--base', `bookworm=${base}`, '--workers', '1', '--jobs-dir', jobs, '--grace', '0'], { PIIMG_CACHE_DIR: testCacheDir });
    try {
      const { id } = await json(fetch(`${quick.url}/jobs?base=bookworm`, { method: 'POST', body: JSON.stringify({ hostname: 'svc-cut' }) }));
      await jobState(quick, id, ['running']);
      expect(await quick.stop('SIGTERM')).toBe(0);
      expect(await settled(quick, id, jobs, 'img')).toBe('cancelled');
    } finally {
      await quick.stop('SIGKILL');
    }
  });
});

/** Polls GET /jobs/ID until the job is in one of `states` (60 s at most). */
async function jobState(running: RunningService, id: string, states: string[]): Promise<string> {
  let state = '';
  for (let i = 0; i < 1200 && !states.includes(state); i++) {
    state = (await json(fetch(`${running.url}/jobs/${id}`))).state;
    if (!states.includes(state)) await new Promise((r) => setTimeout(r, 50));
  }
  expect(states).toContain(state);
  return state;
}

/**
 * The one outcome a stopped service logged for a job, checked against what it left on disk:
 * done has the whole image and nothing else; cancelled or failed have no file at all.
 */
async function settled(stopped: RunningService, id: string, jobs: string, format: string): Promise<string> {
  const outcomes = stopped.logs.filter((entry) => entry.msg === 'job' && entry.id === id).map((entry) => String(entry.outcome));
  expect(outcomes).toHaveLength(1);
  const files = readdirSync(jobs).filter((name) => name.startsWith(id));
  expect(files).toEqual(outcomes[0] === 'done' ? [`${id}.${format}`] : []);
  return outcomes[0]!;
}
