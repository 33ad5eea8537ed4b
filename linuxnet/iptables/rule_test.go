package iptables

import (
	"errors"
	"testing"
)

func TestRuleRender(t *testing.T) {
	wrap := func(s string) string { return "nn-" + s }
	has := func(s string) bool { return s == "local" }
	tests := []struct {
		fam   Family
		table Table
		rule  Rule
		want  string
	}{
		{IPv4, Filter, Rule{Src: p4("10.0.0.7/24"), InIface: "br100", Proto: TCP, DstPort: 22, Target: Accept}, "-s 10.0.0.0/24 -i br100 -p tcp -m tcp --dport 22 -j ACCEPT"},
		{IPv4, Filter, Rule{Proto: UDP, SrcPort: 68, DstPort: 67, Target: Accept}, "-p udp -m udp --sport 68 --dport 67 -j ACCEPT"},
		{IPv4, Filter, Rule{OutIface: "br+", CTState: CTEstablished | CTRelated, Target: Accept}, "-o br+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"},
		{IPv4, Filter, Rule{Proto: ICMP, Target: Reject}, "-p icmp -j REJECT --reject-with icmp-port-unreachable"},
		{IPv6, Filter, Rule{Proto: ICMP, Target: Reject}, "-p ipv6-icmp -j REJECT --reject-with icmp6-port-unreachable"},
		{IPv4, Filter, Rule{Dst: p4("10.0.0.0/24"), Target: Jump("local")}, "-d 10.0.0.0/24 -j nn-local"},
		{IPv4, NAT, Rule{Dst: p4("192.0.2.10/32"), Target: DNAT(a4("10.0.0.5"), 0)}, "-d 192.0.2.10/32 -j DNAT --to-destination 10.0.0.5"},
		{IPv4, NAT, Rule{Proto: TCP, DstPort: 80, Target: DNAT(a4("10.0.0.1"), 8775)}, "-p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8775"},
		{IPv6, NAT, Rule{Proto: TCP, DstPort: 80, Target: DNAT(a4("fd00::1"), 8775)}, "-p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00::1]:8775"},
		{IPv4, NAT, Rule{Src: p4("10.0.0.5/32"), Target: SNAT(a4("192.0.2.10"))}, "-s 10.0.0.5/32 -j SNAT --to-source 192.0.2.10"},
		{IPv4, NAT, Rule{OutIface: "eth0", Target: Masquerade}, "-o eth0 -j MASQUERADE"},
	}
	for _, tt := range tests {
		got, err := tt.rule.render(tt.fam, tt.table, wrap, has)
		if err != nil || got != tt.want {
			t.Errorf("render(%+v) = %q, %v; want %q", tt.rule, got, err, tt.want)
		}
	}
}

func TestRuleRenderRejects(t *testing.T) {
	wrap := func(s string) string { return "nn-" + s }
	has := func(s string) bool { return false }
	bad := []struct {
		name  string
		fam   Family
		table Table
		rule  Rule
	}{
		{"no target", IPv4, Filter, Rule{}},
		{"v6 addr in v4", IPv4, Filter, Rule{Src: p4("fd00::/64"), Target: Accept}},
		{"v4 addr in v6", IPv6, Filter, Rule{Dst: p4("10.0.0.1/32"), Target: Accept}},
		{"port without proto", IPv4, Filter, Rule{DstPort: 80, Target: Accept}},
		{"port with icmp", IPv4, Filter, Rule{Proto: ICMP, DstPort: 80, Target: Accept}},
		{"bad iface", IPv4, Filter, Rule{InIface: "eth0 -j ACCEPT", Target: Drop}},
		{"long iface", IPv4, Filter, Rule{OutIface: "abcdefghijklmnop", Target: Drop}},
		{"unknown jump", IPv4, Filter, Rule{Target: Jump("nope")}},
		{"dnat in filter", IPv4, Filter, Rule{Target: DNAT(a4("10.0.0.1"), 0)}},
		{"dnat v6 addr in v4", IPv4, NAT, Rule{Target: DNAT(a4("fd00::1"), 0)}},
		{"dnat port without proto", IPv4, NAT, Rule{Target: DNAT(a4("10.0.0.1"), 80)}},
		{"zero snat", IPv4, NAT, Rule{Target: SNAT(a4("0.0.0.0").Prev())}},
		{"masquerade in filter", IPv4, Filter, Rule{Target: Masquerade}},
		{"reject in nat", IPv4, NAT, Rule{Target: Reject}},
		{"bad ctstate", IPv4, Filter, Rule{CTState: 0x80, Target: Accept}},
	}
	for _, tt := range bad {
		if got, err := tt.rule.render(tt.fam, tt.table, wrap, has); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("%s: render = %q, %v; want ErrInvalidRule", tt.name, got, err)
		}
	}
}
