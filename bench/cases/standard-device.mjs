// The standard device of the inject, batch and fleet benches: a 20 MiB agent of 200 random
// files in 10 directories, its systemd unit, and a configuration with host name, user
// password, SSH key, Wi-Fi, WireGuard, time zone, services and boot settings. The payload
// directory also holds what bench/cases/inject-native.sh writes with the native tools
// (authorized_keys, a NetworkManager profile, wg0.conf).
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

export const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example';

/** Writes the payload into `payload` (created). */
export function writeStandardPayload(payload) {
  for (let d = 0; d < 10; d++) mkdirSync(join(payload, 'agent', `module-${d}`), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(payload, 'agent', `module-${i % 10}`, `part-${i}.bin`), randomBytes(100 * 1024 + (i % 7)));
  writeFileSync(join(payload, 'authorized_keys'), SSH_KEY + '\n');
  writeFileSync(join(payload, 'agent.service'), '[Unit]\nDescription=agent\n[Service]\nExecStart=/opt/agent/module-0/part-0.bin\n[Install]\nWantedBy=multi-user.target\n');
  writeFileSync(
    join(payload, 'wifi.nmconnection'),
    '[connection]\nid=Home\ntype=wifi\n[wifi]\nmode=infrastructure\nssid=Home\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=wifi-secret-123\n[ipv4]\nmethod=auto\n',
  );
  writeFileSync(
    join(payload, 'wg0.conf'),
    '[Interface]\nPrivateKey=yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress=10.10.0.5/24\n[Peer]\nPublicKey=xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nEndpoint=vpn.example.com:51820\nAllowedIPs=10.10.0.0/24\n',
  );
}

/** The configuration, as YAML; `hostname` may be a {{variable}}. Sources are relative to the payload directory. */
export function standardConfig({ hostname = 'sensor-0007', wireguard = true } = {}) {
  return `hostname: "${hostname}"
user: { name: pi, password: "correct horse battery staple" }
ssh: { enabled: true, authorizedKeys: ["${SSH_KEY}"] }
wifi: { country: DE, networks: [{ ssid: Home, password: wifi-secret-123 }] }
${
  wireguard
    ? `wireguard:
  interface: wg0
  privateKey: yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
  address: 10.10.0.5/24
  peers: [{ publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=, endpoint: "vpn.example.com:51820", allowedIps: [10.10.0.0/24] }]
`
    : ''
}timezone: Europe/Berlin
files:
  - { source: ./agent, target: /opt/agent, owner: "pi:pi", mode: "0755" }
  - { source: ./agent.service, target: /etc/systemd/system/agent.service }
services: { enable: [agent.service] }
boot:
  config: { set: { dtparam: [i2c_arm=on], enable_uart: "1" } }
  cmdline: { append: [net.ifnames=0] }
`;
}
