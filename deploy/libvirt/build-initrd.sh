#!/usr/bin/env bash
# Builds the guest initramfs for KVM and QEMU guests: busybox (static), the kernel modules for
# virtio, 9p and overlayfs with their dependencies in load order, and guest-init.sh as /init.
#   build-initrd.sh OUT.img [KERNEL_VERSION]   (default: the newest under /lib/modules)
# Needs Debian's busybox-static, kmod, cpio and a linux-image package (for the modules).
set -euo pipefail
out="$1"
kver="${2:-$(ls /lib/modules | sort -V | tail -n 1)}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,mnt,newroot,modules}
cp /bin/busybox "$work/bin/busybox"
index=0
for module in virtio_pci virtio_net 9p 9pnet_virtio overlay; do
  modprobe -S "$kver" --show-depends "$module"
done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$work/modules/$(printf '%02d' "$index")-$(basename "$ko")"
  index=$((index + 1))
done
cp "$here/guest-init.sh" "$work/init"
chmod 755 "$work/init"
mkdir -p "$(dirname "$out")"
(cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out ($kver)"
