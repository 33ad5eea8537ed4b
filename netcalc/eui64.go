package netcalc

import (
	"fmt"
	"net"
	"net/netip"
)

// EUI64 returns the SLAAC address an interface with the Ethernet address
// mac makes in the /64 prefix (RFC 4291 appendix A: ff:fe in the middle of
// the MAC, the universal/local bit flipped), as nova-network's
// ipv6.to_global did.
func EUI64(prefix netip.Prefix, mac net.HardwareAddr) (netip.Addr, error) {
	if !prefix.IsValid() || !prefix.Addr().Is6() || prefix.Addr().Is4In6() || prefix.Bits() != 64 {
		return netip.Addr{}, fmt.Errorf("eui-64 in %v: want an IPv6 /64", prefix)
	}
	if len(mac) != 6 {
		return netip.Addr{}, fmt.Errorf("eui-64 of %q: want a 6-byte Ethernet address", mac)
	}
	a := prefix.Masked().Addr().As16()
	a[8], a[9], a[10], a[11] = mac[0]^0x02, mac[1], mac[2], 0xff
	a[12], a[13], a[14], a[15] = 0xfe, mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a), nil
}
