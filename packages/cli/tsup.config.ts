import { defineConfig } from 'tsup';

// The command bundles @piimg/core with its YAML and schema libraries: Node
// loads one file where it would resolve and read a few hundred modules, which
// is most of the start-up of `piimg inject` before any work. @piimg/wasm stays
// a package of its own (its .wasm files are found next to its code).
// esbuild turns the CommonJS parts (yaml, yauzl) into code that calls
// `require`, which an ES module lacks: the banner provides it.
export default defineConfig({
  noExternal: ['@piimg/core', 'yaml', 'zod', 'yauzl'],
  external: ['@piimg/wasm'],
  banner: { js: "import { createRequire as __piimgCreateRequire } from 'node:module';\nconst require = __piimgCreateRequire(import.meta.url);" },
});
