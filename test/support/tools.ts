import { execFileSync, spawnSync } from 'node:child_process';

const cache = new Map<string, boolean>();

/**
 * True when the native tool is on PATH. Oracle tests use it to skip locally
 * with a visible message; under CI (CI=true) a missing tool fails the run,
 * because CI installs every oracle.
 */
export function hasTool(name: string): boolean {
  let found = cache.get(name);
  if (found === undefined) {
    found = spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
    if (!found) {
      for (const dir of ['/usr/sbin', '/sbin']) {
        if (spawnSync('test', ['-x', `${dir}/${name}`]).status === 0) found = true;
      }
    }
    cache.set(name, found);
    if (!found) {
      if (process.env.CI) throw new Error(`oracle tool ${name} is missing on CI: .ci/run must install it`);
      console.warn(`\n*** SKIPPED: oracle tests need '${name}', which is not installed here ***\n`);
    }
  }
  return found;
}

/** Runs a native tool and returns stdout; sbin directories are added to PATH. */
export function run(cmd: string, args: string[], options: { input?: string | Uint8Array; allowFail?: boolean } = {}): {
  stdout: string;
  stderr: string;
  status: number;
} {
  const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin`, LC_ALL: 'C' };
  const result = spawnSync(cmd, args, { env, input: options.input, maxBuffer: 256 * 1024 * 1024 });
  const out = { stdout: result.stdout?.toString() ?? '', stderr: result.stderr?.toString() ?? '', status: result.status ?? -1 };
  if (!options.allowFail && out.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${out.status}: ${out.stderr || out.stdout}`);
  }
  return out;
}

export { execFileSync };

/** Whether process `pid` is still running (signal 0 reaches it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
