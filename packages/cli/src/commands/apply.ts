import { openImage, PiimgError } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { EXIT, paint, progressReporter, UsageError, useColor, withSignal, writeJson, type CliIo } from '../io.js';
import { checkOutputFile } from '../output.js';

const usage = `Usage: piimg apply BASE DELTA -o OUT [--bmap FILE] [--no-verify] [--json]

Writes the device image OUT from BASE (.img, .img.xz, .zip, .gz, .zst) and a
delta made by 'piimg inject --delta' (the changed blocks of one device against
that base). A delta for another base, or a damaged one, is refused before
anything is written. OUT appears atomically, filesystems verified; OUT ending in
.img.xz, .img.gz or .img.zst is written compressed.

Options:
  -o, --output OUT  the device image to write
  --bmap FILE       also write a block map for bmaptool
  --no-verify       skip the filesystem check before writing OUT
  --json            machine-readable output
  -h, --help        this help`;

export const apply: Command = {
  name: 'apply',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(
      argv,
      { output: { type: 'string', short: 'o' }, bmap: { type: 'string' }, 'no-verify': { type: 'boolean' }, json: { type: 'boolean' } },
      usage,
    );
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 2, usage);
    if (!values.output) throw new UsageError(`-o OUT is required\n\n${usage}`);
    // A wrong output is refused before the base is opened (and perhaps decompressed).
    checkOutputFile(values.output);
    const onProgress = progressReporter(io, !values.json);
    await using image = await openImage(positionals[0]!, withSignal(io, onProgress ? { onProgress } : {}));
    onProgress?.clear();
    const delta = await image.applyDelta(positionals[1]!);
    let verified = false;
    if (!values['no-verify']) {
      const dirty = (await image.verify()).filter((f) => !f.clean);
      if (dirty.length) {
        throw new PiimgError('E_VERIFY_FAILED', `the image made from the delta does not verify, nothing was written: ${dirty.map((f) => `p${f.partition}: ${f.problems.slice(0, 3).join('; ')}`).join(' / ')}`, {});
      }
      verified = true;
    }
    const saved = await image.save(values.output, withSignal(io, onProgress ? { onProgress } : {}));
    onProgress?.clear();
    const bmap = values.bmap ? await image.writeBmap(values.bmap) : undefined;
    const summary = {
      base: image.sourcePath,
      delta: positionals[1]!,
      output: saved.path,
      records: delta.recordCount,
      changedBytes: saved.changedBytes,
      verified,
      ...(bmap ? { bmap: values.bmap, mappedBlocks: bmap.mappedBlocksCount, blocks: bmap.blocksCount } : {}),
    };
    if (values.json) writeJson(io, summary);
    else {
      const color = useColor(io.stdout, io.env);
      io.stdout.write(`${paint(color, 1, saved.path)}: ${delta.recordCount} changed chunk${delta.recordCount === 1 ? '' : 's'} applied${verified ? ', filesystems verified' : ''}\n`);
      if (bmap) io.stdout.write(`${values.bmap}: ${bmap.mappedBlocksCount} of ${bmap.blocksCount} blocks mapped\n`);
    }
    return EXIT.ok;
  },
};
