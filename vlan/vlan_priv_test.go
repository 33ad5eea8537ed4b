package vlan_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"novanet/hostnet"
	"novanet/hostnet/hostnettest"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/link"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
	"novanet/vlan"
)

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// realHost is a throwaway namespace standing for the host, with the
// driver's real dependencies pointed at it.
type realHost struct {
	ns     *nstest.NS
	cfg    hostnet.Config
	links  *link.Manager
	driver hostnettest.Driver // takes rpc.HostNetwork, as the agent gets it
}

func newRealHost(t *testing.T, segment string) *realHost {
	t.Helper()
	ns := nstest.New(t)
	ns.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	dir := filepath.Join(t.TempDir(), "dhcp")
	cfg := hostnet.Config{
		Driver: "vlan", NetNS: ns.Path, VLANInterface: "eth1", VLANSegment: segment,
		DHCPDir: dir, DHCPLeaseTime: time.Hour, DHCPDomain: "novalocal",
		DnsmasqUser: "root", // the test directory is private to root
	}
	links, err := link.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(links.Close)
	servers, err := hostnet.NewDHCPServers(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := vlan.New(cfg, links, servers)
	if err != nil {
		t.Fatal(err)
	}
	return &realHost{ns: ns, cfg: cfg, links: links, driver: hostnettest.Driver{Driver: d}}
}

// setup sets up n and registers its teardown for the end of the test.
func (h *realHost) setup(t *testing.T, n rpc.HostNetwork) hostnet.Record {
	t.Helper()
	rec, err := h.driver.Plan(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := h.driver.Teardown(context.Background(), rec); err != nil {
			t.Error(err)
		}
	})
	if _, err := h.driver.Setup(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return rec
}

func projectNet(id int64, vid int, vm *nstest.VM) rpc.HostNetwork {
	n := project(id, vid, 0)
	n.DHCPHosts = []rpc.DHCPHost{{MAC: vm.MAC.String(), Address: fmt.Sprintf("10.%d.0.10", id), Hostname: fmt.Sprintf("vm%d", id)}}
	return n
}

// TestVXLANProjectsIsolated: two projects, each a VXLAN segment, bridge
// and dnsmasq, each with a VM that gets its address and pings its gateway.
// With forwarding on, VM1 reaches VM2 through the host; after the host
// firewall (hostnet.Rules in vlan mode) it does not, and with the same
// rules minus the isolation (flatdhcp mode) it does again: the DROP rules
// are what stops it.
func TestVXLANProjectsIsolated(t *testing.T) {
	h := newRealHost(t, "vxlan")
	ctx := context.Background()
	vm1 := nstest.NewVM(t, h.ns, "tap1")
	vm2 := nstest.NewVM(t, h.ns, "tap2")
	n1, n2 := projectNet(1, 101, vm1), projectNet(2, 102, vm2)
	rec1 := h.setup(t, n1)
	rec2 := h.setup(t, n2)
	if changes, err := h.driver.Setup(ctx, n1); err != nil || changes != nil {
		t.Errorf("second Setup = %q, %v; want no changes", changes, err)
	}
	for _, seg := range []string{"vxlan101", "vxlan102"} {
		st, err := h.links.Stat(ctx, seg)
		if err != nil || st.Kind != "vxlan" || !st.Up || st.Master != "br"+seg[5:] || st.MTU != 1450 {
			t.Errorf("%s = %+v, %v", seg, st, err)
		}
	}
	vm1.Plug(t, h.ns, "br101")
	vm2.Plug(t, h.ns, "br102")
	for i, vm := range []*nstest.VM{vm1, vm2} {
		if ok, out := vm.DHCP(t, "10"); !ok {
			t.Fatalf("vm%d: no lease:\n%s", i+1, out)
		}
		if gw := fmt.Sprintf("10.%d.0.1", i+1); !vm.Ping(gw) {
			t.Fatalf("vm%d cannot ping its gateway %s", i+1, gw)
		}
	}

	// Forwarding is off in a new namespace: no way across yet.
	hostForward := machineSysctl(t, ipForward)
	if got := nstest.Sysctl(t, h.ns, ipForward); got != "0" {
		t.Fatalf("ip_forward in the new namespace = %s", got)
	}
	if err := hostnet.EnableForwarding(h.ns.Path); err != nil {
		t.Fatal(err)
	}
	if got := nstest.Sysctl(t, h.ns, ipForward); got != "1" {
		t.Fatalf("ip_forward read by a fresh ip netns exec = %s, want 1", got)
	}
	if got := machineSysctl(t, ipForward); got != hostForward {
		t.Fatalf("ip_forward of the machine's own namespace changed: %s -> %s", hostForward, got)
	}
	if !vm1.Ping("10.2.0.10") {
		t.Fatal("vm1 cannot reach vm2 through the host before the firewall; the isolation check would prove nothing")
	}

	m, err := iptables.New(iptables.Config{Binary: "novanet-test", Families: []iptables.Family{iptables.IPv4}, NetNS: h.ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Teardown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	apply := func(driver string) {
		t.Helper()
		cfg := h.cfg
		cfg.Driver = driver
		rs, err := hostnet.Rules(cfg, []hostnet.Network{mustParse(t, n1), mustParse(t, n2)})
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.SetRules(m, iptables.IPv4); err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(ctx); err != nil {
			t.Fatal(err)
		}
	}
	apply("vlan")
	if vm1.Ping("10.2.0.10") || vm2.Ping("10.1.0.10") {
		t.Error("projects reach each other through the host with the vlan firewall")
	}
	if !vm1.Ping("10.1.0.1") || !vm2.Ping("10.2.0.1") {
		t.Error("vms lost their own gateways under the firewall")
	}
	apply("flatdhcp") // same rules without the isolation
	if !vm1.Ping("10.2.0.10") {
		t.Error("without the DROP rules vm1 should reach vm2")
	}
	apply("vlan")
	if vm1.Ping("10.2.0.10") {
		t.Error("isolation not restored")
	}

	// Teardown leaves only lo and the test's veths, and no process.
	if err := m.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"dnsmasq br101 stopped", "deleted bridge br101", "deleted vxlan vxlan101"},
		{"dnsmasq br102 stopped", "deleted bridge br102", "deleted vxlan vxlan102"},
	}
	for i, rec := range []hostnet.Record{rec1, rec2} {
		changes, err := h.driver.Teardown(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want[i], changes); d != "" {
			t.Errorf("Teardown %s (-want +got):\n%s", rec.Bridge, d)
		}
	}
	nstest.Eventually(t, 5*time.Second, "no process left in the host namespace", func() bool {
		pids, err := h.ns.Pids()
		return err == nil && len(pids) == 0
	})
	if got, want := nstest.LinkNames(t, h.ns), []string{"eth1", "eth1p", "lo", "tap1", "tap2"}; !cmp.Equal(got, want) {
		t.Errorf("links after teardown = %q, want %q", got, want)
	}
	if entries, err := os.ReadDir(h.cfg.DHCPDir); err != nil || len(entries) != 0 {
		t.Errorf("dnsmasq directories left: %v %v", entries, err)
	}
}

// machineSysctl reads a sysctl of the machine's own namespace through a
// fresh process.
func machineSysctl(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("cat", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestVLANSegment runs the 802.1Q path; kernels without 802.1Q skip.
func TestVLANSegment(t *testing.T) {
	h := newRealHost(t, "vlan")
	ctx := context.Background()
	n := project(1, 101, 0)
	rec, err := h.driver.Plan(n)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := h.driver.Setup(ctx, n)
	t.Cleanup(func() {
		if _, err := h.driver.Teardown(context.Background(), rec); err != nil {
			t.Error(err)
		}
	})
	if errors.Is(err, link.ErrUnsupported) {
		t.Skipf("kernel lacks 802.1Q VLAN support (vlan segments need the 8021q module; use VLANSegment \"vxlan\"): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"created vlan vlan101 on eth1", "created bridge br101", "added address 10.1.0.1/24 to br101", "enslaved vlan101 to br101", "dnsmasq br101 started"}
	if d := cmp.Diff(want, changes); d != "" {
		t.Errorf("Setup (-want +got):\n%s", d)
	}
	if st, err := h.links.Stat(ctx, "vlan101"); err != nil || st.Master != "br101" {
		t.Errorf("vlan101 = %+v, %v", st, err)
	}
	if _, err := h.driver.Teardown(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got, want := nstest.LinkNames(t, h.ns), []string{"eth1", "eth1p", "lo"}; !cmp.Equal(got, want) {
		t.Errorf("links after teardown = %q, want %q", got, want)
	}
}

func mustParse(t *testing.T, n rpc.HostNetwork) hostnet.Network {
	t.Helper()
	p, err := hostnet.ParseNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
