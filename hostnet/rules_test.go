package hostnet_test

import (
	"errors"
	"net/netip"
	"novanet/internal/golden"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/floating"
	"novanet/hostnet"
	"novanet/linuxnet/iptables"
	"novanet/rpc"
)

func hostCfg(driver string) hostnet.Config {
	return hostnet.Config{
		Host:            "compute1",
		Driver:          driver,
		PublicInterface: "eth0",
		RoutingSourceIP: netip.MustParseAddr("192.0.2.2"),
		DMZCIDR:         []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		MetadataHost:    netip.MustParseAddr("192.0.2.2"),
		MetadataPort:    8775,
		DHCPDir:         "/var/lib/novanet/dhcp",
	}
}

func network(id int64, bridge, cidr, gw string, vlan int) rpc.HostNetwork {
	return rpc.HostNetwork{
		ID: id, Label: "net" + bridge, CIDR: cidr, Gateway: gw, Bridge: bridge, VLAN: vlan,
		EnableDHCP: true, DNS: []string{"8.8.8.8"},
	}
}

func fips() []rpc.HostFloatingIP {
	return []rpc.HostFloatingIP{
		{Address: "203.0.113.10", FixedAddress: "10.0.0.5", NetworkID: 1},
		{Address: "203.0.113.11", FixedAddress: "10.0.1.7", Interface: "eth9", NetworkID: 2},
	}
}

// rules is the whole firewall of a host as agent.Firewall computes it: the
// networks' rules and the floating IPs' NAT rules, from the manager's state
// parsed once.
func rules(cfg hostnet.Config, nets []rpc.HostNetwork, fips []rpc.HostFloatingIP) (hostnet.Ruleset, error) {
	parsed, err := hostnet.ParseNetworks(nets)
	if err != nil {
		return nil, err
	}
	ips, err := floating.Parse(fips, cfg.PublicInterface)
	if err != nil {
		return nil, err
	}
	rs, err := hostnet.Rules(cfg, parsed)
	if err != nil {
		return nil, err
	}
	floating.AddRules(rs, ips)
	return rs, nil
}

// render applies rs to a fake iptables manager and returns the full
// iptables-restore input for IPv4 and IPv6.
func render(t *testing.T, rs hostnet.Ruleset) string {
	t.Helper()
	m, _, err := iptables.NewFake(iptables.Config{Binary: "nova-network"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.SetRules(m); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		s, err := m.Render(fam)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("# " + fam.String() + "\n" + s)
	}
	return b.String()
}

func TestRulesGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  hostnet.Config
		nets []rpc.HostNetwork
		fips []rpc.HostFloatingIP
	}{
		{"flat", hostCfg("flat"), []rpc.HostNetwork{network(1, "br100", "10.0.0.0/24", "", 0)}, fips()[:1]},
		{"flatdhcp", hostCfg("flatdhcp"), []rpc.HostNetwork{network(1, "br100", "10.0.0.0/24", "10.0.0.1", 0)}, fips()[:1]},
		{"vlan", hostCfg("vlan"), func() []rpc.HostNetwork {
			// Out of order on purpose: the rules come sorted by network ID.
			n3 := network(3, "br103", "10.0.2.0/24", "10.0.2.1", 103)
			n1 := network(1, "br101", "10.0.0.0/24", "10.0.0.1", 101)
			n1.VPNPublicAddress, n1.VPNPublicPort, n1.VPNPrivateAddress = "203.0.113.5", 1000, "10.0.0.2"
			n2 := network(2, "br102", "10.0.1.0/24", "10.0.1.1", 102)
			n2.EnableDHCP = false
			v6 := network(4, "br104", "fd00:4::/64", "fd00:4::1", 104)
			return []rpc.HostNetwork{n3, n1, n2, v6}
		}(), fips()},
		{"vlan_dualstack", hostCfg("vlan"), func() []rpc.HostNetwork {
			// Two dual-stack projects and an IPv4-only one: the drops
			// between each pair in IPv6 too, the IPv6 ACCEPTs and the
			// RA/DNS INPUT rules of the dual-stack ones.
			n1 := network(1, "br101", "10.0.0.0/24", "10.0.0.1", 101)
			n1.CIDRv6, n1.GatewayV6 = "fd00:0:0:1::/64", "fd00:0:0:1::1"
			n2 := network(2, "br102", "10.0.1.0/24", "10.0.1.1", 102)
			n2.CIDRv6, n2.GatewayV6 = "fd00:0:0:2::/64", "fd00:0:0:2::1"
			n3 := network(3, "br103", "10.0.2.0/24", "10.0.2.1", 103)
			return []rpc.HostNetwork{n1, n2, n3}
		}(), nil},
		{"empty", hostnet.Config{Driver: "vlan"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := rules(tc.cfg, tc.nets, tc.fips)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "rules_"+tc.name+".golden", render(t, rs))
			// Pure: the same input gives the same rules.
			again, err := rules(tc.cfg, tc.nets, tc.fips)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(render(t, rs), render(t, again)); d != "" {
				t.Errorf("second computation differs:\n%s", d)
			}
		})
	}
}

