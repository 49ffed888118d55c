export { probeExt } from './probe.js';
export type { ExtProbe } from './probe.js';
