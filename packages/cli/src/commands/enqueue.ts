import { dirname, isAbsolute, relative } from 'node:path';
import { loadConfig } from '@piimg/core';
import { type Command, parse, wantsHelp } from '../command.js';
import { EXIT, UsageError, writeJson, type CliIo } from '../io.js';

const usage = `Usage: piimg enqueue --redis URL --base NAME --config FILE --name DEVICE [--put URL]
                     [--set key.path=value ...] [--var name=value ...] [--queue NAME] [--json]

Adds one device image job to the queue that 'piimg worker' processes take
from. The configuration is read here, with its extends chain, PIIMG_*
variables, --set and --var, and sent as JSON: its secrets travel through
Redis, so protect Redis (password, TLS, a private network). files[].source
paths are sent relative to the configuration's directory and read by the
workers below their --source-root. Prints the job id.

Options:
  --redis URL        redis://[user:password@]host:port[/db]
  --base NAME        the base, as the workers name it
  --config FILE      the device configuration
  --name DEVICE      device name: the worker writes DEVICE.img
  --put URL          upload the image with HTTP PUT here instead
  --set key.path=value  override a configuration value, as for 'piimg inject'
  --var name=value   a {{name}} variable, as for 'piimg inject'
  --queue NAME       queue name (default piimg-images)
  --json             print {"id": ...}
  -h, --help         this help`;

export const enqueue: Command = {
  name: 'enqueue',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values } = parse(
      argv,
      {
        redis: { type: 'string' },
        base: { type: 'string' },
        config: { type: 'string', short: 'c' },
        name: { type: 'string' },
        put: { type: 'string' },
        set: { type: 'string', multiple: true },
        var: { type: 'string', multiple: true },
        queue: { type: 'string' },
        json: { type: 'boolean' },
      },
      usage,
    );
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    for (const required of ['redis', 'base', 'config', 'name'] as const) {
      if (!values[required]) throw new UsageError(`--${required} is required\n\n${usage}`);
    }
    const vars: Record<string, string> = {};
    for (const item of values.var ?? []) {
      const at = item.indexOf('=');
      if (at <= 0) throw new UsageError(`--var takes name=value, not '${item}'`);
      vars[item.slice(0, at)] = item.slice(at + 1);
    }
    const loaded = await loadConfig(values.config!, { set: values.set ?? [], env: io.env, vars });
    const config = structuredClone(loaded.config) as { files?: { source?: string }[] };
    for (const entry of config.files ?? []) {
      if (entry.source !== undefined && isAbsolute(entry.source)) entry.source = relative(loaded.baseDir ?? dirname(values.config!), entry.source);
    }
    const { enqueueDevices } = await import('../queue/jobs.js');
    const [id] = await enqueueDevices(values.redis!, [{ name: values.name!, base: values.base!, config, ...(values.put ? { putUrl: values.put } : {}) }], values.queue);
    if (values.json) writeJson(io, { id });
    else io.stdout.write(`${id}\n`);
    return EXIT.ok;
  },
};
