import * as z from 'zod';
import { deviceConfigSchema } from './schema.js';

/**
 * The JSON Schema (draft 2020-12) of the config file as written, for editors.
 * It describes the input side: fields with defaults are optional.
 */
export function deviceConfigJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(deviceConfigSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { ...schema, title: 'piimg device configuration' };
}

/** The schema file's exact text: two-space JSON with a final newline. */
export function deviceConfigJsonSchemaText(): string {
  return JSON.stringify(deviceConfigJsonSchema(), null, 2) + '\n';
}
