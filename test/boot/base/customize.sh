#!/usr/bin/env bash
# mmdebstrap customize hook: turns a Debian tree into a Raspberry Pi OS-like first-boot state.
# Usage: customize.sh ROOT RELEASE (bookworm|trixie). Refs: pi-gen (stage2, export-image),
# raspberrypi-sys-mods, userconf-pi; cloud-init NoCloud docs.
set -euo pipefail
root=$1 release=$2
here=$(cd "$(dirname "$0")" && pwd)
chr() { chroot "$root" "$@"; }

# Locale and keyboard as pi-gen leaves them (en_GB, gb).
echo 'en_GB.UTF-8 UTF-8' >"$root/etc/locale.gen"
chr locale-gen
if [ "$release" = trixie ]; then
  # Debian 13: /etc/default/locale is a link to /etc/locale.conf.
  echo 'LANG=en_GB.UTF-8' >"$root/etc/locale.conf"
  ln -sfn ../locale.conf "$root/etc/default/locale"
else
  echo 'LANG=en_GB.UTF-8' >"$root/etc/default/locale"
fi
cat >"$root/etc/default/keyboard" <<'KBD'
XKBMODEL="pc105"
XKBLAYOUT="gb"
XKBVARIANT=""
XKBOPTIONS=""
BACKSPACE="guess"
KBD

# Time zone: only the /etc/localtime link on Debian 13, plus /etc/timezone before.
ln -sfn /usr/share/zoneinfo/Europe/London "$root/etc/localtime"
if [ "$release" = trixie ]; then rm -f "$root/etc/timezone"; else echo Europe/London >"$root/etc/timezone"; fi

# Identity: host name, and a name for the fleet example's VPN endpoint (the VM has no network;
# wg-quick fails when an endpoint does not resolve).
echo raspberrypi >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters

127.0.1.1	raspberrypi
192.0.2.1	vpn.example.com
HOSTS
if [ "$release" = trixie ]; then echo uninitialized >"$root/etc/machine-id"; else : >"$root/etc/machine-id"; fi
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*

# The default user: uid 1000 "pi" in pi-gen's groups, no usable password. On Trixie it is the
# placeholder with /usr/sbin/nologin that the first-boot wizard renames.
for g in adm dialout cdrom audio users sudo video games plugdev input gpio spi i2c netdev render; do
  chr getent group "$g" >/dev/null || chr groupadd --system "$g"
done
shell=/bin/bash
[ "$release" = trixie ] && shell=/usr/sbin/nologin
chr useradd --uid 1000 --user-group --create-home --shell "$shell" \
  --groups adm,dialout,cdrom,audio,users,sudo,video,games,plugdev,input,gpio,spi,i2c,netdev,render pi
chr usermod --lock pi
cat >"$root/etc/ssh/sshd_config.d/rename_user.conf" <<'SSHD'
Banner /usr/share/userconf-pi/sshd_banner
SSHD
mkdir -p "$root/usr/share/userconf-pi"
printf '\nPlease note that SSH may not work until a valid user has been set up.\n\n' >"$root/usr/share/userconf-pi/sshd_banner"

# NetworkManager: radio off until a country is set.
mkdir -p "$root/var/lib/NetworkManager"
printf '[main]\nNetworkingEnabled=true\nWirelessEnabled=false\nWWANEnabled=true\n' >"$root/var/lib/NetworkManager/NetworkManager.state"

# Units: stand-ins for the Raspberry Pi OS pieces, and the report.
for unit in userconfig.service bluetooth.service regenerate_ssh_host_keys.service piimg-boot-report.service; do
  install -m 0644 "$here/$unit" "$root/usr/lib/systemd/system/$unit"
done
install -m 0755 "$here/piimg-boot-report" "$root/usr/local/sbin/piimg-boot-report"
chr systemctl enable userconfig.service bluetooth.service regenerate_ssh_host_keys.service piimg-boot-report.service
# Raspberry Pi OS ships sshd disabled; the recipe enables it.
chr systemctl disable ssh.service
[ "$release" = trixie ] && chr systemctl disable getty@tty1.service

if [ "$release" = trixie ]; then
  # cloud-init as Raspberry Pi OS configures it: NoCloud seeded from the boot partition,
  # netplan rendered to NetworkManager. Its own growpart/resize are off (the Pi resizes in
  # its initramfs).
  cat >"$root/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg" <<'CFG'
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    seedfrom: file:///boot/firmware/
system_info:
  default_user:
    name: pi
growpart:
  mode: 'off'
resize_rootfs: false
CFG
  mkdir -p "$root/usr/lib/netplan"
  printf 'network:\n  version: 2\n  renderer: NetworkManager\n' >"$root/usr/lib/netplan/00-network-manager-all.yaml"
  chmod 0600 "$root/usr/lib/netplan/00-network-manager-all.yaml"
  # The seed lives on the boot partition: read it only once that is mounted.
  mkdir -p "$root/etc/systemd/system/cloud-init-local.service.d"
  printf '[Unit]\nRequiresMountsFor=/boot/firmware\n' >"$root/etc/systemd/system/cloud-init-local.service.d/10-bootfs.conf"
fi

# Test tolerance, not Raspberry Pi OS: under TCG on a busy machine udev can take longer than
# systemd's default 90 s to announce a disk, which would fail the boot-partition mount.
mkdir -p "$root/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultDeviceTimeoutSec=600\nDefaultTimeoutStartSec=600\n' >"$root/etc/systemd/system.conf.d/piimg-boot-test.conf"

mkdir -p "$root/boot/firmware"
chr apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
