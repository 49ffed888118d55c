/** Facts about an error for programs: the path, partition or offset involved. */
export type ErrorData = Record<string, unknown>;

/**
 * The one error class of piimg. `code` is stable and meant for programs:
 * `E_*` names for image-level problems, errno names (`ENOENT`, `ENOSPC`, ...)
 * for filesystem calls. `data` carries the path, partition or offset involved.
 */
export class PiimgError extends Error {
  override readonly name = 'PiimgError';
  readonly code: string;
  readonly data: ErrorData;

  constructor(code: string, message: string, data: ErrorData = {}, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.data = data;
  }
}

/** True for a PiimgError, and when `code` is given, one with that code. */
export function isPiimgError(error: unknown, code?: string): error is PiimgError {
  return error instanceof PiimgError && (code === undefined || error.code === code);
}

/** Throws `E_LIMIT` (or the given code) unless 0 <= value <= max. Use on every count or length read from an image. */
export function assertWithin(value: number, max: number, what: string, code = 'E_LIMIT'): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new PiimgError(code, `${what} is ${value}, outside 0..${max}`, { what, value, max });
  }
  return value;
}

/** Converts a 64-bit on-disk value to a number, refusing values a double cannot hold exactly. */
export function toSafeNumber(value: bigint, what: string, code = 'E_LIMIT'): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new PiimgError(code, `${what} is ${value}, too large to handle`, { what, value: value.toString() });
  }
  return Number(value);
}
