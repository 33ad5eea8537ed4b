package hostnet_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"novanet/hostnet"
	"novanet/internal/golden"
	"novanet/linuxnet/ebtables"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

func mac(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	hw, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

// antiSpoofNets: two networks sharing br100 (one instance on the first,
// one on both), a vlan network on br101, and an IPv6 network.
func antiSpoofNets(t *testing.T) []hostnet.Network {
	t.Helper()
	a := network(1, "br100", "10.0.0.0/24", "10.0.0.1", 0)
	a.DHCPHosts = []rpc.DHCPHost{
		{MAC: "02:16:3e:00:00:01", Address: "10.0.0.5"},
		{MAC: "02:16:3e:00:00:02", Address: "10.0.0.6"},
	}
	b := network(2, "br100", "10.0.1.0/24", "10.0.1.1", 0)
	b.DHCPHosts = []rpc.DHCPHost{{MAC: "02:16:3e:00:00:02", Address: "10.0.1.6"}}
	c := network(3, "br101", "10.1.0.0/24", "10.1.0.1", 101)
	c.DHCPHosts = []rpc.DHCPHost{{MAC: "02:16:3e:00:01:01", Address: "10.1.0.9"}}
	d := network(4, "br102", "fd00::/64", "fd00::1", 0) // no reservations: nothing to filter
	d.EnableDHCP = false
	nets, err := hostnet.ParseNetworks([]rpc.HostNetwork{a, b, c, d})
	if err != nil {
		t.Fatal(err)
	}
	return hostnet.ShareBridges(nets)
}

func antiSpoofPorts(t *testing.T) map[string][]link.Port {
	return map[string][]link.Port{
		"br100": {
			{Name: "vnet1", MAC: mac(t, "fe:16:3e:00:00:02")}, // libvirt's tap of ...:02
			{Name: "tap0", MAC: mac(t, "02:16:3e:00:00:01")},  // a tap with the instance's MAC
			{Name: "eth1", MAC: mac(t, "52:54:00:12:34:56")},  // the uplink: not filtered
			{Name: "vnet9", MAC: mac(t, "fe:16:3e:00:00:99")}, // no such instance
		},
		"br101": {{Name: "vxlan101", MAC: mac(t, "aa:bb:cc:dd:ee:ff")}, {Name: "vnet2", MAC: mac(t, "fe:16:3e:00:01:01")}},
		"br102": {{Name: "vnet3", MAC: mac(t, "fe:16:3e:00:02:01")}},
	}
}

func TestAntiSpoofRulesGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nets  []hostnet.Network
		ports map[string][]link.Port
	}{
		{"empty", nil, nil},
		{"ports", antiSpoofNets(t), antiSpoofPorts(t)},
		{"noports", antiSpoofNets(t), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := hostnet.AntiSpoofRules(tc.nets, tc.ports)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ebtables.Render(ebtables.DefaultChain, rules)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "antispoof_"+tc.name+".golden", s)
		})
	}
}

func TestAntiSpoofRulesStable(t *testing.T) {
	a, err := hostnet.AntiSpoofRules(antiSpoofNets(t), antiSpoofPorts(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // map order must not show
		b, err := hostnet.AntiSpoofRules(antiSpoofNets(t), antiSpoofPorts(t))
		if err != nil {
			t.Fatal(err)
		}
		sa, _ := ebtables.Render("c", a)
		sb, _ := ebtables.Render("c", b)
		if sa != sb {
			t.Fatalf("rules differ between runs:\n%s\n%s", sa, sb)
		}
	}
}

type fakePorts map[string][]link.Port

func (f fakePorts) BridgePorts(_ context.Context, br string) ([]link.Port, error) {
	if br == "broken" {
		return nil, errors.New("netlink down")
	}
	return f[br], nil
}

type fakeEB struct {
	applied [][]ebtables.Rule
	fail    error
}

func (f *fakeEB) Apply(_ context.Context, rules []ebtables.Rule) error {
	if f.fail != nil {
		return f.fail
	}
	f.applied = append(f.applied, rules)
	return nil
}

func TestAntiSpoofApply(t *testing.T) {
	eb := &fakeEB{}
	as := hostnet.NewAntiSpoof(fakePorts(antiSpoofPorts(t)), eb)
	ctx := context.Background()
	nets := antiSpoofNets(t)
	for i, want := range []bool{true, false} {
		changed, err := as.Apply(ctx, nets)
		if err != nil || changed != want {
			t.Fatalf("apply %d: changed %v, %v; want %v", i, changed, err, want)
		}
	}
	if len(eb.applied) != 2 || len(eb.applied[0]) == 0 {
		t.Fatalf("applied %d times (%v): want the rules twice (every Apply rewrites the chain)", len(eb.applied), eb.applied)
	}
	eb.fail = errors.New("ebtables-restore: exit 1")
	if _, err := as.Apply(ctx, nets); err == nil || !strings.Contains(err.Error(), "anti-spoofing") {
		t.Fatalf("failed restore: %v", err)
	}
	eb.fail = nil
	if changed, err := as.Apply(ctx, nets); err != nil || !changed {
		t.Fatalf("after a failure: changed %v, %v; want a change reported", changed, err)
	}
	broken := nets[0]
	broken.Bridge = "broken"
	broken.Peers = nil
	if _, err := as.Apply(ctx, []hostnet.Network{broken}); err == nil || !strings.Contains(err.Error(), "netlink down") {
		t.Fatalf("port list failing: %v", err)
	}
}

func TestTapMAC(t *testing.T) {
	in := mac(t, "02:16:3e:00:00:01")
	if got := hostnet.TapMAC(in).String(); got != "fe:16:3e:00:00:01" {
		t.Fatalf("TapMAC = %s", got)
	}
	if in[0] != 0x02 {
		t.Fatal("TapMAC changed its argument")
	}
}
