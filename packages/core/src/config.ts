/** `@piimg/core/config`: the device configuration schema and the recipes, with their synchronous API. */
export * from './config/index.js';
export { applyConfig, resolveImageOwner, detectRelease, parseOsRelease, bootMountFromFstab, editConfigTxt, editCmdline, parseInstallSection } from './recipe/index.js';
export type { ConfigTxtEdit } from './recipe/boot.js';
export type { InstallSection } from './recipe/systemd.js';
export type { ApplyReport, ApplyTarget, ApplyOptions, Change, ChangeAction, VolumeName, Release } from './recipe/index.js';
