import type { DeviceConfig } from '../config/schema.js';
import type { Editor } from './context.js';
import type { Release } from './release.js';

export interface RecipeContext {
  editor: Editor;
  config: DeviceConfig;
  release: Release;
  /** Directory that relative file sources resolve against. */
  baseDir: string;
  /** Every host file read for files[] must lie inside this directory (see SourceRootOption). */
  sourceRoot?: { given: string; real: string };
  /** Every secret value met while applying, for the report's last redaction pass. */
  secrets: Set<string>;
  /** Clock for dates written into files (shadow's last-change day). */
  now: () => Date;
}
