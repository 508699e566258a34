#!/bin/busybox sh
# /init of the platform's guest initramfs (deploy/libvirt/build-initrd.sh): brings up a KVM or QEMU
# guest whose root is the host's, read-only over 9p under a tmpfs overlay, and runs one warm worker
# in it. What the worker needs comes on the kernel command line (ecgfaas.*); S3 secrets come from
# an env file on the host's disk, never the command line (virsh dumpxml shows that).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for ko in /modules/*.ko; do insmod "$ko" 2>/dev/null; done

VM=guest; WORKER=; REDIS=; DIR=/; TAG=hostroot; ENVFILE=/dev/null; HOST=unknown; EXTRA=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ecgfaas.vm=*) VM=${arg#*=} ;;
    ecgfaas.worker=*) WORKER=${arg#*=} ;;
    ecgfaas.redis=*) REDIS=${arg#*=} ;;
    ecgfaas.dir=*) DIR=${arg#*=} ;;
    ecgfaas.root=9p:*) TAG=${arg#ecgfaas.root=9p:} ;;
    ecgfaas.env=*) ENVFILE=${arg#*=} ;;
    ecgfaas.host=*) HOST=${arg#*=} ;;
    ecgfaas.args=*) EXTRA=$(echo "${arg#*=}" | tr ',' ' ') ;;
  esac
done
echo "ecgfaas-guest: vm=$VM worker=$WORKER"

mkdir -p /mnt/host /mnt/upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 "$TAG" /mnt/host || { echo "ecgfaas-guest: no 9p root"; poweroff -f; }
mount -t tmpfs -o size=60% tmpfs /mnt/upper
mkdir -p /mnt/upper/u /mnt/upper/w
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/upper/u,workdir=/mnt/upper/w /newroot
# The host's container marker would make systemd-detect-virt in the guest say "docker".
rm -f /newroot/.dockerenv
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
# /tmp stays the overlay's: the host's compile cache there (tsx) spares the emulated CPU minutes.

# QEMU's user-mode network: the guest is 10.0.2.15, the host (its loopback too) is 10.0.2.2.
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
hostname "$VM"

echo "ecgfaas-guest: starting the worker"
chroot /newroot /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root ECGFAAS_GUEST=1 /bin/sh -c \
  "cd '$DIR' && set -a && . '$ENVFILE' && set +a && exec node bin/ecgfaas.js worker --redis '$REDIS' --vm '$VM' --worker-id '$WORKER' --driver libvirt --host '$HOST' $EXTRA"
echo "ecgfaas-guest: worker exited ($?)"
sync
poweroff -f
