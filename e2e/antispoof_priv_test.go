package e2e_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/hostnet"
	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// TestAntiSpoofingEndToEnd: two instances on a flatdhcp host, plugged
// through libvirt-style taps (fe: MACs). Once the agent has converged with
// the ports in place, both get their leases through the filter (DHCP from
// 0.0.0.0); a VM that takes its neighbour's address or another MAC loses
// its gateway while the neighbour keeps it.
func TestAntiSpoofingEndToEnd(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.StartSecure(t, "flatdhcp")
	hv := nstest.New(t)
	ag := newAgent(t, env, hv, "hv1", "flatdhcp")
	ag.start()
	ag.waitRegistered()
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100", DNS1: "10.0.0.1", Label: "private"}); err != nil {
		t.Fatal(err)
	}
	type inst struct {
		vif rpc.VIF
		vm  *nstest.VM
	}
	var vms []inst
	for i, port := range []string{"vnet1", "vnet2"} {
		vif := allocate(t, env, uuid.NewString(), "p1", "hv1")
		if i == 0 {
			nstest.Eventually(t, 30*time.Second, "br100 made by the agent", func() bool { return hasLink(hv, "br100") })
		}
		v := nstest.NewVM(t, hv, port)
		v.SetMAC(t, vif.MAC)
		hv.Run(t, "ip", "link", "set", port, "address", hostnet.TapMAC(v.MAC).String())
		v.Plug(t, hv, "br100")
		vms = append(vms, inst{vif, v})
	}
	if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
		t.Fatal(err)
	}
	saved := hv.Run(t, "ebtables-save")
	for _, x := range vms {
		want := "-A novanet-antispoof -p IPv4 -i " + x.vm.Port + " --ip-src " + x.vif.FixedIPs[0].Address + " -j RETURN"
		if !strings.Contains(saved, want) {
			t.Fatalf("no rule %q in:\n%s", want, saved)
		}
	}
	for _, x := range vms {
		if ok, out := x.vm.DHCP(t, "5"); !ok {
			t.Fatalf("%s: no lease through the anti-spoofing rules:\n%s", x.vm.Port, out)
		}
		if got := x.vm.Addr(t); got != x.vif.FixedIPs[0].Address {
			t.Fatalf("%s: address %q, want %s", x.vm.Port, got, x.vif.FixedIPs[0].Address)
		}
	}
	a, b := vms[0].vm, vms[1].vm
	reach := func(what string, wantA bool) {
		t.Helper()
		if !b.Ping("10.0.0.1") {
			t.Errorf("%s: the neighbour lost its gateway", what)
		}
		if got := a.Ping("10.0.0.1"); got != wantA {
			t.Errorf("%s: VM reaches its gateway = %v, want %v", what, got, wantA)
		}
	}
	reach("own addresses", true)
	own := vms[0].vif.FixedIPs[0].Address
	a.NS.Run(t, "ip", "addr", "flush", "dev", "eth0")
	a.NS.Run(t, "ip", "addr", "add", vms[1].vif.FixedIPs[0].Address+"/28", "dev", "eth0")
	reach("the neighbour's address", false)
	a.NS.Run(t, "ip", "addr", "flush", "dev", "eth0")
	a.NS.Run(t, "ip", "addr", "add", own+"/28", "dev", "eth0")
	reach("own address back", true)
	other := net.HardwareAddr{0x02, 0x16, 0x3e, 0x7f, 0x7f, 0x7f}
	a.NS.Run(t, "ip", "link", "set", "eth0", "address", other.String())
	reach("another MAC", false)
}
