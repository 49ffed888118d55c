/**
 * `@piimg/core/early`: what a program runs before it loads the rest of
 * @piimg/core, so that the copy of a base runs while the modules load
 * (see startSave). A few small modules: the encoders, the filesystems and
 * the recipes stay unloaded.
 */
export { startSave, StartedSave } from './image/early.js';
export type { StartSaveOptions, PrepareSaveOptions } from './image/early.js';
