/** The options every command writing an image takes (a module of its own: inject-start.ts reads them before @piimg/core loads). */
export const outputOptions = {
  format: { type: 'string' },
  level: { type: 'string' },
  threads: { type: 'string' },
  'keep-free-space': { type: 'boolean' },
} as const;
