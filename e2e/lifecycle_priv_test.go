package e2e_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/hostnet"
	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// TestNetworkStopStart: network stop takes the network off the host
// (bridge, dnsmasq, rules) while its addresses stay allocated; network
// start brings it back, with the VMs' ports on the bridge again, so that
// they renew the same addresses and reach their gateway.
func TestNetworkStopStart(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.StartSecure(t, "flatdhcp")
	hv := nstest.New(t)
	ag := newAgent(t, env, hv, "hv1", "flatdhcp", "--routing-source-ip", "192.0.2.10")
	ag.start()
	ag.waitRegistered()
	cfg := hostnet.Config{Host: "hv1", Driver: "flatdhcp", RoutingSourceIP: netip.MustParseAddr("192.0.2.10")}

	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100", Label: "life"}); err != nil {
		t.Fatal(err)
	}
	type vm struct {
		v    *nstest.VM
		addr string
	}
	var vms []vm
	for i, port := range []string{"tap1", "tap2"} {
		vif := allocate(t, env, uuid.NewString(), "p1", "hv1")
		if i == 0 {
			nstest.Eventually(t, 30*time.Second, "br100 made by the agent", func() bool { return hasLink(hv, "br100") })
		}
		vms = append(vms, vm{newVM(t, hv, "br100", port, vif.MAC), vif.FixedIPs[0].Address})
	}
	working := func(when string) {
		t.Helper()
		for _, x := range vms {
			if ok, out := x.v.DHCP(t, "10"); !ok || x.v.Addr(t) != x.addr {
				t.Fatalf("%s: VM %s got %q by DHCP, want %s:\n%s", when, x.v.NS.Name, x.v.Addr(t), x.addr, out)
			}
			if !x.v.Ping("10.0.0.1") {
				t.Errorf("%s: VM %s cannot ping its gateway", when, x.v.NS.Name)
			}
		}
	}
	working("before stop")

	n, err := env.Client.StopNetwork(ctx, "life")
	if err != nil || !n.Stopped {
		t.Fatalf("stop: %+v (%v)", n, err)
	}
	nstest.Eventually(t, 30*time.Second, "br100 removed", func() bool { return !hasLink(hv, "br100") })
	nstest.Eventually(t, 30*time.Second, "dnsmasq stopped", func() bool {
		ps, err := hv.Pids()
		return err == nil && len(ps) == 0
	})
	wantFirewall(t, env, hv, cfg)
	for _, x := range vms {
		if f := fixedIP(t, env, x.addr); !f.Allocated || f.InstanceUUID == "" {
			t.Errorf("stopped: %s is no longer allocated: %+v", x.addr, f)
		}
	}
	if x := vms[0]; x.v.Ping("10.0.0.1") {
		t.Error("stopped: a VM still reaches the gateway")
	}

	if n, err := env.Client.StartNetwork(ctx, "life"); err != nil || n.Stopped {
		t.Fatalf("start: %+v (%v)", n, err)
	}
	nstest.Eventually(t, 30*time.Second, "br100 made again", func() bool { return hasLink(hv, "br100") })
	nstest.Eventually(t, 30*time.Second, "the VMs' ports back on br100", func() bool {
		for _, p := range []string{"tap1", "tap2"} {
			l, err := hv.Handle.LinkByName(p)
			if err != nil || l.Attrs().MasterIndex == 0 {
				return false
			}
		}
		return true
	})
	nstest.Eventually(t, 30*time.Second, "dnsmasq running again", func() bool {
		ps, err := hv.Pids()
		return err == nil && len(ps) > 0
	})
	wantFirewall(t, env, hv, cfg)
	working("after start")
}
