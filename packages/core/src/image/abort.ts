import { PiimgError } from '../errors.js';

/**
 * Throws once `signal` is aborted: its reason when that is a PiimgError (the
 * CLI aborts with E_ABORTED naming the signal), else E_ABORTED.
 */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (!signal?.aborted) return;
  const reason: unknown = signal.reason;
  if (reason instanceof PiimgError) throw reason;
  throw new PiimgError('E_ABORTED', `${what} was interrupted`, {}, { cause: reason });
}
