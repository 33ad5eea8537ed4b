package iptables

import (
	"net/netip"
	"strings"
	"testing"
)

var (
	a4 = netip.MustParseAddr
	p4 = netip.MustParsePrefix
)

// floatingRules returns nova's floating IP rules for floating -> fixed.
func floatingRules(floating, fixed netip.Addr) (pre, out, snat Rule) {
	pre = Rule{Dst: netip.PrefixFrom(floating, floating.BitLen()), Target: DNAT(fixed, 0)}
	out = pre
	snat = Rule{Src: netip.PrefixFrom(fixed, fixed.BitLen()), Target: SNAT(floating)}
	return
}

// sampleRules fills m with a representative set of nova-network rules.
func sampleRules(t *testing.T, m *Manager) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, fam := range []Family{IPv4, IPv6} {
		gw, cidr, dns := a4("10.0.0.1"), p4("10.0.0.0/24"), a4("10.0.0.1")
		if fam == IPv6 {
			gw, cidr, dns = a4("fd00::1"), p4("fd00::/64"), a4("fd00::1")
		}
		_ = gw
		must(m.AddRule(fam, Filter, "INPUT", Rule{InIface: "br100", Proto: UDP, DstPort: 67, Target: Accept}))
		must(m.AddRule(fam, Filter, "INPUT", Rule{InIface: "br100", Dst: netip.PrefixFrom(dns, dns.BitLen()), Proto: UDP, DstPort: 53, Target: Accept}))
		must(m.AddRule(fam, Filter, "FORWARD", Rule{InIface: "br100", Target: Accept}))
		must(m.AddRule(fam, Filter, "FORWARD", Rule{OutIface: "br100", CTState: CTRelated | CTEstablished, Target: Accept}))
		must(m.AddChain(fam, Filter, "inst-1"))
		must(m.AddRule(fam, Filter, "inst-1", Rule{Src: cidr, Proto: TCP, DstPort: 22, Target: Accept}))
		must(m.AddRule(fam, Filter, "inst-1", Rule{Proto: ICMP, Target: Accept}))
		must(m.AddRule(fam, Filter, "inst-1", Rule{Target: Drop}))
		must(m.AddRule(fam, Filter, "local", Rule{Dst: cidr, Target: Jump("inst-1")}))
		must(m.AddRule(fam, NAT, "POSTROUTING", Rule{Src: cidr, Dst: cidr, Target: Accept}))
	}
	must(m.AddRule(IPv4, NAT, "snat", Rule{Src: p4("10.0.0.0/24"), OutIface: "eth0", Target: SNAT(a4("192.0.2.2"))}))
	must(m.AddRule(IPv4, NAT, "PREROUTING", Rule{Dst: p4("169.254.169.254/32"), Proto: TCP, DstPort: 80, Target: DNAT(a4("10.0.0.1"), 8775)}))
	pre, out, snat := floatingRules(a4("192.0.2.10"), a4("10.0.0.5"))
	must(m.AddRule(IPv4, NAT, "PREROUTING", pre))
	must(m.AddRule(IPv4, NAT, "OUTPUT", out))
	must(m.AddRule(IPv4, NAT, "float-snat", snat))
}

// onlyLines keeps the lines of a canonical save that mention one of subs,
// plus table headers and COMMITs.
func onlyLines(save string, subs ...string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(save, "\n") {
		keep := strings.HasPrefix(l, "*") || strings.HasPrefix(l, "COMMIT")
		for _, s := range subs {
			keep = keep || strings.Contains(l, s)
		}
		if keep {
			b.WriteString(l)
		}
	}
	return b.String()
}
