import * as z from 'zod';

/**
 * The device configuration schema. It is the single source of truth: types,
 * validation messages and the published JSON Schema
 * (schema/device-config.schema.json) all come from it.
 */

// RFC 1123 §2.1 host name label: letters, digits and inner hyphens, 1..63 characters.
const hostname = z
  .string()
  .regex(/^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/, 'must be 1-63 letters, digits or inner hyphens (RFC 1123)')
  .describe('Host name written to /etc/hostname and the 127.0.1.1 line of /etc/hosts.');

// useradd(8) / userconf.txt rule: lower case letter first, at most 32 characters.
const userName = z
  .string()
  .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must start with a lower-case letter or "_" and hold at most 32 of [a-z0-9_-]');

/**
 * crypt(5) hashes that Debian's libxcrypt verifies and that are not broken:
 * yescrypt ($y$, the Debian default), gost-yescrypt ($gy$), scrypt ($7$),
 * bcrypt ($2b$, $2a$, $2y$), sha512crypt ($6$) and sha256crypt ($5$), each
 * with its alphabet and hash length; or a lock: "!" or "*" alone (no password
 * login), or "!" before a hash (locked, hash kept). md5crypt ($1$) and DES are
 * refused: a hash that leaks is cracked in minutes. Anything else would be
 * written to /etc/shadow as is and lock the user out.
 * Ref: crypt(5) of libxcrypt 4.4, "HASHING METHODS".
 */
const B64 = '[./0-9A-Za-z]';
const SHA_ROUNDS = '(?:rounds=[1-9][0-9]{3,8}\\$)?';
export const CRYPT_HASH = new RegExp(
  '^(?:!|\\*|!\\*|!!|!?(?:' +
    [
      `\\$y\\$${B64}+\\$${B64}+\\$${B64}{43}`,
      `\\$gy\\$${B64}+\\$${B64}+\\$${B64}{43}`,
      `\\$7\\$${B64}{11,}\\$${B64}{43}`,
      `\\$2[aby]\\$(?:0[4-9]|[12][0-9]|3[01])\\$${B64}{53}`,
      `\\$6\\$${SHA_ROUNDS}${B64}{1,16}\\$${B64}{86}`,
      `\\$5\\$${SHA_ROUNDS}${B64}{1,16}\\$${B64}{43}`,
    ].join('|') +
    '))$',
);

// Messages never quote the value: it is a password hash.
const cryptHash = z
  .string()
  .refine((value) => !/^!?\$1\$/.test(value), 'md5crypt ($1$) is refused as too weak: use a $y$ (yescrypt) or $6$ (sha512crypt) hash')
  .regex(
    CRYPT_HASH,
    'must be a well-formed crypt(5) hash: $y$ (yescrypt), $gy$, $7$ (scrypt), $2b$/$2a$/$2y$ (bcrypt), $6$ or $5$ (sha-crypt); or "!" or "*" to lock the password, or "!" before a hash',
  );

const octalMode = z
  .string()
  .regex(/^0?[0-7]{3,4}$/, 'must be an octal mode such as "0644" or "0755"')
  .describe('Octal permission bits as a string, for example "0644".');

const owner = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/, 'must be "user", "user:group" or numeric "uid:gid"')
  .describe('Owner as "user:group" names (resolved through the image\'s /etc/passwd and /etc/group) or numbers "0:0".');

const absolutePath = z
  .string()
  .regex(/^\/[^\0]*$/, 'must be an absolute path')
  .refine((path) => !path.split('/').includes('..'), 'must not contain ".."');

// OpenSSH authorized_keys(5): optional options, then key type and base64 blob.
const sshKey = z
  .string()
  .regex(
    /^(?:[^\n]* )?(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) AAAA[A-Za-z0-9+/]+={0,3}( [^\n]*)?$/,
    'must be one OpenSSH public key line such as "ssh-ed25519 AAAA... comment"',
  );

const wireguardKey = z.string().regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/, 'must be a WireGuard key: 44 characters of base64');

const ipv4Cidr = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}(\/(3[0-2]|[12]?\d))?$/;
const ipv6Cidr = /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(\/(12[0-8]|1[01]\d|\d?\d))?$/;
const cidr = z.string().refine((value) => ipv4Cidr.test(value) || ipv6Cidr.test(value), 'must be an IP address with optional /prefix');
const ipAddress = z.string().refine((value) => (ipv4Cidr.test(value) || ipv6Cidr.test(value)) && !value.includes('/'), 'must be an IP address');
const oneOrMany = <T extends z.ZodType>(item: T) => z.union([item, z.array(item)]);

