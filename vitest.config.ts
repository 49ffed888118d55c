import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    alias: {
      '@piimg/core/config': fileURLToPath(new URL('./packages/core/src/config.ts', import.meta.url)),
      '@piimg/core/early': fileURLToPath(new URL('./packages/core/src/early.ts', import.meta.url)),
      '@piimg/core': fileURLToPath(new URL('./packages/core/src/index.ts', import.meta.url)),
      '@piimg/wasm': fileURLToPath(new URL('./packages/wasm/src/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
