import { openImage } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { mountFor, requireImagePath } from '../image-path.js';
import { EXIT, type CliIo, withSignal } from '../io.js';

const usage = `Usage: piimg cat IMAGE PART:/path

Writes a file from inside an image to standard output, byte for byte.
PART is a partition number, 'boot' or 'root'.

Options:
  -h, --help    this help`;

export const cat: Command = {
  name: 'cat',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(argv, {}, usage);
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 2, usage);
    const at = requireImagePath(positionals[1]!, usage);
    await using image = await openImage(positionals[0]!, withSignal(io, {}));
    const volume = await mountFor(image, at, true);
    const data = await volume.readFile(at.path);
    await new Promise<void>((resolve, reject) => io.stdout.write(data, (error) => (error ? reject(error) : resolve())));
    return EXIT.ok;
  },
};
