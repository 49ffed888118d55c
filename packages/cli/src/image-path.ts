import type { Image, Volume } from '@piimg/core';
import { UsageError } from './io.js';

export interface ImagePath {
  partition: number | 'boot' | 'root';
  path: string;
}

const PATTERN = /^(\d+|boot|root):(\/.*)$/;

/** Parses `PART:/path` (PART: a partition number, `boot` or `root`); undefined for a host path. */
export function parseImagePath(spec: string): ImagePath | undefined {
  const match = PATTERN.exec(spec);
  if (!match) return undefined;
  const part = match[1]!;
  return { partition: /^\d+$/.test(part) ? Number(part) : (part as 'boot' | 'root'), path: match[2]! };
}

export function requireImagePath(spec: string, usage: string): ImagePath {
  const parsed = parseImagePath(spec);
  if (!parsed) throw new UsageError(`'${spec}' is not PART:/path (PART: a number, boot or root)\n\n${usage}`);
  return parsed;
}

export async function mountFor(image: Image, at: ImagePath, readOnly: boolean): Promise<Volume> {
  return image.mount(at.partition, { readOnly });
}