// systemd.unit(5): unit names are [A-Za-z0-9:_.\\@-] plus a type suffix.
const unitName = z
  .string()
  .regex(
    /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|timer|target|path|mount|automount|swap|slice|device|scope)$/,
    'must be a systemd unit name such as "agent.service"',
  );

const userSchema = z
  .strictObject({
    name: userName.describe('Login name. An existing user is modified, a missing one is created.'),
    password: z.string().min(1).optional().describe('Plain-text password, hashed with sha512-crypt by piimg. Never printed.'),
    passwordHash: cryptHash.optional().describe('A ready crypt(5) hash ("$y$...", "$6$...", "$2b$..."; not md5crypt "$1$"), or "!" / "*" to lock the password. Never printed.'),
    groups: z.array(z.string().regex(/^[a-z_][a-z0-9_-]*$/, 'must be a group name')).optional()
      .describe('Supplementary groups for a new user (those missing in the image are skipped). Default: the groups of the Raspberry Pi OS first user.'),
    uid: z.number().int().min(1).max(60000).optional().describe('uid for a new user; the first free uid >= 1000 by default.'),
    shell: z.string().regex(/^\/[A-Za-z0-9_.+\/-]+$/, 'must be an absolute path such as /bin/bash').optional()
      .describe('Login shell of a new user, /bin/bash by default.'),
  })
  .refine((user) => !(user.password !== undefined && user.passwordHash !== undefined), {
    message: 'give either password or passwordHash, not both',
    path: ['passwordHash'],
  });

const sshSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Enable the OpenSSH server unit.'),
  passwordAuthentication: z.boolean().optional().describe('Allow password logins (written as a sshd_config.d drop-in).'),
  authorizedKeys: z.array(sshKey).optional().describe("Public keys for the user's ~/.ssh/authorized_keys."),
});

const wifiNetwork = z
  .strictObject({
    ssid: z.string().min(1).refine((s) => new TextEncoder().encode(s).length <= 32, 'must be 1-32 bytes (IEEE 802.11 SSID)'),
    password: z.string().regex(/^[\x20-\x7e]{8,63}$/, 'must be 8-63 printable ASCII characters').optional()
      .describe('WPA passphrase. Stored as the derived 64-hex PSK, never in clear.'),
    psk: z.string().regex(/^[0-9A-Fa-f]{64}$/, 'must be 64 hex digits').optional().describe('Pre-computed WPA PSK (64 hex digits).'),
    hidden: z.boolean().optional().describe('The network does not broadcast its SSID.'),
    priority: z.number().int().min(-999).max(999).optional().describe('Higher is preferred.'),
  })
  .refine((n) => !(n.password !== undefined && n.psk !== undefined), { message: 'give either password or psk, not both', path: ['psk'] });

const wifiSchema = z.strictObject({
  country: z.string().regex(/^[A-Z]{2}$/, 'must be a two-letter upper-case ISO 3166 country code such as "DE"')
    .describe('Regulatory domain; Wi-Fi stays blocked on Raspberry Pi OS until it is set.'),
  networks: z.array(wifiNetwork).default([]),
});

const peerSchema = z.strictObject({
  publicKey: wireguardKey,
  presharedKey: wireguardKey.optional(),
  endpoint: z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be "host:port"').optional(),
  allowedIps: z.array(cidr).min(1),
  persistentKeepalive: z.number().int().min(0).max(65535).optional(),
});

const wireguardSchema = z.strictObject({
  interface: z.string().regex(/^[A-Za-z0-9_=+.-]{1,15}$/, 'must be an interface name of 1-15 characters').default('wg0'),
  privateKey: z.union([z.literal('generate'), wireguardKey]).default('generate')
    .describe('"generate" (a key already in the image is kept) or a base64 private key.'),
  address: oneOrMany(cidr),
  dns: oneOrMany(ipAddress).optional(),
  listenPort: z.number().int().min(1).max(65535).optional(),
  mtu: z.number().int().min(576).max(65535).optional(),
  peers: z.array(peerSchema).default([]),
  method: z.enum(['auto', 'wg-quick', 'networkmanager']).default('auto')
    .describe('How the interface comes up: wg-quick (wireguard-tools), a NetworkManager profile, or auto: wg-quick where the image has wg-quick@.service, else NetworkManager.'),
});

const keyboardSchema = z.union([
  z.string().regex(/^[a-z]{2,8}$/, 'must be an XKB layout such as "us" or "de"'),
  z.strictObject({
    layout: z.string().regex(/^[a-z]{2,8}(,[a-z]{2,8})*$/, 'must be an XKB layout'),
    model: z.string().regex(/^[A-Za-z0-9_-]+$/).optional(),
    variant: z.string().regex(/^[A-Za-z0-9_,-]*$/).optional(),
    options: z.string().regex(/^[A-Za-z0-9_:,-]*$/).optional(),
  }),
]);

