export { deviceConfigSchema } from './schema.js';
export type { DeviceConfig, DeviceConfigInput, FileEntry, WifiNetwork } from './schema.js';
export { loadConfig, parseConfig, checkSources, confineSource, realSourceRoot } from './load.js';
export type { LoadedConfig, ConfigOverrides, ParseConfigOptions, SourceRootOption } from './load.js';
export { mergeConfig } from './merge.js';
export { deviceConfigJsonSchema, deviceConfigJsonSchemaText } from './json-schema.js';
