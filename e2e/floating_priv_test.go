package e2e_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/hostnet"
	"novanet/internal/testenv"
	"novanet/linuxnet/nsrun"
	"novanet/linuxnet/nstest"
	"novanet/rpc"

	"net/netip"
)

// public gives the hypervisor a public interface pub0 (203.0.113.1/24)
// whose other end is eth0 (203.0.113.100/24) of a "public" namespace.
func public(t *testing.T, hv *nstest.NS) *nstest.NS {
	t.Helper()
	pub := nstest.New(t)
	hv.Run(t, "ip", "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", pub.Name)
	hv.Run(t, "ip", "addr", "add", "203.0.113.1/24", "dev", "pub0")
	hv.Run(t, "ip", "link", "set", "pub0", "up")
	pub.Run(t, "ip", "addr", "add", "203.0.113.100/24", "dev", "eth0")
	pub.Run(t, "ip", "link", "set", "eth0", "up")
	return pub
}

// echoServer listens on TCP port 7 inside ns and echoes one line per
// connection; the socket stays in ns after the thread switches back.
func echoServer(t *testing.T, ns *nstest.NS) {
	t.Helper()
	var ln net.Listener
	if err := nsrun.Do(ns.Path, func() (err error) {
		ln, err = net.Listen("tcp4", ":7")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
}

// echo sends a line to addr:7 from ns and checks it comes back.
func echo(ns *nstest.NS, addr string) error {
	var c net.Conn
	if err := nsrun.Do(ns.Path, func() (err error) {
		c, err = net.DialTimeout("tcp4", net.JoinHostPort(addr, "7"), 2*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello novanet\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "hello novanet\n" {
		return fmt.Errorf("echo from %s: %q", addr, line)
	}
	return nil
}

func ping(ns *nstest.NS, addr string) error {
	out, err := ns.Command(ctx, "busybox", "ping", "-c", "1", "-W", "2", addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v\n%s", addr, ns.Name, err, out)
	}
	return nil
}

func bound(t *testing.T, hv *nstest.NS, addr string) bool {
	return strings.Contains(hv.Run(t, "ip", "-4", "-o", "addr", "show", "dev", "pub0"), " "+addr+"/32 ")
}

// oldHostMAC is where the public side's neighbour entry for a floating
// address points before it moves here: the host that had it before.
const oldHostMAC = "02:00:5e:00:53:01"

// staleNeighbour makes ns believe, as a stale entry, that addr is at
// oldHostMAC: a neighbour that last reached the floating address on
// another host. Only a gratuitous ARP for addr itself corrects it before
// the neighbour sends there again.
func staleNeighbour(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	ns.Run(t, "ip", "neigh", "replace", addr, "lladdr", oldHostMAC, "dev", "eth0", "nud", "stale")
}

// neighbourMAC returns the link-layer address of ns's neighbour entry for
// addr on eth0 ("" when it has none).
func neighbourMAC(t *testing.T, ns *nstest.NS, addr string) string {
	f := strings.Fields(ns.Run(t, "ip", "neigh", "show", addr, "dev", "eth0"))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func TestFloatingIPEndToEnd(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.StartSecure(t, "flatdhcp")
	hv := nstest.New(t)
	pub := public(t, hv)
	cfg := hostnet.Config{Host: "hv1", Driver: "flatdhcp", PublicInterface: "pub0",
		RoutingSourceIP: netip.MustParseAddr("203.0.113.1")}
	ag := newAgent(t, env, hv, "hv1", "flatdhcp", "--public-interface", "pub0", "--routing-source-ip", "203.0.113.1")
	ag.start()
	ag.waitRegistered()
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100"}); err != nil {
		t.Fatal(err)
	}
	vif := allocate(t, env, uuid.NewString(), "p1", "hv1")
	fixed := vif.FixedIPs[0].Address
	nstest.Eventually(t, 30*time.Second, "br100", func() bool { return hasLink(hv, "br100") })
	v := newVM(t, hv, "br100", "tap1", vif.MAC)
	v.StartDHCP(t)
	nstest.Eventually(t, 30*time.Second, "VM has "+fixed, func() bool { return v.Addr(t) == fixed })
	echoServer(t, v.NS)

	if _, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{Pool: "public", CIDR: "203.0.113.48/29"}); err != nil {
		t.Fatal(err)
	}
	fip, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1", Pool: "public"})
	if err != nil {
		t.Fatal(err)
	}
	float := fip.Address
	if err := ping(pub, float); err == nil {
		t.Fatalf("%s answers before it is associated", float)
	}
	pub0, err := hv.Handle.LinkByName("pub0")
	if err != nil {
		t.Fatal(err)
	}
	hostMAC := pub0.Attrs().HardwareAddr.String()
	staleNeighbour(t, pub, float)
	if _, err := env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: float, FixedAddress: fixed}); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 30*time.Second, float+" bound on pub0", func() bool { return bound(t, hv, float) })
	// The gratuitous ARP names the floating address, so the public side's
	// stale entry moves to this host before anything is sent.
	nstest.Eventually(t, 30*time.Second, "the gratuitous ARP moves "+float+" to "+hostMAC,
		func() bool { return neighbourMAC(t, pub, float) == hostMAC })
	wantFirewall(t, env, hv, cfg)
	if err := ping(pub, float); err != nil {
		t.Error(err)
	}
	if err := echo(pub, float); err != nil {
		t.Errorf("TCP echo through %s: %v", float, err)
	}

	// Disassociated: unreachable, and nothing of it left on the host.
	if _, err := env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: float}); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 30*time.Second, float+" unbound from pub0", func() bool { return !bound(t, hv, float) })
	wantFirewall(t, env, hv, cfg)
	if save := hv.Run(t, "iptables-save"); strings.Contains(save, float) {
		t.Errorf("rules for %s left after disassociation:\n%s", float, save)
	}
	if err := ping(pub, float); err == nil {
		t.Errorf("%s still answers after disassociation", float)
	}

	// Associated again, then the agent restarts on a host that lost the
	// address: it works again, with no duplicate rule.
	if _, err := env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: float, FixedAddress: fixed}); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 30*time.Second, float+" bound again", func() bool { return bound(t, hv, float) })
	ag.stop()
	hv.Run(t, "ip", "addr", "del", float+"/32", "dev", "pub0")
	staleNeighbour(t, pub, float)
	ag.start()
	nstest.Eventually(t, 30*time.Second, float+" bound after the restart", func() bool { return bound(t, hv, float) })
	nstest.Eventually(t, 30*time.Second, "the gratuitous ARP after the restart moves "+float+" to "+hostMAC,
		func() bool { return neighbourMAC(t, pub, float) == hostMAC })
	wantFirewall(t, env, hv, cfg)
	if err := ping(pub, float); err != nil {
		t.Error(err)
	}
	if err := echo(pub, float); err != nil {
		t.Errorf("TCP echo after restart: %v", err)
	}
}
