package hostnet_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"novanet/hostnet"
	"novanet/linuxnet/iptables"
	"novanet/rpc"
)

func TestParseNetworkRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*rpc.HostNetwork)
		words string
	}{
		{"no id", func(n *rpc.HostNetwork) { n.ID = 0 }, "id 0"},
		{"no bridge", func(n *rpc.HostNetwork) { n.Bridge = "" }, "bridge"},
		{"long bridge", func(n *rpc.HostNetwork) { n.Bridge = "br0123456789abcdef" }, "br0123456789abcdef"},
		{"bad bridge interface", func(n *rpc.HostNetwork) { n.BridgeInterface = "eth0/../x" }, "eth0/../x"},
		{"gateway outside", func(n *rpc.HostNetwork) { n.Gateway = "10.9.0.1" }, "10.9.0.1"},
		{"gateway is network", func(n *rpc.HostNetwork) { n.Gateway = "10.0.0.0" }, "10.0.0.0"},
		{"gateway zone", func(n *rpc.HostNetwork) { n.Gateway = "fe80::1%eth0" }, "fe80::1%eth0"},
		{"mapped gateway", func(n *rpc.HostNetwork) { n.Gateway = "::ffff:10.0.0.1" }, "::ffff:10.0.0.1"},
		{"cidr_v6 v4", func(n *rpc.HostNetwork) { n.CIDRv6 = "10.1.0.0/24" }, "10.1.0.0/24"},
		{"cidr_v6 not /64", func(n *rpc.HostNetwork) { n.CIDRv6 = "fd00:1::/48" }, "fd00:1::/48"},
		{"cidr_v6 host bits", func(n *rpc.HostNetwork) { n.CIDRv6 = "fd00:1::5/64" }, "fd00:1::5/64"},
		{"gateway_v6 outside", func(n *rpc.HostNetwork) { n.CIDRv6, n.GatewayV6 = "fd00:1::/64", "fd00:2::1" }, "fd00:2::1"},
		{"gateway_v6 is network", func(n *rpc.HostNetwork) { n.CIDRv6, n.GatewayV6 = "fd00:1::/64", "fd00:1::" }, "fd00:1::"},
		{"gateway_v6 alone", func(n *rpc.HostNetwork) { n.GatewayV6 = "fd00:1::1" }, "without cidr_v6"},
		{"dhcp start outside", func(n *rpc.HostNetwork) { n.DHCPStart = "10.1.0.2" }, "10.1.0.2"},
		{"bad dns", func(n *rpc.HostNetwork) { n.DNS = []string{"8.8.8"} }, `"8.8.8"`},
		{"vlan range", func(n *rpc.HostNetwork) { n.VLAN = 4095 }, "4095"},
		{"mtu", func(n *rpc.HostNetwork) { n.MTU = 100 }, "mtu 100"},
		{"vpn port", func(n *rpc.HostNetwork) {
			n.VPNPublicAddress, n.VPNPublicPort, n.VPNPrivateAddress = "203.0.113.5", 70000, "10.0.0.2"
		}, "70000"},
		{"mac dashes", func(n *rpc.HostNetwork) { n.DHCPHosts[0].MAC = "02-00-00-00-00-01" }, "02-00-00-00-00-01"},
		{"mac long", func(n *rpc.HostNetwork) { n.DHCPHosts[0].MAC = "02:00:00:00:00:01:02:03" }, "02:00:00:00:00:01:02:03"},
		{"mac dots", func(n *rpc.HostNetwork) { n.DHCPHosts[0].MAC = "0200.0000.0001" }, "0200.0000.0001"},
		{"host address", func(n *rpc.HostNetwork) { n.DHCPHosts[0].Address = "10.0.0.300" }, "10.0.0.300"},
		{"host outside", func(n *rpc.HostNetwork) { n.DHCPHosts[0].Address = "10.0.5.3" }, "10.0.5.3"},
		{"host is gateway", func(n *rpc.HostNetwork) { n.DHCPHosts[0].Address = "10.0.0.1" }, "gateway"},
		{"hostname", func(n *rpc.HostNetwork) { n.DHCPHosts[0].Hostname = "vm1\nfoo" }, `"vm1\nfoo"`},
		{"dup mac", func(n *rpc.HostNetwork) { n.DHCPHosts[1].MAC = strings.ToUpper(n.DHCPHosts[0].MAC) }, "duplicate mac"},
		{"dup ip", func(n *rpc.HostNetwork) { n.DHCPHosts[1].Address = n.DHCPHosts[0].Address }, "duplicate address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := sample()
			tc.edit(&n)
			_, err := hostnet.ParseNetwork(n)
			if !errors.Is(err, hostnet.ErrInvalidNetwork) || !strings.Contains(err.Error(), tc.words) || !strings.Contains(err.Error(), "network ") {
				t.Errorf("ParseNetwork = %v; want ErrInvalidNetwork naming network 7 and %q", err, tc.words)
			}
		})
	}
}

func sample() rpc.HostNetwork {
	return rpc.HostNetwork{
		ID: 7, CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DHCPStart: "10.0.0.3", Bridge: "br7",
		DNS: []string{"10.0.0.1"}, MTU: 1400, EnableDHCP: true,
		DHCPHosts: []rpc.DHCPHost{
			{MAC: "02:00:00:00:00:01", Address: "10.0.0.10", Hostname: "vm1"},
			{MAC: "02:00:00:00:00:02", Address: "10.0.0.11"},
		},
	}
}

