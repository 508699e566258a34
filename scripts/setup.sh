#!/usr/bin/env bash
# Installs what the demo needs on a fresh Debian/Ubuntu machine with Node 20: the npm packages (when
# missing or when the lock file changed) and Debian's redis-server. With --tests, also what the
# tests need: libvirt's client tools (virsh, with libvirt's test driver, and virt-xml-validate, with
# libvirt's schemas) and xmllint, which virt-xml-validate runs but does not pull in; with
# ECGFAAS_GUEST_TESTS=1 as well, what booting real QEMU guests needs (and building a root image).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${1:-}" = "--tests" ]; then
  { command -v virsh >/dev/null 2>&1 && command -v virt-xml-validate >/dev/null 2>&1; } || missing+=(libvirt-clients)
  command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
  # The libvirt driver appends each guest's seed to its initramfs with cpio.
  command -v cpio >/dev/null 2>&1 || missing+=(cpio)
  # The real-guest test (ECGFAAS_GUEST_TESTS=1): QEMU, libvirt's daemon, a Debian kernel and what the guest initramfs is built from.
  if [ "${ECGFAAS_GUEST_TESTS:-}" = "1" ]; then
    command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
    command -v libvirtd >/dev/null 2>&1 || missing+=(libvirt-daemon-system libvirt-daemon-driver-qemu)
    ls /boot/vmlinuz-* >/dev/null 2>&1 || missing+=(linux-image-amd64)
    [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
    command -v modprobe >/dev/null 2>&1 || missing+=(kmod)
    # The root-image guest: `ecgfaas image build` (debootstrap, mkfs.ext4 -d).
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
  fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
