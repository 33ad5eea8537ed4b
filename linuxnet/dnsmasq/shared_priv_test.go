package dnsmasq_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
	"novanet/linuxnet/nstest"
)

// TestSharedBridgeRangesAndRestarts serves two networks on one bridge from
// one dnsmasq (a dhcp-range each, both gateways on the bridge): each VM
// gets the address reserved for it in its own network, with its own
// router. Then the config changes many times in a row: every restart must
// find the old process gone, with port 67 released ("failed to create
// listening socket ... Address already in use" otherwise).
func TestSharedBridgeRangesAndRestarts(t *testing.T) {
	host := nstest.New(t)
	ctx := context.Background()
	links := link.New(host.Handle)
	for _, gw := range []string{"10.78.0.1/28", "10.78.0.17/28"} {
		if _, err := links.EnsureBridge(ctx, link.BridgeConfig{Name: "br0", Addr: netip.MustParsePrefix(gw)}); err != nil {
			t.Fatal(err)
		}
	}
	vm1 := newVM(t, host, "tap1")
	vm2 := newVM(t, host, "tap2")
	cfg := dnsmasq.Config{
		Name: "br0", Interface: "br0", LeaseTime: time.Hour, Dir: t.TempDir(), User: "root", NetNS: host.Path,
		Gateway: netip.MustParsePrefix("10.78.0.1/28"), RangeStart: netip.MustParseAddr("10.78.0.2"),
		Extra: []dnsmasq.Range{{Tag: "network-2", Gateway: netip.MustParsePrefix("10.78.0.17/28"),
			RangeStart: netip.MustParseAddr("10.78.0.18"), MTU: 1400}},
	}
	srv, err := dnsmasq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	hosts := []dnsmasq.Host{
		{MAC: vm1.MAC, IP: netip.MustParseAddr("10.78.0.5")},
		{MAC: vm2.MAC, IP: netip.MustParseAddr("10.78.0.20")},
	}
	if act, err := srv.Ensure(ctx, hosts, nil); err != nil || act != dnsmasq.Started {
		t.Fatalf("Ensure = %v, %v; want started", act, err)
	}
	for _, x := range []struct {
		vm       *nstest.VM
		addr, gw string
	}{{vm1, "10.78.0.5", "10.78.0.1"}, {vm2, "10.78.0.20", "10.78.0.17"}} {
		if ok, out := x.vm.DHCP(t, "5"); !ok {
			t.Fatalf("no lease for %s:\n%s", x.addr, out)
		}
		if got := x.vm.Addr(t); got != x.addr {
			t.Errorf("VM got %q, want %s", got, x.addr)
		}
		if !x.vm.Ping(x.gw) {
			t.Errorf("VM %s cannot ping its gateway %s", x.addr, x.gw)
		}
	}

	for i := range 20 {
		c := cfg
		c.LeaseTime = time.Hour + time.Duration(i+1)*time.Minute
		s, err := dnsmasq.New(c)
		if err != nil {
			t.Fatal(err)
		}
		if act, err := s.Ensure(ctx, hosts, nil); err != nil || act != dnsmasq.Restarted {
			t.Fatalf("restart %d: Ensure = %v, %v; want restarted", i+1, act, err)
		}
	}
	if ok, out := vm2.DHCP(t, "5"); !ok {
		t.Fatalf("no lease after the restarts:\n%s", out)
	}
}
