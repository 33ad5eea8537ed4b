package hostnet_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/hostnet"
	"novanet/rpc"
)

func TestDiffObjects(t *testing.T) {
	want := []rpc.HostObject{
		{Kind: "bridge", Name: "br100", Attrs: []string{"kind bridge", "up yes", "address 10.0.0.1/28", "port vxlan100"}},
		{Kind: "bridge", Name: "br101", Attrs: []string{"kind bridge"}},
		{Kind: "dhcp", Name: "br100", Attrs: []string{"running yes", "host aa,b,10.0.0.3"}},
		{Kind: "chain", Name: "ipv4 filter x", Attrs: []string{"rule -A x -j ACCEPT"}},
		{Kind: "chain", Name: "ipv4 nat y"},
	}
	have := []rpc.HostObject{
		// Extra ports and addresses, an MTU the network does not set: in sync.
		{Kind: "bridge", Name: "br100", Attrs: []string{"kind bridge", "up yes", "mtu 1500", "address 10.0.0.1/28", "address 192.0.2.1/24", "port vxlan100", "port tap1"}},
		{Kind: "dhcp", Name: "br100", Attrs: []string{"running no", "host aa,b,10.0.0.3", "host cc,d,10.0.0.4"}, Info: []string{"lease x"}},
		{Kind: "chain", Name: "ipv4 filter x", Attrs: []string{"rule -A x -j ACCEPT"}},
		{Kind: "chain", Name: "ipv4 nat y", Attrs: []string{"rule -A y -j DROP"}},
	}
	got := hostnet.DiffObjects(want, have)
	wantDiff := []rpc.HostObjectDiff{
		{Kind: "bridge", Name: "br101", Missing: true, Want: []string{"kind bridge"}},
		{Kind: "dhcp", Name: "br100", Want: []string{"running yes"}, Have: []string{"running no", "host cc,d,10.0.0.4"}},
		{Kind: "chain", Name: "ipv4 nat y", Have: []string{"rule -A y -j DROP"}},
	}
	if d := cmp.Diff(wantDiff, got); d != "" {
		t.Errorf("DiffObjects (-want +got):\n%s", d)
	}
	if d := hostnet.DiffObjects(want[:1], have[:1]); d != nil {
		t.Errorf("in sync: %+v", d)
	}
}

func TestWantObjectsVLAN(t *testing.T) {
	cfg := hostnet.Config{Driver: "vlan", VLANInterface: "eth1", VLANSegment: "vxlan", DHCPDir: "/run/novanet"}
	n := hostnet.Network{ID: 1, CIDR: netip.MustParsePrefix("10.0.0.0/28"), Gateway: netip.MustParsePrefix("10.0.0.1/28"),
		VLAN: 100, Bridge: "br100", MTU: 1400, EnableDHCP: true}
	rec := hostnet.Record{NetworkID: 1, Driver: "vlan", Bridge: "br100", BridgeOwned: true, Segment: "vxlan100", DHCP: "br100"}
	objs, err := hostnet.WantObjects(cfg, rec, n)
	if err != nil {
		t.Fatal(err)
	}
	objs = hostnet.MergeObjects(objs)
	if len(objs) != 3 {
		t.Fatalf("%d objects, want bridge, segment, dhcp: %+v", len(objs), objs)
	}
	if d := cmp.Diff([]string{"kind bridge", "up yes", "mtu 1400", "address 10.0.0.1/28", "port vxlan100"}, objs[0].Attrs); d != "" {
		t.Errorf("bridge (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"parent eth1", "kind vxlan", "id 100", "port 4789", "up yes", "mtu 1400"}, objs[1].Attrs); d != "" {
		t.Errorf("segment (-want +got):\n%s", d)
	}
	if objs[2].Kind != "dhcp" || objs[2].Attrs[1] != "running yes" || len(objs[2].Attrs) < 4 {
		t.Errorf("dhcp: %+v", objs[2])
	}
}

// A dual-stack network wants its IPv6 gateway on the bridge too.
func TestWantObjectsDualStack(t *testing.T) {
	cfg := hostnet.Config{Driver: "flatdhcp", FlatInterface: "eth1", DHCPDir: "/run/novanet"}
	n := hostnet.Network{ID: 1, CIDR: netip.MustParsePrefix("10.0.0.0/28"), Gateway: netip.MustParsePrefix("10.0.0.1/28"),
		CIDRv6: netip.MustParsePrefix("fd00:1::/64"), GatewayV6: netip.MustParsePrefix("fd00:1::1/64"),
		Bridge: "br100", EnableDHCP: true}
	rec := hostnet.Record{NetworkID: 1, Driver: "flatdhcp", Bridge: "br100", BridgeOwned: true, DHCP: "br100"}
	objs, err := hostnet.WantObjects(cfg, rec, n)
	if err != nil {
		t.Fatal(err)
	}
	objs = hostnet.MergeObjects(objs)
	if len(objs) == 0 || !slices.Contains(objs[0].Attrs, "address fd00:1::1/64") || !slices.Contains(objs[0].Attrs, "address 10.0.0.1/28") {
		t.Errorf("bridge wants %+v, want both gateways", objs)
	}
}