const servicesSchema = z.strictObject({
  enable: z.array(unitName).default([]),
  disable: z.array(unitName).default([]),
  mask: z.array(unitName).default([]),
});

const fileSchema = z
  .strictObject({
    target: absolutePath.describe('Where the file or tree lands in the image. Paths under the boot mount point go to the boot partition.'),
    source: z.string().min(1).optional().describe('A file or directory on the host, relative to the config file that names it.'),
    content: z.string().optional().describe('Inline UTF-8 content.'),
    contentBase64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64').optional(),
    owner: owner.optional(),
    mode: octalMode.optional().describe('Mode of the file, or of every file of a tree (default: 0755 for host executables, else 0644).'),
    dirMode: octalMode.optional().describe('Mode of directories created for a tree (default 0755).'),
    secret: z.boolean().optional().describe('Redact the content in reports (inline content is always redacted).'),
  })
  .refine((f) => [f.source, f.content, f.contentBase64].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of source, content or contentBase64',
  });

// One config.txt line per value: a newline would smuggle in other settings.
const configTxtItem = z.string().regex(/^[^\r\n#]*$/, 'must be one line without "#"');
const configTxtValue = z.union([configTxtItem, z.array(configTxtItem)]);
const bootSchema = z.strictObject({
  config: z
    .strictObject({
      set: z.record(z.string().regex(/^[A-Za-z0-9_]+$/, 'must be a config.txt key'), configTxtValue).default({})
        .describe('Keys set in the [all] section. A list (dtparam, dtoverlay) adds one line per item.'),
      remove: z.array(z.string().regex(/^[A-Za-z0-9_]+$/)).default([]).describe('Keys whose unconditional lines are removed.'),
    })
    .optional(),
  cmdline: z
    .strictObject({
      append: z.array(z.string().regex(/^\S+$/, 'must be one token without spaces')).default([]),
      remove: z.array(z.string().regex(/^\S+$/, 'must be one token without spaces')).default([])
        .describe('Tokens to drop: "quiet" drops quiet, "splash=" drops every splash=... token.'),
    })
    .optional(),
  seeds: z
    .strictObject({
      ssh: z.boolean().optional().describe('Write the empty "ssh" file (first-boot SSH enable).'),
      userconf: z.boolean().optional().describe('Write userconf.txt (name:hash) for the first-boot user flow.'),
      cloudInit: z.boolean().optional().describe('Write cloud-init NoCloud user-data, network-config and meta-data (Trixie-style images).'),
    })
    .optional(),
});

const varScalar = z.union([z.string(), z.number(), z.boolean()]);
const varValue = z.union([varScalar, z.record(z.string(), z.union([varScalar, z.record(z.string(), varScalar)]))]);

/** The zod schema of a device configuration; the JSON Schema in schema/ is generated from it. */
export const deviceConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    extends: oneOrMany(z.string().min(1)).optional().describe('Base config file(s), relative to this file, merged under this one.'),
    vars: z.record(z.string(), varValue).optional()
      .describe('Values for {{name}} placeholders; nested keys join with dots: {device: {id: "0001"}} defines {{device.id}}.'),
    hostname: hostname.optional(),
    user: userSchema.optional(),
    ssh: sshSchema.optional(),
    wifi: wifiSchema.optional(),
    wireguard: wireguardSchema.optional(),
    timezone: z.string().regex(/^[A-Za-z0-9_+-]+(\/[A-Za-z0-9_+-]+)*$/, 'must be a tz database name such as "Europe/Berlin"').optional(),
    locale: z.string().regex(/^[A-Za-z]{1,8}(_[A-Za-z0-9]{2,3})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?$/, 'must be a locale such as "en_US.UTF-8"').optional(),
    keyboard: keyboardSchema.optional(),
    services: servicesSchema.optional(),
    files: z.array(fileSchema).optional(),
    boot: bootSchema.optional(),
    diskId: z
      .union([z.literal('random'), z.literal('hostname'), z.string().regex(/^(0x)?[0-9A-Fa-f]{8}$/, 'must be 8 hex digits')])
      .optional()
      .describe('New MBR disk identifier: 8 hex digits, "hostname" (derived from the host name, stable) or "random".'),
  })
  .describe('piimg device configuration');

/** The configuration after validation and defaults. */
export type DeviceConfig = z.output<typeof deviceConfigSchema>;
/** The configuration as written in a file. */
export type DeviceConfigInput = z.input<typeof deviceConfigSchema>;
/** One entry of `files`: a file to write into the image. */
export type FileEntry = NonNullable<DeviceConfig['files']>[number];
/** One network of `wifi.networks`. */
export type WifiNetwork = NonNullable<DeviceConfig['wifi']>['networks'][number];
