// Package floatpairs is the floor the floating-IP benchmarks (bench/iptables,
// bench/floating) measure novanet against: pairs of floating and fixed
// addresses, each a DNAT and an SNAT rule written straight to the iptables
// manager, without novanet's rules or agent.
package floatpairs

import (
	"net/netip"

	"novanet/linuxnet/iptables"
)

// Pair is the i-th floating (100.64.0.0/16) and fixed (10.1.0.0/16)
// address.
func Pair(i int) (floating, fixed netip.Addr) {
	return netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
}

// Add adds the i-th pair's rules to m: nat PREROUTING -d FLOAT DNAT to
// FIXED and float-snat -s FIXED SNAT to FLOAT (IPv4).
func Add(m *iptables.Manager, i int) error {
	fl, fx := Pair(i)
	if err := m.AddRule(iptables.IPv4, iptables.NAT, "PREROUTING", iptables.Rule{
		Dst: netip.PrefixFrom(fl, 32), Target: iptables.DNAT(fx, 0)}); err != nil {
		return err
	}
	return m.AddRule(iptables.IPv4, iptables.NAT, "float-snat", iptables.Rule{
		Src: netip.PrefixFrom(fx, 32), Target: iptables.SNAT(fl)})
}
