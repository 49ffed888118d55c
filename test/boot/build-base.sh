#!/usr/bin/env bash
# Builds a small bootable Raspberry Pi OS-like disk image (amd64) for the first-boot test, or
# reuses a cached one. Prints the image path on the last line of stdout.
#
#   test/boot/build-base.sh bookworm|trixie
#
# Run as root. Needs mmdebstrap, fdisk (sfdisk), dosfstools, mtools, e2fsprogs.
# Cache: $PIIMG_BOOT_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/piimg-boot; an image is keyed
# by the sha256 of this script and everything in base/, so editing the recipe rebuilds it.
# Mirror: $PIIMG_BOOT_MIRROR, else the first Debian mirror of the host's apt sources.
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"
release=${1:?usage: build-base.sh bookworm|trixie}
here=$(cd "$(dirname "$0")" && pwd)
cache=${PIIMG_BOOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/piimg-boot}

case $release in
  bookworm)
    # Raspberry Pi OS Bookworm: 4 MiB alignment, FAT32 with 2 KiB clusters, ext4 as mke2fs
    # 1.46/1.47.0 defaults make it (no orphan_file). wireguard-tools (and a resolvconf for its
    # DNS=) exercise the wg-quick path.
    p1_start=8192 fat_cluster_sectors=4 disk_id=0x5eed0c12
    ext4_features='^64bit,^huge_file,^orphan_file,^metadata_csum_seed'
    extra=wireguard-tools,openresolv
    ;;
  trixie)
    # Raspberry Pi OS Trixie (2026): 8 MiB alignment, FAT32 with 512-byte clusters, ext4 with
    # Debian 13's e2fsprogs defaults (metadata_csum_seed, orphan_file); cloud-init, no
    # wireguard-tools.
    p1_start=16384 fat_cluster_sectors=1 disk_id=0x5eed0d13
    ext4_features='^64bit,^huge_file,metadata_csum,metadata_csum_seed,orphan_file'
    extra=cloud-init,netplan.io
    ;;
  *) echo "unknown release: $release" >&2; exit 2 ;;
esac

key=$(cat "$0" "$here"/base/* | sha256sum | cut -c1-16)
image=$cache/$release-$key.img
if [ -s "$image" ]; then
  echo "cached base: $image" >&2
  echo "$image"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-base.sh builds as root (mmdebstrap, chroot); no cached $image" >&2; exit 3; }

mirror=${PIIMG_BOOT_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
mirror=$(echo "$mirror" | tr -d ' ')

start=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "$cache/build-$release.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/root

packages=systemd-sysv,udev,openssh-server,network-manager,sudo,locales,keyboard-configuration,tzdata
packages+=,iproute2,dbus,kmod,initramfs-tools,linux-image-cloud-amd64,e2fsprogs,dosfstools,$extra
# The cloud kernel has virtio, ext4, vfat, WireGuard and qemu's fw_cfg; no Recommends, no docs.
mmdebstrap --variant=apt --mode=root --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook="\"$here/base/customize.sh\" \"\$1\" $release" \
  "$release" "$tree" "$mirror" >&2

# Boot partition, as the Pi firmware sees it: kernel, initramfs, config.txt, cmdline.txt.
boot=$work/boot
mkdir -p "$boot"
cp "$(ls "$tree"/boot/vmlinuz-* | head -n1)" "$boot/kernel8.img"
cp "$(ls "$tree"/boot/initrd.img-* | head -n1)" "$boot/initramfs8"
rm -f "$tree"/boot/initrd.img-*
partuuid=$(printf '%08x' "$disk_id")
printf 'console=serial0,115200 console=tty1 root=PARTUUID=%s-02 rootfstype=ext4 fsck.repair=yes rootwait\n' "$partuuid" >"$boot/cmdline.txt"
cat >"$boot/config.txt" <<'CFG'
# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[all]
CFG
if [ "$release" = trixie ]; then
  # Comment-only NoCloud seed, as on Raspberry Pi OS images since 2025-11.
  printf '#cloud-config\n# This is the user-data configuration file for cloud-init.\n' >"$boot/user-data"
  printf '# This file contains a netplan-compatible configuration which cloud-init will apply.\n' >"$boot/network-config"
  printf '# This is the meta-data configuration file for cloud-init.\ndsmode: local\n' >"$boot/meta-data"
fi
cat >"$tree/etc/fstab" <<FSTAB
proc            /proc           proc    defaults          0       0
PARTUUID=$partuuid-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=$partuuid-02  /               ext4    defaults,noatime  0       1
FSTAB

# Disk: MBR, p1 FAT32 "bootfs" 512 MiB, p2 ext4 "rootfs" sized like pi-gen
# (used + 20 % + 200 MiB, rounded up to 8 MiB).
boot_sectors=1048576
p2_start=$((p1_start + boot_sectors))
used_kib=$(du -sk --apparent-size "$tree" | cut -f1)
root_mib=$(( (used_kib * 12 / 10 / 1024 + 200 + 7) / 8 * 8 ))
root_sectors=$((root_mib * 2048))
disk=$work/disk.img
truncate -s $(( (p2_start + root_sectors) * 512 )) "$disk"
sfdisk --quiet "$disk" >&2 <<TABLE
label: dos
label-id: $disk_id
unit: sectors
start=$p1_start, size=$boot_sectors, type=c
start=$p2_start, size=$root_sectors, type=83
TABLE

mkfs.vfat -F 32 -s "$fat_cluster_sectors" -n bootfs -C "$work/p1.img" $((boot_sectors / 2)) >&2
mcopy -i "$work/p1.img" -s "$boot"/* ::/
dd if="$work/p1.img" of="$disk" bs=512 seek="$p1_start" conv=sparse,notrunc status=none
rm "$work/p1.img"

truncate -s $((root_sectors * 512)) "$work/p2.img"
mkfs.ext4 -q -L rootfs -O "$ext4_features" -d "$tree" "$work/p2.img"
e2fsck -fn "$work/p2.img" >&2
dd if="$work/p2.img" of="$disk" bs=1M seek=$((p2_start / 2048)) conv=sparse,notrunc status=none
rm "$work/p2.img"

mv "$disk" "$image.tmp"
mv "$image.tmp" "$image"
echo "built base $release in $(( $(date +%s) - start )) s: $image ($(du -k "$image" | cut -f1) KiB allocated, root ${root_mib} MiB)" >&2
echo "$image"
