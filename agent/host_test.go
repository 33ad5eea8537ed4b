package agent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"novanet/hostnet"
	"novanet/linuxnet/iptables"
	"novanet/rpc"
)

type nopBinder struct{}

func (nopBinder) Ensure(context.Context, map[string][]netip.Prefix) ([]string, error) {
	return nil, nil
}

// An agent that manages IPv4 only (--ipv6=false) and serves a dual-stack
// VLAN network beside another project's network still applies every IPv4
// rule, isolation included, and reports the IPv6 rules it left out.
func TestApplyLeavesOutUnmanagedFamily(t *testing.T) {
	fw, fake, err := iptables.NewFake(iptables.Config{Binary: "nn-test", Families: []iptables.Family{iptables.IPv4}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewKernelHost(hostnet.Config{Driver: hostnet.DriverVLAN, PublicInterface: "eth0"}, fw, []iptables.Family{iptables.IPv4}, nopBinder{})
	h.forwarding = true // never touch the test's own namespace
	dual := rpc.HostNetwork{ID: 1, Label: "a", CIDR: "10.0.1.0/24", Gateway: "10.0.1.1", Bridge: "br101", VLAN: 101,
		CIDRv6: "fd00:1::/64", GatewayV6: "fd00:1::1", EnableDHCP: true}
	other := rpc.HostNetwork{ID: 2, Label: "b", CIDR: "10.0.2.0/24", Gateway: "10.0.2.1", Bridge: "br102", VLAN: 102, EnableDHCP: true}
	nets, err := hostnet.ParseNetworks([]rpc.HostNetwork{dual, other})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := h.Apply(t.Context(), nets, nil)
	if !errors.Is(err, hostnet.ErrFamilyNotManaged) || !strings.Contains(err.Error(), "ipv6") {
		t.Errorf("Apply = %v, want the left-out IPv6 rules reported", err)
	}
	if len(changes) == 0 {
		t.Errorf("no change reported for the applied IPv4 rules")
	}
	save := fake.Save(iptables.IPv4)
	for _, want := range []string{"-i br101 -o br102 -j DROP", "-i br102 -o br101 -j DROP", "-i br101 -j ACCEPT"} {
		if !strings.Contains(save, want) {
			t.Errorf("IPv4 rules lack %q:\n%s", want, save)
		}
	}
}
