import { detectImageRelease, openImage, type Image, type Release } from '@piimg/core';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { EXIT, formatBytes, paint, progressReporter, useColor, writeJson, type CliIo, withSignal } from '../io.js';

const usage = `Usage: piimg info IMAGE [--json]

Shows the partition table of IMAGE (.img, .img.xz, .zip, .gz, .zst): scheme, disk id,
sector size, each partition with its start, size, type, PARTUUID, filesystem and
label, the features of ext2/3/4 filesystems, and for a Raspberry Pi OS-like
image the release found in its root filesystem (os-release) and the first-boot
mechanisms that will run (cloud-init NoCloud, userconf rename-user, an init=
script on cmdline.txt).

Options:
  --json        machine-readable output
  -h, --help    this help`;

const FIRST_BOOT_NAMES: Record<Release['firstBoot'][number], string> = {
  'cloud-init': 'cloud-init NoCloud',
  userconf: 'userconf rename-user',
  'firstboot-init': 'firstboot init= script',
};

/** The release in the root partition, or null when the image has no Linux root piimg can read. */
export async function describeRelease(image: Image) {
  let release: Release;
  try {
    const root = await image.mount('root', { readOnly: true });
    const boot = await image.mount('boot', { readOnly: true }).catch(() => undefined);
    release = await detectImageRelease(root, boot);
  } catch {
    return null;
  }
  return {
    id: release.id,
    version: release.version ?? null,
    codename: release.codename || null,
    flavour: release.flavour,
    network: release.network,
    bootMount: release.bootMount,
    firstBoot: release.firstBoot.map((mechanism) => FIRST_BOOT_NAMES[mechanism]),
    firstBootPresets: release.firstBootPresets,
  };
}

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
    await using image = await openImage(positionals[0]!, withSignal(io, onProgress ? { onProgress } : {}));
    onProgress?.clear();
    const description = { ...describeImage(image), release: await describeRelease(image) };
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
    const release = description.release;
    if (release) {
      const label = [release.id, release.version, release.codename].filter((part) => part !== null && part !== '').join(' ');
      out.push(`release: ${label} (${release.flavour}), Wi-Fi by ${release.network === 'networkmanager' ? 'NetworkManager' : 'wpa_supplicant'}, boot partition at ${release.bootMount}`);
      out.push(`first boot: ${release.firstBoot.length > 0 ? release.firstBoot.join(', ') : 'none'}${release.firstBootPresets ? '; systemd presets (machine-id uninitialized)' : ''}`);
    }
    io.stdout.write(out.join('\n') + '\n');
    return EXIT.ok;
  },
};
