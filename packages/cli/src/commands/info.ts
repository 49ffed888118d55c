import { openImage, type Image } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { EXIT, formatBytes, paint, progressReporter, useColor, writeJson, type CliIo } from '../io.js';

const usage = `Usage: piimg info IMAGE [--json]

Shows the partition table of IMAGE (.img, .img.xz, .zip, .gz): scheme, disk id,
sector size, each partition with its start, size, type, PARTUUID, filesystem and
label, and the features of ext2/3/4 filesystems.

Options:
  --json        machine-readable output
  -h, --help    this help`;

export function describeImage(image: Image) {
  return {
    path: image.sourcePath,
    compression: image.compression ?? null,
    size: image.size,
    scheme: image.table.scheme,
    sectorSize: image.table.sectorSize,
    diskId: image.table.diskId,
    warnings: image.table.warnings,
    partitions: image.partitions.map((p) => ({
      number: p.number,
      kind: p.kind,
      firstLba: p.firstLba,
      sectorCount: p.sectorCount,
      byteOffset: p.byteOffset,
      size: p.size,
      type: p.type,
      typeName: p.typeName ?? null,
      name: p.name ?? null,
      partUuid: p.partUuid,
      bootable: p.bootable ?? false,
      filesystem: {
        type: p.filesystem.type,
        label: p.filesystem.label ?? null,
        uuid: p.filesystem.uuid ?? null,
        blockSize: p.filesystem.blockSize ?? null,
        features: p.filesystem.features ?? null,
      },
    })),
  };
}

export const info: Command = {
  name: 'info',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, usage);
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 1, usage);
    const onProgress = progressReporter(io, !values.json);
    await using image = await openImage(positionals[0]!, onProgress ? { onProgress } : {});
    onProgress?.clear();
    const description = describeImage(image);
    if (values.json) {
      writeJson(io, description);
      return EXIT.ok;
    }
    const color = useColor(io.stdout, io.env);
    const out: string[] = [];
    out.push(
      `${paint(color, 1, description.path)}: ${formatBytes(description.size)}${description.compression ? ` (${description.compression})` : ''}, ` +
        `${description.scheme.toUpperCase()}, disk id ${description.diskId}, ${description.sectorSize}-byte sectors`,
    );
    for (const warning of description.warnings) out.push(paint(color, 33, `warning: ${warning}`));
    const rows = [['#', 'start', 'sectors', 'size', 'type', 'PARTUUID', 'filesystem', 'label']];
    for (const p of description.partitions) {
      rows.push([
        String(p.number),
        String(p.firstLba),
        String(p.sectorCount),
        formatBytes(p.size),
        [p.type.length > 8 ? p.typeName ?? p.type : `${p.type}${p.typeName ? ` ${p.typeName}` : ''}`, p.name ? `"${p.name}"` : ''].filter(Boolean).join(' '),
        p.partUuid,
        p.filesystem.type,
        p.filesystem.label ?? '',
      ]);
    }
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
    for (const [index, row] of rows.entries()) {
      const line = row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
      out.push(index === 0 ? paint(color, 2, line) : line);
    }
    for (const p of description.partitions) {
      if (p.filesystem.features) out.push(`p${p.number} ${p.filesystem.type} features: ${p.filesystem.features.join(' ')}`);
    }
    io.stdout.write(out.join('\n') + '\n');
    return EXIT.ok;
  },
};
