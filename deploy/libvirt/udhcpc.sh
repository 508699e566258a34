#!/bin/busybox sh
# busybox udhcpc's hook in the guest initramfs (ecgfaas.net=dhcp): applies the lease it got.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for gateway in $router; do ip route add default via "$gateway" dev "$interface"; break; done
    : > /etc/resolv.conf
    for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
    echo "ecgfaas-guest: DHCP lease $ip/${mask:-24} via ${router:-none}" ;;
esac
exit 0
