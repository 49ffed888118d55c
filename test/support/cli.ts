import { Writable } from 'node:stream';
import { main } from '../../packages/cli/src/index.js';
import { assertJsonOutput } from './json-schema.js';

class Capture extends Writable {
  chunks: Buffer[] = [];
  isTTY = false;
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    callback();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/**
 * Runs the piimg CLI in-process, as a user would from a shell that is not a
 * terminal. Every --json output that a command printed is checked against the
 * command's shipped JSON Schema.
 */
export async function piimg(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string; bytes: Buffer }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(argv, { stdout, stderr, env: { ...process.env, ...env }, cwd: process.cwd() });
  if (argv.includes('--json') && !argv.includes('--help') && !argv.includes('-h') && stdout.text !== '') assertJsonOutput(argv[0]!, stdout.text);
  return { code, stdout: stdout.text, stderr: stderr.text, bytes: stdout.bytes };
}
