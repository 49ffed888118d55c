#!/usr/bin/env bash
# The .zst tests under a Node whose zlib has zstd (22.15+/23.8+), where piimg compresses and
# decompresses with Node's native libzstd; `npm test` on Node 20 covers the wasm build.
# PIIMG_EXPECT_ZSTD_BACKEND=zlib makes a fall back to wasm fail. Node comes from the npm
# registry (test/support/fetch-node.mjs, cached outside the repository); when it cannot be
# fetched this says so and skips, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
version="${PIIMG_NATIVE_ZSTD_NODE:-24.22.3}"
if ! node24=$(node test/support/fetch-node.mjs "$version"); then
  if [ -n "${CI:-}" ]; then echo "zstd-native: cannot fetch Node $version on CI" >&2; exit 1; fi
  echo "*** SKIPPED: the native zstd tests need Node $version from the npm registry, which cannot be fetched here ***" >&2
  exit 0
fi
echo "zstd-native: $("$node24" --version) ($node24)"
# Bounded: the .zst tests take well under a minute.
PIIMG_EXPECT_ZSTD_BACKEND=zlib timeout 600 "$node24" node_modules/vitest/vitest.mjs run test/zstd.test.ts packages/wasm/test/zstd.test.ts
