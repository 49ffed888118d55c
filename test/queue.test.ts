// Scale-out on a real queue: Debian's redis-server, BullMQ, two `piimg worker`
// processes and a producer. One worker is killed in the middle of a job; every
// job still finishes exactly once, with a verified image.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '@piimg/core';
import { connectionFrom, enqueueDevices } from '../packages/cli/src/queue/jobs.js';
import { piimg } from './support/cli.js';
import { rawFixture, repoRoot, testCacheDir } from './support/fixtures.js';
import { hasTool } from './support/tools.js';

const haveRedis = hasTool('redis-server');
const dir = mkdtempSync(join(tmpdir(), 'piimg-queue-'));
const out = join(dir, 'out');
const uploads = join(dir, 'uploads');

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** True when something answers PING with PONG on the port. */
function redisAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
  });
}

interface Proc {
  child: ChildProcess;
  logs: Record<string, unknown>[];
}

function spawnLogged(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(process.execPath, [join(repoRoot, 'packages/cli/bin/piimg.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const proc: Proc = { child, logs: [] };
  let buffered = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        proc.logs.push(JSON.parse(line));
      } catch {
        proc.logs.push({ text: line });
      }
    }
  });
  return proc;
}

async function until(what: string, check: () => boolean | Promise<boolean>, seconds = 120): Promise<void> {
  for (let i = 0; i < seconds * 10; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.runIf(haveRedis)('piimg worker on BullMQ and Redis', () => {
  let redis: ChildProcess;
  let redisUrl = '';
  let putServer: Server;
  let putUrl = '';
  const workers: Proc[] = [];
  let base = '';

  beforeAll(async () => {
    mkdirSync(out);
    mkdirSync(uploads);
    base = await rawFixture('pi-bookworm', join(dir, 'base'));
    const port = await freePort();
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    redisUrl = `redis://127.0.0.1:${port}`;
    await until('redis', () => redisAnswers(port), 30);
    // An object store stand-in: takes PUT uploads, like a presigned URL.
    putServer = createServer((req, res) => {
      if (req.method !== 'PUT') return void res.writeHead(405).end();
      const name = new URL(req.url!, 'http://x').pathname.split('/').pop()!;
      pipeline(req, createWriteStream(join(uploads, name))).then(() => res.writeHead(200).end(), () => res.writeHead(500).end());
    });
    await new Promise<void>((resolve) => putServer.listen(0, '127.0.0.1', resolve));
    putUrl = `http://127.0.0.1:${(putServer.address() as { port: number }).port}`;
    for (let i = 0; i < 2; i++) {
      workers.push(spawnLogged(['worker', '--redis', redisUrl, '--base', `bookworm=${base}`, '--out', out, '--lock-seconds', '4'], { PIIMG_CACHE_DIR: testCacheDir }));
    }
    await until('both workers ready', () => workers.every((w) => w.logs.some((entry) => entry.msg === 'worker ready')), 60);
  });

  afterAll(async () => {
    for (const w of workers) w.child.kill('SIGKILL');
    redis?.kill('SIGKILL');
    putServer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finishes every job exactly once, with a verified image, when a worker dies mid-job', async () => {
    const names = Array.from({ length: 6 }, (_, i) => `dev-${i}`);
    const ids = await enqueueDevices(
      redisUrl,
      names.map((name) => ({ name, base: 'bookworm', config: { hostname: name, ssh: { enabled: true } } })),
    );
    // The producer CLI: one more job, uploaded with PUT, and one with a wrong configuration.
    const config = join(dir, 'put.yaml');
    writeFileSync(config, 'hostname: dev-put\n');
    const added = await piimg(['enqueue', '--redis', redisUrl, '--base', 'bookworm', '--config', config, '--name', 'dev-put', '--put', `${putUrl}/bucket/dev-put.img?X-Signature=secret`, '--json']);
    expect(added.code, added.stderr).toBe(0);
    const bad = await enqueueDevices(redisUrl, [{ name: 'dev-bad', base: 'bookworm', config: { hostname: 'not valid!' } }]);

    // Kill the first worker as soon as it has started a job (watched closely: a job on the
    // small fixture takes well under a second), then take the job it held unfinished.
    const victim = workers[0]!;
    const started = Date.now();
    while (!victim.logs.some((entry) => entry.msg === 'job started')) {
      if (Date.now() - started > 60_000) throw new Error('timed out waiting for a job to start on the first worker');
      await new Promise((r) => setTimeout(r, 2));
    }
    victim.child.kill('SIGKILL');
    const finished = new Set(victim.logs.filter((entry) => entry.msg === 'job completed' || entry.msg === 'job failed').map((entry) => entry.job));
    const held = victim.logs.filter((entry) => entry.msg === 'job started' && !finished.has(entry.job));
    expect(held.length, 'the killed worker held a job').toBe(1);
    const killedJob = held[0]!.job as string;

    const queue = new Queue('piimg-images', { connection: connectionFrom(redisUrl) });
    try {
      await until('every job to end', async () => {
        const counts = await queue.getJobCounts('completed', 'failed');
        return counts.completed === names.length + 1 && counts.failed === 1;
      }, 240);
      for (const id of [...ids, JSON.parse(added.stdout).id as string]) {
        const job = (await queue.getJob(id))!;
        expect(await job.getState()).toBe('completed');
      }
      const failed = (await queue.getJob(bad[0]!))!;
      expect(failed.failedReason).toMatch(/E_CONFIG/);
      expect(failed.attemptsMade).toBe(1);
      // The job the dead worker held was taken over and completed by the other one.
      const taken = (await queue.getJob(killedJob))!;
      expect(await taken.getState()).toBe('completed');
      expect(taken.returnvalue.worker).toBe(String(workers[1]!.child.pid));
    } finally {
      await queue.close();
    }
    // Exactly once: one completion per job in the logs of all workers, one image per device.
    const completions = workers.flatMap((w) => w.logs.filter((entry) => entry.msg === 'job completed').map((entry) => entry.job));
    expect(completions.sort()).toEqual([...new Set(completions)].sort());
    expect(readdirSync(out).filter((name) => name.endsWith('.img')).sort()).toEqual(names.map((n) => `${n}.img`).sort());
    for (const name of names) {
      await using image = await openImage(join(out, `${name}.img`), { cacheDir: testCacheDir });
      expect((await image.verify()).every((f) => f.clean)).toBe(true);
      const root = await image.mount('root');
      expect(new TextDecoder().decode(await root.readFile('/etc/hostname'))).toBe(`${name}\n`);
    }
    expect(existsSync(join(uploads, 'dev-put.img'))).toBe(true);
    await using uploaded = await openImage(join(uploads, 'dev-put.img'), { cacheDir: testCacheDir });
    expect((await uploaded.verify()).every((f) => f.clean)).toBe(true);
    // The signature in the PUT URL never reaches a log.
    expect(JSON.stringify(workers.map((w) => w.logs))).not.toContain('X-Signature');
  });
});
