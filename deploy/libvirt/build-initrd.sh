#!/usr/bin/env bash
# Builds the guest initramfs for KVM, QEMU and Xen guests: busybox (static), the kernel modules for
# virtio (network, block, 9p), Xen's block and network frontends, ext4 and overlayfs with their
# dependencies in load order, guest-init.sh as /init and udhcpc.sh as its DHCP hook.
#   build-initrd.sh OUT.img [KERNEL_VERSION]   (default: the newest under /lib/modules)
# Needs Debian's busybox-static, kmod, cpio and a linux-image package (for the modules).
set -euo pipefail
out="$1"
kver="${2:-$(ls /lib/modules | sort -V | tail -n 1)}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,etc,proc,sys,mnt,newroot,modules}
cp /bin/busybox "$work/bin/busybox"
index=0
for module in virtio_pci virtio_net virtio_blk 9p 9pnet_virtio xen_blkfront xen_netfront ext4 overlay; do
  modprobe -S "$kver" --show-depends "$module"
done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' | while read -r ko; do
  # Newer Debian kernels compress their modules; busybox's insmod wants them plain.
  target="$work/modules/$(printf '%02d' "$index")-$(basename "$ko" | sed -E 's/\.(xz|zst|gz)$//')"
  case "$ko" in
    *.xz) xz -dc "$ko" > "$target" ;;
    *.zst) zstd -qdc "$ko" > "$target" ;;
    *.gz) gzip -dc "$ko" > "$target" ;;
    *) cp "$ko" "$target" ;;
  esac
  index=$((index + 1))
done
cp "$here/guest-init.sh" "$work/init"
cp "$here/udhcpc.sh" "$work/udhcpc.sh"
chmod 755 "$work/init" "$work/udhcpc.sh"
mkdir -p "$(dirname "$out")"
# A file of its own, renamed into place: two deploys building at once each get a whole image.
tmp="$(mktemp "$out.XXXXXX")"
(cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
echo "$out ($kver)"
