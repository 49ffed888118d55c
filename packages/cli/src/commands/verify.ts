import { openImage } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { EXIT, paint, progressReporter, useColor, writeJson, type CliIo, withSignal } from '../io.js';

const usage = `Usage: piimg verify IMAGE [--json]

Checks every filesystem of IMAGE that piimg can check, read-only: FAT12/16/32
with its own checker (what fsck.fat -n checks), ext2/3/4 with
e2fsck -fn (built into piimg as WebAssembly, no native tools needed).
Exit status 0 only when every checked filesystem is clean, 4 otherwise.

Options:
  --json        machine-readable output
  -h, --help    this help`;

export const verify: Command = {
  name: 'verify',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, usage);
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 1, usage);
    const onProgress = progressReporter(io, !values.json);
    await using image = await openImage(positionals[0]!, withSignal(io, onProgress ? { onProgress } : {}));
    onProgress?.clear();
    const findings = await image.verify();
    const clean = findings.every((f) => f.clean);
    if (values.json) {
      writeJson(io, { path: image.sourcePath, clean, partitions: findings.map(({ output: _output, ...rest }) => rest) });
    } else {
      const color = useColor(io.stdout, io.env);
      for (const f of findings) {
        const state = !f.checked ? paint(color, 2, 'not checked') : f.clean ? paint(color, 32, 'clean') : paint(color, 31, 'PROBLEMS');
        io.stdout.write(`p${f.partition} ${f.filesystem}: ${state}\n`);
        for (const problem of f.problems) io.stdout.write(`  ${problem}\n`);
      }
    }
    return clean ? EXIT.ok : EXIT.verifyFailed;
  },
};
