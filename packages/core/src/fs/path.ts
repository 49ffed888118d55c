import { PiimgError } from '../errors.js';

/**
 * Splits an absolute volume path into its components, resolving "." and ".."
 * lexically and never above the root. Rejects NUL bytes and relative paths.
 */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new PiimgError('EINVAL', `path must be absolute: ${JSON.stringify(path)}`, { path });
  }
  if (path.includes('\0')) {
    throw new PiimgError('EINVAL', 'path contains a NUL byte', { path });
  }
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts;
}

/** The absolute form of a volume path: "." and ".." resolved lexically, never above "/", no trailing slash. */
export function normalizePath(path: string): string {
  return '/' + splitPath(path).join('/');
}

export function parentAndName(path: string): { parent: string; name: string } {
  const parts = splitPath(path);
  const name = parts.pop();
  if (name === undefined) {
    throw new PiimgError('EINVAL', 'the root directory has no name', { path });
  }
  return { parent: '/' + parts.join('/'), name };
}
