#!/bin/sh
# busybox udhcpc event script for a test or demo VM: apply what the server
# gave, and record it in $STATE/udhcpc-<event>.env.
env | grep -E '^(ip|mask|router|dns|domain|mtu|interface|hostname)=' | sort > "$STATE/udhcpc-$1.env"
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
bound|renew)
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; break; done ;;
esac
exit 0
