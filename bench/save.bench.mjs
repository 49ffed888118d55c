// image.save() of a 2 GiB Pi-like image with a few changed chunks, against
// `cp --sparse=always` of the same image (the first step of every shell script
// that customizes an image). Target: ratio <= 1.0 in a service; a fresh process
// within Node's start-up (printed last) of cp's time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { compare, median } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'piimg-bench-save-'));
try {
  const base = join(dir, 'base.img');
  // 512 MiB boot + 1.5 GiB root holding ~1 GiB of incompressible data, like a Pi OS Lite image.
  execFileSync('bash', ['fixtures/recipes/pi-image.sh', base, '--boot-mib', '512', '--root-mib', '1532', '--payload-mib', '1024'], {
    stdio: 'inherit',
  });
  // A base image is usually old and on disk: flush the one just built, so its
  // writeback does not run (on one of the cores) during the measured runs.
  execFileSync('sync');
  const st = statSync(base);
  console.log(`base: ${(st.size / 2 ** 30).toFixed(2)} GiB, ${(st.blocks * 512 / 2 ** 30).toFixed(2)} GiB allocated`);
  const out = join(dir, 'out.img');
  // The base copy runs through the system's GNU cp (kernel copy) where there is one,
  // else in JavaScript (PIIMG_COPY=js forces it): both are measured.
  for (const [copier, env] of [['cp (kernel copy)', {}], ['JavaScript copy', { PIIMG_COPY: 'js' }]]) {
    const fresh = compare({
      title: `image.save of a 2 GiB image vs cp --sparse=always; base copied by ${copier}; load ${loadavg()[0].toFixed(1)}`,
      runs: 7,
      prepare: () => rmSync(out, { force: true }),
      ours: ['node', 'bench/cases/save.mjs', base, out, '8'],
      native: ['cp', '--sparse=always', base, out],
      env,
    });
    // The same in a service: five saves in one process against five cp runs.
    const service = compare({
      title: `five image.save calls in one process vs five cp --sparse=always; base copied by ${copier}; load ${loadavg()[0].toFixed(1)}`,
      runs: 5,
      prepare: () => rmSync(out, { force: true }),
      ours: ['node', 'bench/cases/save-service.mjs', base, out, '5'],
      native: ['bash', '-c', 'for i in 1 2 3 4 5; do rm -f "$2"; cp --sparse=always "$1" "$2"; done', 'cp-loop', base, out],
      env,
    });
    // A running service has started and opened its base already: its saves 2-5, against one
    // turn of the loop (removal and cp) and against one cp alone (the fresh comparison's).
    const reports = service.ours.stdouts.map((stdout) => JSON.parse(stdout.trim().split('\n').pop()));
    const warmRequest = median(reports.flatMap((report) => report.requestSeconds.slice(1)));
    const warmSave = median(reports.flatMap((report) => report.saveSeconds.slice(1)));
    const loopTurn = service.native.medianSeconds / 5;
    const cpAlone = fresh.native.medianSeconds;
    console.log(
      `  a save of a warm service (saves 2-5, median): ${(warmSave * 1000).toFixed(0)} ms against cp alone ${(cpAlone * 1000).toFixed(0)} ms = ratio ${(warmSave / cpAlone).toFixed(2)}; with the removal of the last output ${(warmRequest * 1000).toFixed(0)} ms against one turn of the loop ${(loopTurn * 1000).toFixed(0)} ms = ratio ${(warmRequest / loopTurn).toFixed(2)}`,
    );
  }
  // Node's own start-up, the floor of a fresh-process save.
  compare({
    title: `node -e '' (Node's start-up) vs true; load ${loadavg()[0].toFixed(1)}`,
    runs: 7,
    ours: ['node', '-e', ''],
    native: ['true'],
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