// A network or floating IP removed from the state disappears from the
// rules when the ruleset is set again on the same manager.
func TestRulesRemoveClears(t *testing.T) {
	m, fake, err := iptables.NewFake(iptables.Config{Binary: "nova-network", Families: []iptables.Family{iptables.IPv4}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := hostCfg("vlan")
	apply := func(nets []rpc.HostNetwork, f []rpc.HostFloatingIP) string {
		t.Helper()
		rs, err := rules(cfg, nets, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.SetRules(m, iptables.IPv4); err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(t.Context()); err != nil {
			t.Fatal(err)
		}
		return fake.Save(iptables.IPv4)
	}
	empty := apply(nil, nil)
	full := apply([]rpc.HostNetwork{network(1, "br101", "10.0.0.0/24", "10.0.0.1", 101), network(2, "br102", "10.0.1.0/24", "10.0.1.1", 102)}, fips())
	for _, want := range []string{"-i br101 -o br102 -j DROP", "--to-destination 10.0.1.7", "-j SNAT --to-source 192.0.2.2"} {
		if !strings.Contains(full, want) {
			t.Errorf("save lacks %q:\n%s", want, full)
		}
	}
	if d := cmp.Diff(empty, apply(nil, nil)); d != "" {
		t.Errorf("rules left after removing everything (-want +got):\n%s", d)
	}
}

func TestRulesIPv6NeedsFamily(t *testing.T) {
	// A dual-stack network on an agent that manages IPv4 only: its IPv6
	// rules are left out and reported, its IPv4 ones applied.
	n := network(4, "br104", "10.0.4.0/24", "10.0.4.1", 0)
	n.CIDRv6, n.GatewayV6 = "fd00:4::/64", "fd00:4::1"
	rs, err := rules(hostCfg("flatdhcp"), []rpc.HostNetwork{n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, fake, err := iptables.NewFake(iptables.Config{Binary: "nova-network", Families: []iptables.Family{iptables.IPv4}})
	if err != nil {
		t.Fatal(err)
	}
	err = rs.SetRules(m, iptables.IPv4)
	if !errors.Is(err, hostnet.ErrFamilyNotManaged) || !strings.Contains(err.Error(), "ipv6") {
		t.Errorf("SetRules with IPv6 rules on an IPv4 manager = %v, want ErrFamilyNotManaged naming ipv6", err)
	}
	// The IPv4 rules of the dual-stack network are set all the same.
	if err := m.Apply(t.Context()); err != nil {
		t.Fatal(err)
	}
	if save := fake.Save(iptables.IPv4); !strings.Contains(save, "-i br104 -j ACCEPT") {
		t.Errorf("IPv4 rules not applied beside the left-out IPv6 ones:\n%s", save)
	}
}

func TestRulesRejects(t *testing.T) {
	good := network(1, "br100", "10.0.0.0/24", "10.0.0.1", 100)
	for _, tc := range []struct {
		name  string
		cfg   func(*hostnet.Config)
		nets  func(*rpc.HostNetwork)
		fips  []rpc.HostFloatingIP
		want  error
		words string
	}{
		{name: "bad cidr", nets: func(n *rpc.HostNetwork) { n.CIDR = "10.0.0.0/33" }, want: hostnet.ErrInvalidNetwork, words: `"10.0.0.0/33"`},
		{name: "host bits", nets: func(n *rpc.HostNetwork) { n.CIDR = "10.0.0.5/24" }, want: hostnet.ErrInvalidNetwork, words: "host bits"},
		{name: "bridge injection", nets: func(n *rpc.HostNetwork) { n.Bridge = "br0 -j ACCEPT" }, want: hostnet.ErrInvalidNetwork, words: "br0 -j ACCEPT"},
		{name: "vpn half", nets: func(n *rpc.HostNetwork) { n.VPNPublicAddress = "203.0.113.5" }, want: hostnet.ErrInvalidNetwork, words: "vpn"},
		{name: "bad floating", fips: []rpc.HostFloatingIP{{Address: "203.0.113.300", FixedAddress: "10.0.0.5"}}, want: hostnet.ErrInvalidNetwork, words: "203.0.113.300"},
		{name: "mixed floating", fips: []rpc.HostFloatingIP{{Address: "203.0.113.3", FixedAddress: "fd00::5"}}, want: hostnet.ErrInvalidNetwork, words: "fd00::5"},
		{name: "dup floating", fips: []rpc.HostFloatingIP{{Address: "203.0.113.3", FixedAddress: "10.0.0.5"}, {Address: "203.0.113.3", FixedAddress: "10.0.0.6"}}, want: hostnet.ErrInvalidNetwork, words: "twice"},
		{name: "no public interface", cfg: func(c *hostnet.Config) { c.PublicInterface = "" }, fips: []rpc.HostFloatingIP{{Address: "203.0.113.3", FixedAddress: "10.0.0.5"}}, want: hostnet.ErrInvalidNetwork, words: "interface"},
		{name: "bad dmz", cfg: func(c *hostnet.Config) { c.DMZCIDR = []netip.Prefix{netip.MustParsePrefix("198.51.100.7/24")} }, want: hostnet.ErrInvalidConfig, words: "198.51.100.7/24"},
		{name: "v6 metadata", cfg: func(c *hostnet.Config) { c.MetadataHost = netip.MustParseAddr("fd00::1") }, want: hostnet.ErrInvalidConfig, words: "fd00::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hostCfg("vlan")
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			n := good
			if tc.nets != nil {
				tc.nets(&n)
			}
			_, err := rules(cfg, []rpc.HostNetwork{n}, tc.fips)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
				t.Errorf("Rules = %v, want %v naming %q", err, tc.want, tc.words)
			}
		})
	}
}

// A network the host only carries the layer 2 of gets no DHCP input rules
// and no VPN forward: another host serves it. Its forwarding and the
// isolation from other projects stay.
func TestRulesLayer2Only(t *testing.T) {
	n1 := network(1, "br101", "10.0.0.0/24", "10.0.0.1", 101)
	n1.VPNPublicAddress, n1.VPNPublicPort, n1.VPNPrivateAddress = "203.0.113.5", 1000, "10.0.0.2"
	n1.Layer2Only = true
	n2 := network(2, "br102", "10.0.1.0/24", "10.0.1.1", 102)
	rs, err := rules(hostCfg("vlan"), []rpc.HostNetwork{n1, n2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := render(t, rs)
	for _, bad := range []string{"-i br101 -p udp -m udp --dport 67", "203.0.113.5", "1194"} {
		if strings.Contains(out, bad) {
			t.Errorf("rules of a layer-2-only network hold %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"-i br102 -p udp -m udp --dport 67", "-i br101 -o br102 -j DROP", "-i br102 -o br101 -j DROP", "-i br101 -j ACCEPT"} {
		if !strings.Contains(out, want) {
			t.Errorf("rules lack %q:\n%s", want, out)
		}
	}
}
