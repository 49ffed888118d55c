import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './fixtures.js';

export interface RunningService {
  url: string;
  process: ChildProcess;
  /** Every JSON log line the service wrote so far. */
  logs: Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `piimg serve` (the built CLI) on a free port and waits for its "listening" line. */
export function startService(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunningService> {
  const child = spawn(process.execPath, [join(repoRoot, 'packages/cli/bin/piimg.js'), 'serve', '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let buffered = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('piimg serve did not start within 60 s')), 60_000);
    child.on('exit', (code) => reject(new Error(`piimg serve exited with ${code} before listening:\n${buffered}`)));
    child.stderr!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          entry = { text: line };
        }
        logs.push(entry);
        if (entry.msg === 'listening') {
          clearTimeout(timer);
          child.removeAllListeners('exit');
          resolve({
            url: String(entry.url),
            process: child,
            logs,
            stop: (signal = 'SIGTERM') =>
              new Promise((done) => {
                if (child.exitCode !== null) return done(child.exitCode);
                child.once('exit', (code) => done(code));
                child.kill(signal);
              }),
          });
        }
      }
    });
  });
}
