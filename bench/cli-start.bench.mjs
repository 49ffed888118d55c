// Start-up of `piimg --version` and `piimg --help` against Node starting with nothing to do
// (`node -e ''`), in the same run: neither should load @piimg/core. Target ratio: about 1.0.
import { compare } from './harness.mjs';

for (const flag of ['--version', '--help']) {
  compare({
    title: `piimg ${flag} start-up vs node -e ''`,
    runs: 15,
    ours: ['node', 'packages/cli/bin/piimg.js', flag],
    native: ['node', '-e', ''],
  });
}
