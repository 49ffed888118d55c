/**
 * Entry points of the configuration and recipe layer, loaded on first use:
 * zod and yaml take longer to load than everything else in @piimg/core
 * together, and most uses (info, ls, cat, verify, a volume in a service) never
 * need them. The synchronous API (the schema, parseConfig) is in
 * `@piimg/core/config`.
 */
import type { ConfigOverrides, LoadedConfig } from './config/index.js';
import type { Volume } from './fs/volume.js';
import type { ApplyOptions, ApplyReport, ApplyTarget, Release } from './recipe/index.js';

/** Reads a device configuration (YAML or JSON) with its `extends` chain, overrides and variables, and checks it. */
export async function loadConfig(path: string, options?: ConfigOverrides): Promise<LoadedConfig> {
  const { loadConfig: load } = await import('./config/load.js');
  return load(path, options);
}

/** Applies a loaded device configuration to the boot and root volumes of an image. */
export async function applyConfig(target: ApplyTarget, loaded: LoadedConfig, options?: ApplyOptions): Promise<ApplyReport> {
  const { applyConfig: apply } = await import('./recipe/index.js');
  return apply(target, loaded, options);
}

/**
 * The release of an image's root filesystem (os-release), how Wi-Fi is set up there, and which
 * first-boot mechanisms (cloud-init, userconf, an init= script) will run; read-only.
 */
export async function detectImageRelease(root: Volume, boot?: Volume): Promise<Release> {
  const [{ detectRelease }, { Editor }] = await Promise.all([import('./recipe/release.js'), import('./recipe/context.js')]);
  return detectRelease(new Editor(boot ?? root, root));
}
