#!/bin/busybox sh
# /init of the platform's guest initramfs (deploy/libvirt/build-initrd.sh): brings up a KVM, QEMU or
# Xen guest and runs one warm worker in it. Its root is read-only under a tmpfs overlay, either the
# host's over 9p (KVM and QEMU: the worker runs the host's checkout) or a disk image made by
# `ecgfaas image build` (any hypervisor; Xen has no 9p). What the worker needs comes on the kernel
# command line (ecgfaas.*); S3 secrets come in a per-guest seed archive appended to this initramfs
# (/seed/worker.env), never on the command line (virsh dumpxml and /proc/cmdline show that).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for ko in /modules/*.ko; do insmod "$ko" 2>/dev/null; done

VM=guest; WORKER=; REDIS=; DIR=/; ROOT=9p:hostroot; NET=user; HOST=unknown; EXTRA=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ecgfaas.vm=*) VM=${arg#*=} ;;
    ecgfaas.worker=*) WORKER=${arg#*=} ;;
    ecgfaas.redis=*) REDIS=${arg#*=} ;;
    ecgfaas.dir=*) DIR=${arg#*=} ;;
    ecgfaas.root=*) ROOT=${arg#*=} ;;
    ecgfaas.net=*) NET=${arg#*=} ;;
    ecgfaas.host=*) HOST=${arg#*=} ;;
    ecgfaas.args=*) EXTRA=$(echo "${arg#*=}" | tr ',' ' ') ;;
  esac
done
echo "ecgfaas-guest: vm=$VM worker=$WORKER root=$ROOT net=$NET"
fail() { echo "ecgfaas-guest: $*"; sync; poweroff -f; }

mkdir -p /mnt/lower /mnt/upper /newroot
case "$ROOT" in
  9p:*)
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 "${ROOT#9p:}" /mnt/lower || fail "no 9p root ${ROOT#9p:}" ;;
  disk:*)
    DEV=${ROOT#disk:}
    # Block devices appear asynchronously once their driver has probed (xen-blkfront waits for the backend).
    tries=0
    while [ ! -b "$DEV" ] && [ "$tries" -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
    mount -t ext4 -o ro "$DEV" /mnt/lower || fail "cannot mount the root image on $DEV" ;;
  *) fail "unknown ecgfaas.root=$ROOT (9p:TAG or disk:DEVICE)" ;;
esac
mount -t tmpfs -o size=60% tmpfs /mnt/upper
mkdir -p /mnt/upper/u /mnt/upper/w
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/upper/u,workdir=/mnt/upper/w /newroot
# The host's container marker would make systemd-detect-virt in the guest say "docker".
rm -f /newroot/.dockerenv
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
# /tmp stays the overlay's: the compile cache there (tsx; the host's, or the one `image build` warmed) spares the emulated CPU minutes.
mkdir -p /newroot/run/ecgfaas
ENVFILE=/run/ecgfaas/worker.env
if [ -f /seed/worker.env ]; then cp /seed/worker.env "/newroot$ENVFILE"; chmod 600 "/newroot$ENVFILE"; else : > "/newroot$ENVFILE"; fi

ip link set lo up
IF=eth0
tries=0
while ! ip link show "$IF" >/dev/null 2>&1 && [ "$tries" -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
ip link set "$IF" up
case "$NET" in
  # QEMU's user-mode network: the guest is 10.0.2.15, the host (its loopback too) is 10.0.2.2.
  user) ip addr add 10.0.2.15/24 dev "$IF"; ip route add default via 10.0.2.2 ;;
  dhcp) udhcpc -i "$IF" -s /udhcpc.sh -n -q -t 20 -T 1 || fail "no DHCP lease on $IF" ;;
  static:*)
    # static:ADDRESS/PREFIX:GATEWAY[:DNS]
    spec=${NET#static:}; addr=${spec%%:*}; rest=${spec#*:}; gw=${rest%%:*}; dns=${rest#*:}
    ip addr add "$addr" dev "$IF"; ip route add default via "$gw"
    [ "$dns" != "$rest" ] && echo "nameserver $dns" > /etc/resolv.conf ;;
  *) fail "unknown ecgfaas.net=$NET (user, dhcp or static:ADDR/PREFIX:GATEWAY[:DNS])" ;;
esac
[ -s /etc/resolv.conf ] && cp /etc/resolv.conf /newroot/etc/resolv.conf
hostname "$VM"
echo "$VM" > /newroot/etc/hostname

echo "ecgfaas-guest: starting the worker"
chroot /newroot /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root ECGFAAS_GUEST=1 /bin/sh -c \
  "cd '$DIR' && set -a && . '$ENVFILE' && set +a && exec node bin/ecgfaas.js worker --redis '$REDIS' --vm '$VM' --worker-id '$WORKER' --driver libvirt --host '$HOST' $EXTRA"
echo "ecgfaas-guest: worker exited ($?)"
sync
poweroff -f
