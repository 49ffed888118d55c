#!/usr/bin/env bash
# What a shell script does today for the same device payload as bench/inject.bench.mjs,
# with native tools and without root: cp, mtools for the boot partition, debugfs -w for
# the root partition, e2fsck -fn at the end (piimg verifies too).
#   inject-native.sh BASE OUT PAYLOAD_DIR BOOT_OFFSET ROOT_OFFSET
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin" MTOOLS_SKIP_CHECK=1
base=$1 out=$2 payload=$3 boot=$4 root=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp --sparse=always "$base" "$out"

# Boot partition: config.txt and cmdline.txt edits.
mtype -i "$out@@$boot" ::/config.txt > "$work/config.txt"
printf '[all]\ndtparam=i2c_arm=on\nenable_uart=1\n' >> "$work/config.txt"
mcopy -o -i "$out@@$boot" "$work/config.txt" ::/config.txt
mtype -i "$out@@$boot" ::/cmdline.txt | tr -d '\n' > "$work/cmdline.txt"
printf ' net.ifnames=0 cfg80211.ieee80211_regdom=DE\n' >> "$work/cmdline.txt"
mcopy -o -i "$out@@$boot" "$work/cmdline.txt" ::/cmdline.txt

# Root partition: files prepared here, then one debugfs session.
hash=$(openssl passwd -6 -salt benchsalt 'correct horse battery staple')
debugfs -R 'cat /etc/shadow' "$out?offset=$root" 2>/dev/null | sed "s|^pi:[^:]*:|pi:$hash:|" > "$work/shadow"
echo 'sensor-0007' > "$work/hostname"
debugfs -R 'cat /etc/hosts' "$out?offset=$root" 2>/dev/null | sed 's/raspberrypi/sensor-0007/' > "$work/hosts"
cp "$payload/authorized_keys" "$work/authorized_keys"
cp "$payload/wifi.nmconnection" "$work/wifi.nmconnection"
cp "$payload/wg0.conf" "$work/wg0.conf"
echo 'Europe/Berlin' > "$work/timezone"
{
  echo "rm /etc/shadow"; echo "write $work/shadow /etc/shadow"; echo "sif /etc/shadow mode 0100640"; echo "sif /etc/shadow gid 42"
  echo "rm /etc/hostname"; echo "write $work/hostname /etc/hostname"
  echo "rm /etc/hosts"; echo "write $work/hosts /etc/hosts"
  echo "mkdir /home/pi/.ssh"; echo "sif /home/pi/.ssh mode 040700"; echo "sif /home/pi/.ssh uid 1000"; echo "sif /home/pi/.ssh gid 1000"
  echo "write $work/authorized_keys /home/pi/.ssh/authorized_keys"
  echo "sif /home/pi/.ssh/authorized_keys mode 0100600"; echo "sif /home/pi/.ssh/authorized_keys uid 1000"; echo "sif /home/pi/.ssh/authorized_keys gid 1000"
  echo "symlink /etc/systemd/system/multi-user.target.wants/ssh.service /lib/systemd/system/ssh.service"
  echo "write $work/wifi.nmconnection /etc/NetworkManager/system-connections/home.nmconnection"
  echo "sif /etc/NetworkManager/system-connections/home.nmconnection mode 0100600"
  echo "mkdir /etc/wireguard"; echo "sif /etc/wireguard mode 040700"
  echo "write $work/wg0.conf /etc/wireguard/wg0.conf"; echo "sif /etc/wireguard/wg0.conf mode 0100600"
  echo "symlink /etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service /lib/systemd/system/wg-quick@.service"
  echo "rm /etc/timezone"; echo "write $work/timezone /etc/timezone"
  echo "rm /etc/localtime"; echo "symlink /etc/localtime /usr/share/zoneinfo/Europe/Berlin"
  echo "mkdir /opt"; echo "mkdir /opt/agent"
  for d in $(cd "$payload/agent" && find . -mindepth 1 -type d | sort); do echo "mkdir /opt/agent/${d#./}"; done
  for f in $(cd "$payload/agent" && find . -type f | sort); do
    echo "write $payload/agent/${f#./} /opt/agent/${f#./}"
    echo "sif /opt/agent/${f#./} mode 0100755"; echo "sif /opt/agent/${f#./} uid 1000"; echo "sif /opt/agent/${f#./} gid 1000"
  done
  echo "write $payload/agent.service /etc/systemd/system/agent.service"
  echo "symlink /etc/systemd/system/multi-user.target.wants/agent.service /etc/systemd/system/agent.service"
} > "$work/commands"
debugfs -w -f "$work/commands" "$out?offset=$root" >/dev/null 2>&1
e2fsck -fn "$out?offset=$root" >/dev/null
