package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// segment joins the hypervisors hvs on one layer-2 segment, as their flat
// interfaces on one switch: in each, eth1 is a veth whose peer is a port of
// bridge sw0 in a "switch" namespace.
func segment(t *testing.T, hvs ...*nstest.NS) {
	t.Helper()
	sw := nstest.New(t)
	sw.Run(t, "ip", "link", "add", "sw0", "type", "bridge")
	sw.Run(t, "ip", "link", "set", "sw0", "up")
	for i, hv := range hvs {
		port := fmt.Sprintf("hv%d", i+1)
		hv.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", port, "netns", sw.Name)
		hv.Run(t, "ip", "link", "set", "eth1", "up")
		sw.Run(t, "ip", "link", "set", port, "master", "sw0", "up")
	}
}

// TestMultiHostDHCPOverSharedSegment runs a multi-host flatdhcp network on
// two hosts whose bridges are joined by their flat interfaces: both hosts'
// dnsmasq hear every VM's broadcasts, with the same server address (the
// network's gateway, decision 007). Each must answer its own instances and
// stay silent for the other's: a DHCPNAK from the wrong host makes the VM
// loop on DHCP.
func TestMultiHostDHCPOverSharedSegment(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.Start(t, "flatdhcp")
	hv1, hv2 := nstest.New(t), nstest.New(t)
	segment(t, hv1, hv2)
	agents := []*agent{
		newAgent(t, env, hv1, "hv1", "flatdhcp", "--flat-interface", "eth1"),
		newAgent(t, env, hv2, "hv2", "flatdhcp", "--flat-interface", "eth1"),
	}
	for _, a := range agents {
		a.start()
		a.waitRegistered()
	}
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.5.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100", MultiHost: true}); err != nil {
		t.Fatal(err)
	}
	type vm struct {
		vif rpc.VIF
		vm  *nstest.VM
	}
	var vms []vm
	for i, a := range agents {
		vif := allocate(t, env, uuid.NewString(), "p1", a.host)
		nstest.Eventually(t, 30*time.Second, "br100 made on "+a.host, func() bool { return hasLink(a.hv, "br100") })
		vms = append(vms, vm{vif: vif, vm: newVM(t, a.hv, "br100", fmt.Sprintf("tap%d", i+1), vif.MAC)})
	}
	// Each host's dnsmasq knows its own instance only.
	for i, a := range agents {
		nstest.Eventually(t, 30*time.Second, a.host+" reserves its instance only", func() bool {
			macs := hostsFileMACs(a, "br100")
			return len(macs) == 1 && macs[0] == vms[i].vif.MAC
		})
	}
	for _, v := range vms {
		addr := v.vif.FixedIPs[0].Address
		// Several one-shot clients in a row: each gets its lease on its
		// first exchange, and none is ever refused.
		for try := range 3 {
			ok, out := v.vm.DHCP(t, "3")
			if !ok {
				t.Fatalf("VM %s (try %d): no lease:\n%s", addr, try+1, out)
			}
			if strings.Contains(out, "NAK") {
				t.Errorf("VM %s (try %d) was refused (DHCPNAK) by the other host:\n%s", addr, try+1, out)
			}
			if got := v.vm.Addr(t); got != addr {
				t.Errorf("VM got %q, want %s", got, addr)
			}
		}
		if !v.vm.Ping(v.vif.FixedIPs[0].Gateway) {
			t.Errorf("VM %s cannot ping its gateway %s", addr, v.vif.FixedIPs[0].Gateway)
		}
	}
	// The first VM reaches the second across the segment.
	if !vms[0].vm.Ping(vms[1].vif.FixedIPs[0].Address) {
		t.Errorf("VM on hv1 cannot reach the VM on hv2 at %s", vms[1].vif.FixedIPs[0].Address)
	}
}
