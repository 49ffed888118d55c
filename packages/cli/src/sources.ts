import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { PiimgError } from '@piimg/core';

/**
 * For configurations that come from others (the image service, queue jobs):
 * every files[].source must resolve, symlinks followed, inside `sourceRoot`;
 * without a root, host files are refused altogether.
 */
export function confineSources(config: unknown, sourceRoot: string | undefined): void {
  const files = (config as { files?: unknown })?.files;
  if (!Array.isArray(files)) return;
  const root = sourceRoot ? realpathSync(sourceRoot) : undefined;
  for (const [index, entry] of files.entries()) {
    const source = (entry as { source?: unknown })?.source;
    if (source === undefined) continue;
    if (typeof source !== 'string' || !root) {
      throw new PiimgError('E_CONFIG', `files[${index}].source: this service takes no host files (start it with --source-root DIR to allow files below DIR)`, {
        path: `files[${index}].source`,
      });
    }
    let real: string;
    try {
      real = realpathSync(resolve(root, source));
    } catch {
      throw new PiimgError('E_CONFIG', `files[${index}].source: ${source} does not exist below the source root`, { path: `files[${index}].source` });
    }
    const rel = relative(root, real);
    if (rel.startsWith('..' + sep) || rel === '..' || isAbsolute(rel)) {
      throw new PiimgError('E_CONFIG', `files[${index}].source: ${source} is outside the source root`, { path: `files[${index}].source` });
    }
  }
}

