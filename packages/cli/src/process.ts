import { defaultIo, SIGNAL_EXIT } from './base.js';
import { main } from './index.js';

/** Commands that write files: on a signal they stop at the next step and remove their temporary files. */
const WRITING = new Set(['inject', 'cp', 'apply', 'batch']);
/** Long-running commands that drain on SIGINT/SIGTERM themselves. */
const OWN_SIGNALS = new Set(['serve', 'worker']);

/**
 * The `piimg` executable: main() plus what only a real process has.
 * - SIGINT/SIGTERM: the command is aborted through io.signal: it stops at its
 *   next step, removes its temporary file (output or cache entry) and exits
 *   130/143. A second signal exits at once.
 * - A closed stdout (`piimg ls ... | head`) is the end of output: EPIPE is
 *   not an error, and the exit status stays what the command decided.
 */
export async function runCli(argv: string[]): Promise<number> {
  if (OWN_SIGNALS.has(argv[0] ?? '')) return main(argv, defaultIo());
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    const code = SIGNAL_EXIT[signal] ?? 1;
    if (received !== undefined) process.exit(code);
    received = signal;
    // @piimg/core is loaded by then (a command runs); --version never pays for this import.
    void import('@piimg/core').then(({ PiimgError }) => controller.abort(new PiimgError('E_ABORTED', `interrupted by ${signal}`, { signal })));
    // A reading command only has a decompression into the cache to stop (that
    // takes one chunk); it does not otherwise look at the signal.
    if (!WRITING.has(argv[0] ?? '')) setTimeout(() => process.exit(code), 1000).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') return;
    throw error;
  });
  try {
    const code = await main(argv, { ...defaultIo(), signal: controller.signal });
    return received !== undefined ? (SIGNAL_EXIT[received] ?? code) : code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
