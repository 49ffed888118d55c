import { isPiimgError } from '@piimg/core';
import type { CliIo } from './base.js';
import type { Command } from './command.js';
import type { CommandEntry } from './commands/list.js';
import { clearProgress, exitCodeFor, isClosedPipe, UsageError } from './io.js';

/** Loads (with `load`, default the entry's) and runs a command; errors become a message and an exit status. */
export async function runCommand(entry: CommandEntry, argv: string[], io: CliIo, load: () => Promise<Command> = entry.load): Promise<number> {
  try {
    const command = await load();
    return await command.run(argv, io);
  } catch (error) {
    clearProgress();
    // The reader of stdout has gone: that is the end of output, not a failure.
    if (isClosedPipe(error)) return 0;
    const code = exitCodeFor(error);
    if (error instanceof UsageError) {
      io.stderr.write(`piimg ${entry.name}: ${error.message}\n`);
    } else if (isPiimgError(error)) {
      io.stderr.write(`piimg ${entry.name}: ${error.message} [${error.code}]\n`);
    } else {
      io.stderr.write(`piimg ${entry.name}: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
    }
    return code;
  }
}
