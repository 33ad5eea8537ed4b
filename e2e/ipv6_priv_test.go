package e2e_test

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/netcalc"
	"novanet/rpc"
)

// TestIPv6SLAAC: a dual-stack flatdhcp network (netadm network create
// ... --cidr-v6). The agent puts the IPv6 gateway on the bridge and the
// bridge's dnsmasq advertises the /64; a VM gets its IPv4 address by DHCP
// and makes its IPv6 one from the router advertisement (SLAAC, EUI-64 of
// its MAC) that network info announced, then pings the gateway over IPv6. ip6tables has the network's
// ACCEPTs and the RA INPUT rule.
func TestIPv6SLAAC(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.Start(t, "flatdhcp")
	hv := nstest.New(t)
	// --ipv6 (the default; newAgent turns it off): ip6tables too.
	ag := newAgent(t, env, hv, "hv1", "flatdhcp", "--ipv6=true")
	ag.start()
	ag.waitRegistered()

	nets, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100", CIDRv6: "fd00:10::/64", Label: "dual"})
	if err != nil {
		t.Fatal(err)
	}
	if nets[0].GatewayV6 != "fd00:10::1" {
		t.Fatalf("network gateway_v6 %q, want fd00:10::1", nets[0].GatewayV6)
	}
	inst := uuid.NewString()
	vif := allocate(t, env, inst, "p1", "hv1")
	if vif.Network.CIDRv6 != "fd00:10::/64" {
		t.Fatalf("network info cidr_v6 %q, want fd00:10::/64", vif.Network.CIDRv6)
	}
	mac, err := net.ParseMAC(vif.MAC)
	if err != nil {
		t.Fatal(err)
	}
	slaac, err := netcalc.EUI64(netip.MustParsePrefix("fd00:10::/64"), mac)
	if err != nil {
		t.Fatal(err)
	}
	want := []rpc.IPv6Info{{Address: slaac.String(), CIDR: "fd00:10::/64", Gateway: "fd00:10::1", Mode: "slaac"}}
	if d := cmp.Diff(want, vif.FixedIPv6s); d != "" {
		t.Errorf("network info fixed_ipv6s (-want +got):\n%s", d)
	}
	nstest.Eventually(t, 30*time.Second, "br100 made by the agent with fd00:10::1/64", func() bool {
		return hasLink(hv, "br100") && strings.Contains(hv.Run(t, "ip", "-6", "-o", "addr", "show", "dev", "br100"), "fd00:10::1/64")
	})

	v := newVM(t, hv, "br100", "tap1", vif.MAC)
	v.StartDHCP(t)
	addr := vif.FixedIPs[0].Address
	nstest.Eventually(t, 30*time.Second, "VM has address "+addr, func() bool { return v.Addr(t) == addr })
	nstest.Eventually(t, 60*time.Second, "VM has its SLAAC address "+slaac.String(), func() bool {
		return slices.Contains(v.AddrsV6(t), slaac.String())
	})
	// The gateway's own duplicate address detection may still run when
	// the VM's address is ready: the first ping may go unanswered, so
	// poll it.
	nstest.Eventually(t, 30*time.Second, "the VM pings its gateway fd00:10::1", func() bool { return v.Ping6("fd00:10::1") })
	if !v.Ping("10.0.0.1") {
		t.Error("the VM cannot ping its IPv4 gateway 10.0.0.1")
	}
	// Converged: describe finds nothing missing (the IPv6 gateway on
	// br100, the RA lines of the dnsmasq config) and nothing extra.
	if d := describe(t, env, "hv1"); len(d.Diff) != 0 {
		t.Errorf("describe of a converged dual-stack host: diff %v", diffNames(d))
	}
	save := hv.Run(t, "ip6tables-save")
	for _, want := range []string{
		"-A " + chainPrefix + "-FORWARD -i br100 -j ACCEPT",
		"-A " + chainPrefix + "-INPUT -i br100 -p ipv6-icmp -j ACCEPT",
		"-A " + chainPrefix + "-POSTROUTING -s fd00:10::/64 -d fd00:10::/64 -j ACCEPT",
	} {
		if !strings.Contains(save, want) {
			t.Errorf("ip6tables-save lacks %q:\n%s", want, save)
		}
	}
}
