package floating_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/floating"
	"novanet/hostnet"
	"novanet/linuxnet/iptables"
	"novanet/rpc"
)

func fips() []rpc.HostFloatingIP {
	return []rpc.HostFloatingIP{
		{Address: "203.0.113.10", FixedAddress: "10.0.0.5", NetworkID: 1},
		{Address: "203.0.113.11", FixedAddress: "10.0.1.7", Interface: "eth9", NetworkID: 2},
	}
}

func TestPrefixes(t *testing.T) {
	ips, err := floating.Parse(append(fips(),
		rpc.HostFloatingIP{Address: "203.0.113.9", FixedAddress: "10.0.0.9"},
		rpc.HostFloatingIP{Address: "2001:db8::9", FixedAddress: "fd00::9"}), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	got := floating.Prefixes(ips)
	want := map[string][]netip.Prefix{
		"eth0": {netip.MustParsePrefix("203.0.113.9/32"), netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("2001:db8::9/128")},
		"eth9": {netip.MustParsePrefix("203.0.113.11/32")},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("Prefixes (-want +got):\n%s", d)
	}
}

// FuzzParse: what Parse accepts from the manager makes valid iptables
// rules and one address to bind per floating IP; what it refuses wraps
// hostnet.ErrInvalidNetwork.
func FuzzParse(f *testing.F) {
	f.Add("203.0.113.10", "10.0.0.5", "", "2001:db8::9", "fd00::9", "eth9")
	f.Add("203.0.113.10", "10.0.0.5", "eth0", "203.0.113.10", "10.0.0.6", "")
	f.Fuzz(func(t *testing.T, a1, x1, i1, a2, x2, i2 string) {
		ips, err := floating.Parse([]rpc.HostFloatingIP{
			{Address: a1, FixedAddress: x1, Interface: i1}, {Address: a2, FixedAddress: x2, Interface: i2},
		}, "eth0")
		if err != nil && !errors.Is(err, hostnet.ErrInvalidNetwork) {
			t.Fatalf("Parse error %v does not wrap ErrInvalidNetwork", err)
		}
		rs, err := hostnet.Rules(hostnet.Config{Driver: "flatdhcp"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		floating.AddRules(rs, ips)
		m, _, err := iptables.NewFake(iptables.Config{Binary: "nova-network"})
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.SetRules(m); err != nil {
			t.Fatalf("rules of parsed %+v refused by iptables: %v", ips, err)
		}
		n := 0
		for _, ps := range floating.Prefixes(ips) {
			n += len(ps)
		}
		if n != len(ips) {
			t.Fatalf("%d addresses to bind for %d floating IPs", n, len(ips))
		}
	})
}
