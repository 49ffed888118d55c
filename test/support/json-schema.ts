import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { repoRoot } from './fixtures.js';

const ajv = new Ajv2020({ strict: true, allErrors: true });
const validators = new Map<string, ValidateFunction>();

/** The JSON Schema shipped in packages/cli/schema for a command's --json output. */
export function jsonSchemaFor(command: string): ValidateFunction {
  let validate = validators.get(command);
  if (validate === undefined) {
    const schema = JSON.parse(readFileSync(join(repoRoot, 'packages', 'cli', 'schema', `${command}.schema.json`), 'utf8')) as object;
    validate = ajv.compile(schema);
    validators.set(command, validate);
  }
  return validate;
}

/** Throws unless `output` (a command's --json stdout) matches the command's schema. */
export function assertJsonOutput(command: string, output: string): void {
  const validate = jsonSchemaFor(command);
  const value: unknown = JSON.parse(output);
  if (!validate(value)) {
    throw new Error(`piimg ${command} --json does not match schema/${command}.schema.json: ${ajv.errorsText(validate.errors)}`);
  }
}
