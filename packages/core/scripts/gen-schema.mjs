#!/usr/bin/env node
// Regenerates schema/device-config.schema.json from the zod schema in
// src/config. Run after changing the schema: `node packages/core/scripts/gen-schema.mjs`.
// A unit test fails while the committed file is out of date.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const result = await build({
  entryPoints: [fileURLToPath(new URL('src/config/json-schema.ts', root))],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'node',
  logLevel: 'error',
});
const code = result.outputFiles[0].text;
const module = await import(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`);
const target = new URL('schema/device-config.schema.json', root);
await writeFile(target, module.deviceConfigJsonSchemaText());
console.log(`wrote ${fileURLToPath(target)}`);
