package flatdhcp_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"novanet/flatdhcp"
	"novanet/hostnet"
	"novanet/hostnet/hostnettest"
	"novanet/linuxnet/link"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// TestFlatDHCPInNamespace runs the driver for real in a throwaway
// namespace: a veth with an address stands in for the flat interface; a
// "VM" namespace on the bridge gets its reserved address from the
// network's dnsmasq and pings the gateway. Teardown leaves only lo and the
// test's veths, and no process.
func TestFlatDHCPInNamespace(t *testing.T) {
	host := nstest.New(t)
	ctx := context.Background()
	host.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	host.Run(t, "ip", "addr", "add", "192.0.2.5/24", "dev", "eth1")
	host.Run(t, "ip", "link", "set", "eth1", "up")
	vm := nstest.NewVM(t, host, "tap1")

	dir := filepath.Join(t.TempDir(), "dhcp")
	cfg := hostnet.Config{
		Driver: "flatdhcp", NetNS: host.Path, FlatInterface: "eth1", DHCPDir: dir,
		DHCPDomain: "novalocal", DHCPLeaseTime: time.Hour,
		// The test directory is private to root; dnsmasq reads the hosts
		// file after dropping privileges.
		DnsmasqUser: "root",
	}
	links, err := link.Open(host.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer links.Close()
	servers, err := hostnet.NewDHCPServers(dir)
	if err != nil {
		t.Fatal(err)
	}
	drv, err := flatdhcp.New(cfg, links, servers)
	if err != nil {
		t.Fatal(err)
	}
	d := hostnettest.Driver{Driver: drv} // takes rpc.HostNetwork, as the agent gets it
	n := rpc.HostNetwork{
		ID: 1, CIDR: "10.77.0.0/24", Gateway: "10.77.0.1", DHCPStart: "10.77.0.2", Bridge: "br100",
		DNS: []string{"10.77.0.1"}, MTU: 1400, EnableDHCP: true,
		DHCPHosts: []rpc.DHCPHost{{MAC: vm.MAC.String(), Address: "10.77.0.10", Hostname: "vm1"}},
	}
	rec, err := d.Plan(n)
	if err != nil {
		t.Fatal(err)
	}
	torn := false
	t.Cleanup(func() {
		if !torn {
			if _, err := d.Teardown(context.Background(), rec); err != nil {
				t.Error(err)
			}
		}
	})
	changes, err := d.Setup(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"created bridge br100", "added address 10.77.0.1/24 to br100", "enslaved eth1 to br100",
		"moved 192.0.2.5/24 from eth1 to br100", "dnsmasq br100 started",
	}
	if d := cmp.Diff(want, changes); d != "" {
		t.Errorf("Setup changes (-want +got):\n%s", d)
	}
	br, err := links.Stat(ctx, "br100")
	if err != nil {
		t.Fatal(err)
	}
	if !br.Up || br.MTU != 1400 || !br.HasAddr(netip.MustParsePrefix("10.77.0.1/24")) || !br.HasAddr(netip.MustParsePrefix("192.0.2.5/24")) {
		t.Errorf("bridge = %+v; want up, mtu 1400, gateway and the moved address", br)
	}
	if eth1, _ := links.Stat(ctx, "eth1"); eth1.Master != "br100" || len(eth1.Addrs) != 0 {
		t.Errorf("eth1 = %+v; want a port of br100 without addresses", eth1)
	}
	if changes, err := d.Setup(ctx, n); err != nil || changes != nil {
		t.Errorf("second Setup = %q, %v; want no changes", changes, err)
	}

	vm.Plug(t, host, "br100")
	if ok, out := vm.DHCP(t, "10"); !ok {
		t.Fatalf("vm: no lease:\n%s", out)
	}
	lease := vm.Lease(t)
	for _, w := range []string{"ip=10.77.0.10", "mask=24", "router=10.77.0.1", "domain=novalocal", "mtu=1400"} {
		if !strings.Contains(lease, w+"\n") {
			t.Errorf("lease lacks %q:\n%s", w, lease)
		}
	}
	if !vm.Ping("10.77.0.1") {
		t.Error("vm cannot ping the gateway")
	}

	changes, err = d.Teardown(ctx, rec)
	torn = true
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"dnsmasq br100 stopped", "deleted bridge br100"}, changes); d != "" {
		t.Errorf("Teardown changes (-want +got):\n%s", d)
	}
	nstest.Eventually(t, 5*time.Second, "no process left in the host namespace", func() bool {
		pids, err := host.Pids()
		return err == nil && len(pids) == 0
	})
	if got, want := nstest.LinkNames(t, host), []string{"eth1", "eth1p", "lo", "tap1"}; !cmp.Equal(got, want) {
		t.Errorf("links after teardown = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "br100")); !os.IsNotExist(err) {
		t.Errorf("dnsmasq directory left: %v", err)
	}
	if changes, err := d.Teardown(ctx, rec); err != nil || changes != nil {
		t.Errorf("second Teardown = %q, %v", changes, err)
	}
}
