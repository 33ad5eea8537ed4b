package dnsmasq_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
	"novanet/linuxnet/nstest"
)

const eventScript = `#!/bin/sh
# Stands in for "network-host dhcp-event": log the invocation.
echo "$* iface=$DNSMASQ_INTERFACE" >> "$(dirname "$0")/events.log"
`

// newVM is a VM (nstest.VM) with eth0 plugged into the host bridge br0.
func newVM(t *testing.T, host *nstest.NS, port string) *nstest.VM {
	t.Helper()
	v := nstest.NewVM(t, host, port)
	if err := link.New(host.Handle).Enslave(context.Background(), "br0", port, link.EnslaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDHCPServesReservationAndReloads(t *testing.T) {
	host := nstest.New(t)
	ctx := context.Background()
	if _, err := link.New(host.Handle).EnsureBridge(ctx, link.BridgeConfig{
		Name: "br0", Addr: netip.MustParsePrefix("10.77.0.1/24"),
	}); err != nil {
		t.Fatal(err)
	}
	vm1 := newVM(t, host, "tap1")
	vm2 := newVM(t, host, "tap2")

	dir := t.TempDir()
	script := filepath.Join(dir, "event.sh")
	if err := os.WriteFile(script, []byte(eventScript), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := dnsmasq.Config{
		Name:         "test",
		Interface:    "br0",
		Gateway:      netip.MustParsePrefix("10.77.0.1/24"),
		RangeStart:   netip.MustParseAddr("10.77.0.2"),
		DNS:          []netip.Addr{netip.MustParseAddr("10.77.0.1")},
		Domain:       "novalocal",
		LeaseTime:    time.Hour,
		MTU:          1400,
		Dir:          dir,
		EventCommand: []string{script},
		DisableDNS:   true,
		User:         "root",
		NetNS:        host.Path,
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
	hosts := []dnsmasq.Host{{MAC: vm1.MAC, IP: netip.MustParseAddr("10.77.0.10"), Hostname: "vm1"}}
	act, err := srv.Ensure(ctx, hosts, nil)
	if err != nil || act != dnsmasq.Started {
		t.Fatalf("Ensure = %v, %v; want started", act, err)
	}
	pid, err := srv.Pid()
	if err != nil {
		t.Fatal(err)
	}
	if act, err := srv.Ensure(ctx, hosts, nil); err != nil || act != dnsmasq.Unchanged {
		t.Fatalf("second Ensure = %v, %v; want unchanged", act, err)
	}

	// VM 1 gets its reserved address and the options, and pings the gateway.
	if ok, out := vm1.DHCP(t, "10"); !ok {
		t.Fatalf("vm1: no lease:\n%s", out)
	}
	env := vm1.Lease(t)
	for _, want := range []string{"ip=10.77.0.10", "mask=24", "router=10.77.0.1", "dns=10.77.0.1", "domain=novalocal", "mtu=1400"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("vm1 lease lacks %q:\n%s", want, env)
		}
	}
	vm1.NS.Run(t, "busybox", "ping", "-c", "1", "-W", "5", "10.77.0.1")
	// dnsmasq ran our --dhcp-script for the new lease.
	nstest.Eventually(t, 10*time.Second, "dhcp-script add event", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "events.log"))
		return strings.Contains(string(b), "add "+vm1.MAC.String()+" 10.77.0.10 vm1 iface=br0")
	})
	b, _ := os.ReadFile(filepath.Join(dir, "events.log"))
	first := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	if ev, err := dnsmasq.ParseEvent(first[:4], nil); err != nil || ev.Action != dnsmasq.EventAdd || ev.IP != netip.MustParseAddr("10.77.0.10") {
		t.Errorf("ParseEvent(%q) = %+v, %v", first, ev, err)
	}

	// VM 2 has no reservation: static mode gives it nothing.
	if ok, out := vm2.DHCP(t, "2"); ok {
		t.Fatalf("vm2 got a lease without a reservation:\n%s", out)
	}

	// A new reservation: hosts rewritten, SIGHUP, same process.
	hosts = append(hosts, dnsmasq.Host{MAC: vm2.MAC, IP: netip.MustParseAddr("10.77.0.11"), Hostname: "vm2"})
	if act, err := srv.Ensure(ctx, hosts, nil); err != nil || act != dnsmasq.Reloaded {
		t.Fatalf("Ensure with a new host = %v, %v; want reloaded", act, err)
	}
	if ok, out := vm2.DHCP(t, "10"); !ok {
		t.Fatalf("vm2: no lease after SIGHUP:\n%s", out)
	}
	if env := vm2.Lease(t); !strings.Contains(env, "ip=10.77.0.11\n") {
		t.Errorf("vm2 lease:\n%s", env)
	}
	vm2.NS.Run(t, "busybox", "ping", "-c", "1", "-W", "5", "10.77.0.1")
	if p, err := srv.Pid(); err != nil || p != pid {
		t.Fatalf("pid after reload = %d, %v; want the same %d", p, err, pid)
	}

	// A config change restarts dnsmasq; the leases stay in the lease file.
	cfg.MTU = 1300
	srv2, err := dnsmasq.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if act, err := srv2.Ensure(ctx, hosts, nil); err != nil || act != dnsmasq.Restarted {
		t.Fatalf("Ensure with new config = %v, %v; want restarted", act, err)
	}
	pid2, err := srv2.Pid()
	if err != nil || pid2 == pid {
		t.Fatalf("pid after restart = %d, %v; old %d", pid2, err, pid)
	}
	leases, _ := os.ReadFile(srv2.Paths().Leases)
	for _, want := range []string{"10.77.0.10", "10.77.0.11"} {
		if !strings.Contains(string(leases), want) {
			t.Errorf("lease file lost %s:\n%s", want, leases)
		}
	}

	// A killed dnsmasq is detected and started again.
	if err := syscallKill(pid2); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 5*time.Second, "killed dnsmasq detected", func() bool {
		_, err := srv2.Pid()
		return errors.Is(err, dnsmasq.ErrNotRunning)
	})
	if !srv2.Died() {
		t.Error("Died() = false for a killed dnsmasq")
	}
	if act, err := srv2.Ensure(ctx, hosts, nil); err != nil || act != dnsmasq.Revived {
		t.Fatalf("Ensure after kill = %v, %v; want revived", act, err)
	}
	if srv2.Died() {
		t.Error("Died() = true for a dnsmasq started again")
	}
	if err := srv2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 5*time.Second, "no process left in the host namespace after Stop", func() bool {
		pids, err := host.Pids()
		return err == nil && len(pids) == 0
	})
}