func TestDHCPConfig(t *testing.T) {
	n, err := hostnet.ParseNetwork(sample())
	if err != nil {
		t.Fatal(err)
	}
	cfg := hostnet.Config{DHCPDir: "/var/lib/novanet/dhcp", DHCPDomain: "novalocal", DHCPCommand: []string{"/usr/bin/network-host", "dhcp-event"}}
	c, ok, err := hostnet.DHCPConfig(cfg, hostnet.DHCPName(n.Bridge), n)
	if err != nil || !ok {
		t.Fatal(err)
	}
	if c.Name != "br7" || c.Dir != "/var/lib/novanet/dhcp/br7" || c.Interface != "br7" ||
		c.Gateway != netip.MustParsePrefix("10.0.0.1/24") || c.RangeStart != netip.MustParseAddr("10.0.0.3") ||
		c.LeaseTime != hostnet.DefaultDHCPLeaseTime || c.MTU != 1400 || c.Domain != "novalocal" || len(c.EventCommand) != 2 {
		t.Errorf("DHCPConfig = %+v", c)
	}
	v6 := sample()
	v6.CIDRv6, v6.GatewayV6 = "fd00:7::/64", "fd00:7::1"
	if n6, err := hostnet.ParseNetwork(v6); err != nil {
		t.Error(err)
	} else if c, _, err := hostnet.DHCPConfig(cfg, "br7", n6); err != nil || c.GatewayV6 != netip.MustParsePrefix("fd00:7::1/64") {
		t.Errorf("DHCPConfig of a dual-stack network = %+v, %v; want IPv6 gateway fd00:7::1/64", c, err)
	}
	cfg.DHCPLeaseTime = time.Hour
	n.DHCPStart = netip.Addr{}
	if c, _, err = hostnet.DHCPConfig(cfg, "br7", n); err != nil || c.RangeStart != netip.MustParseAddr("10.0.0.2") || c.LeaseTime != time.Hour {
		t.Errorf("DHCPConfig without start = %+v, %v; want range from 10.0.0.2, lease 1h", c, err)
	}
	n.Gateway = netip.Prefix{}
	if _, _, err := hostnet.DHCPConfig(cfg, "br7", n); !errors.Is(err, hostnet.ErrInvalidNetwork) || !strings.Contains(err.Error(), "gateway") {
		t.Errorf("DHCPConfig without gateway = %v", err)
	}
	cfg.DHCPDir = "relative/dir"
	if _, _, err := hostnet.DHCPConfig(cfg, "br7", n); !errors.Is(err, hostnet.ErrInvalidConfig) {
		t.Errorf("DHCPConfig with relative dir = %v", err)
	}
}

func TestDHCPName(t *testing.T) {
	for _, tc := range []struct {
		bridge string
		want   string
	}{{"br100", "br100"}, {"br-ex_1", "br-ex_1"}, {"br.100", "x62722e313030"}, {"-x", "x2d78"},
		{"br@x", "x62724078"}, {"abcdefghij.klmn", "x6162636465666768696a2e6b6c6d6e"}} {
		if got := hostnet.DHCPName(tc.bridge); got != tc.want || !hostnet.ValidDHCPName(got) {
			t.Errorf("DHCPName(%q) = %q, want %q", tc.bridge, got, tc.want)
		}
	}
}

// FuzzParseNetwork: what ParseNetwork accepts from the manager is enough
// for every later step, which does not parse again: its firewall rules are
// valid iptables rules, and its dnsmasq config is valid or refused as an
// invalid network.
func FuzzParseNetwork(f *testing.F) {
	f.Add(int64(7), "10.0.0.0/24", "10.0.0.1", "br7", "eth1", 100, 1400, "02:00:00:00:00:01", "10.0.0.10", "vm1", "203.0.113.5", 1000, "10.0.0.2")
	f.Add(int64(1), "fd00::/64", "fd00::1", "br-6", "", 0, 0, "", "", "", "", 0, "")
	f.Fuzz(func(t *testing.T, id int64, cidr, gw, bridge, bridgeIf string, vlan, mtu int, mac, addr, hostname, vpnPub string, vpnPort int, vpnPriv string) {
		in := rpc.HostNetwork{
			ID: id, CIDR: cidr, Gateway: gw, Bridge: bridge, BridgeInterface: bridgeIf, VLAN: vlan, MTU: mtu, EnableDHCP: true,
			VPNPublicAddress: vpnPub, VPNPublicPort: vpnPort, VPNPrivateAddress: vpnPriv,
		}
		if mac != "" || addr != "" {
			in.DHCPHosts = []rpc.DHCPHost{{MAC: mac, Address: addr, Hostname: hostname}}
		}
		n, err := hostnet.ParseNetwork(in)
		if err != nil {
			if !errors.Is(err, hostnet.ErrInvalidNetwork) {
				t.Fatalf("ParseNetwork error %v does not wrap ErrInvalidNetwork", err)
			}
			return
		}
		for _, driver := range []string{"flat", "flatdhcp", "vlan"} {
			cfg := hostCfg(driver)
			rs, err := hostnet.Rules(cfg, []hostnet.Network{n})
			if err != nil {
				t.Fatalf("Rules of parsed %+v: %v", n, err)
			}
			m, _, err := iptables.NewFake(iptables.Config{Binary: "nova-network"})
			if err != nil {
				t.Fatal(err)
			}
			if err := rs.SetRules(m); err != nil {
				t.Fatalf("rules of parsed %+v refused by iptables: %v", n, err)
			}
			if _, err := m.Render(iptables.IPv4); err != nil {
				t.Fatalf("rules of parsed %+v do not render: %v", n, err)
			}
		}
		c, _, err := hostnet.DHCPConfig(hostCfg("flatdhcp"), hostnet.DHCPName(n.Bridge), n)
		if err == nil {
			err = c.Validate()
		}
		if err != nil && !errors.Is(err, hostnet.ErrInvalidNetwork) {
			t.Fatalf("DHCPConfig of parsed %+v: %v, not an invalid network", n, err)
		}
	})
}
