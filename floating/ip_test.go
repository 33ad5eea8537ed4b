package floating_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/floating"
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
