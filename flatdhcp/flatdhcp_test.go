package flatdhcp_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/flatdhcp"
	"novanet/hostnet"
	"novanet/hostnet/hostnettest"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

func config() hostnet.Config {
	return hostnet.Config{
		Driver: "flatdhcp", FlatInterface: "eth1", DHCPDir: "/var/lib/novanet/dhcp",
		DHCPDomain: "novalocal", DHCPCommand: []string{"/usr/bin/network-host", "dhcp-event"},
	}
}

func newOS(t *testing.T) *hostnettest.OS {
	t.Helper()
	return hostnettest.NewOS(t, config(), "eth0", "eth1", "eth2")
}

func net1(hosts int) rpc.HostNetwork {
	n := rpc.HostNetwork{
		ID: 1, CIDR: "10.0.0.0/24", Gateway: "10.0.0.1", DHCPStart: "10.0.0.2", Bridge: "br100",
		DNS: []string{"8.8.8.8"}, MTU: 1500, EnableDHCP: true,
	}
	for i := range hosts {
		n.DHCPHosts = append(n.DHCPHosts, rpc.DHCPHost{
			MAC: fmt.Sprintf("02:00:00:00:00:%02x", i+1), Address: fmt.Sprintf("10.0.0.%d", 10+i), Hostname: fmt.Sprintf("vm%d", i+1),
		})
	}
	return n
}

func net2(dhcp bool) rpc.HostNetwork {
	return rpc.HostNetwork{
		ID: 2, CIDR: "10.0.1.0/24", Gateway: "10.0.1.1", Bridge: "br200", BridgeInterface: "eth2", MTU: 9000, EnableDHCP: dhcp,
		DHCPHosts: []rpc.DHCPHost{{MAC: "02:00:00:00:01:01", Address: "10.0.1.10"}},
	}
}

// net3 shares br100 with net1, as every flat network does by default.
func net3(dhcp bool) rpc.HostNetwork {
	return rpc.HostNetwork{
		ID: 3, CIDR: "10.0.2.0/24", Gateway: "10.0.2.1", Bridge: "br100", MTU: 1500, EnableDHCP: dhcp, DNS: []string{"8.8.8.8"},
		DHCPHosts: []rpc.DHCPHost{{MAC: "02:00:00:00:02:01", Address: "10.0.2.10"}},
	}
}

// states are desired states of the host, each a list of networks.
func states() []hostnettest.State {
	mtu := net1(1)
	mtu.MTU = 1400
	renamed := net1(1)
	renamed.Bridge = "br101"
	noDHCP := net1(1)
	noDHCP.EnableDHCP = false
	return []hostnettest.State{
		{Name: "empty"},
		{Name: "one network", Nets: []rpc.HostNetwork{net1(1)}},
		{Name: "two hosts", Nets: []rpc.HostNetwork{net1(2)}},
		{Name: "mtu and a second network without dhcp", Nets: []rpc.HostNetwork{mtu, net2(false)}},
		{Name: "second network with dhcp only", Nets: []rpc.HostNetwork{net2(true)}},
		{Name: "bridge renamed", Nets: []rpc.HostNetwork{renamed, net2(true)}},
		{Name: "no hosts", Nets: []rpc.HostNetwork{net1(0)}},
		{Name: "two networks on br100", Nets: []rpc.HostNetwork{net1(1), net3(true)}},
		{Name: "shared br100, first without dhcp", Nets: []rpc.HostNetwork{noDHCP, net3(true)}},
		{Name: "second of br100 alone", Nets: []rpc.HostNetwork{net3(true)}},
		{Name: "br100 shared, no dhcp", Nets: []rpc.HostNetwork{noDHCP, net3(false)}},
	}
}

// TestStates is the state table: see hostnettest.CheckStates.
func TestStates(t *testing.T) {
	hostnettest.CheckStates(t, newOS, states(), "states.golden", 1, 2)
}

func TestSetupReportsAndRepairsDrift(t *testing.T) {
	o := newOS(t)
	ctx := t.Context()
	d := o.Agent.Driver
	n := net1(1)
	changes, err := d.Setup(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	wantChanges := []string{"created bridge br100", "added address 10.0.0.1/24 to br100", "enslaved eth1 to br100", "dnsmasq br100 started"}
	if d := cmp.Diff(wantChanges, changes); d != "" {
		t.Errorf("first Setup changes (-want +got):\n%s", d)
	}
	if changes, err := d.Setup(ctx, n); err != nil || changes != nil {
		t.Errorf("second Setup = %q, %v; want nil", changes, err)
	}
	n = net1(2)
	if changes, err := d.Setup(ctx, n); err != nil || !cmp.Equal(changes, []string{"dnsmasq br100 reloaded (hosts changed)"}) {
		t.Errorf("Setup with a new host = %q, %v", changes, err)
	}
	n.DNS = []string{"8.8.4.4"}
	if changes, err := d.Setup(ctx, n); err != nil || !cmp.Equal(changes, []string{"dnsmasq br100 restarted (config changed)"}) {
		t.Errorf("Setup with new DNS = %q, %v", changes, err)
	}
	// Drift: dnsmasq died, the bridge lost its address, eth1 left it.
	o.DHCP.Kill("br100")
	if err := o.Links.Delete(ctx, "br100"); err != nil {
		t.Fatal(err)
	}
	o.Links.Add("br100", hostnettest.Link{Kind: "bridge", MTU: 1500})
	changes, err = d.Setup(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	wantChanges = []string{"set bridge br100 up", "added address 10.0.0.1/24 to br100", "enslaved eth1 to br100", "dnsmasq br100 started"}
	if d := cmp.Diff(wantChanges, changes); d != "" {
		t.Errorf("Setup after drift (-want +got):\n%s", d)
	}
	// DHCP turned off stops the dnsmasq.
	n.EnableDHCP = false
	if changes, err := d.Setup(ctx, n); err != nil || !cmp.Equal(changes, []string{"dnsmasq br100 stopped (dhcp disabled)"}) {
		t.Errorf("Setup with DHCP off = %q, %v", changes, err)
	}
}

func TestMovesFlatInterfaceAddress(t *testing.T) {
	o := newOS(t)
	o.Links.Add("eth1", hostnettest.Link{Kind: "device", Up: true, MTU: 1500, Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.5/24")}})
	changes, err := o.Agent.Driver.Setup(t.Context(), net1(0))
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(changes[2:3], []string{"enslaved eth1 to br100"}) || changes[3] != "moved 192.0.2.5/24 from eth1 to br100" {
		t.Errorf("changes = %q", changes)
	}
	br, _ := o.Links.Get("br100")
	if !cmp.Equal(br.Addrs, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("192.0.2.5/24")}, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("bridge addresses = %v", br.Addrs)
	}
}

func TestTeardownOfGoneObjects(t *testing.T) {
	o := newOS(t)
	d := o.Agent.Driver
	rec, err := d.Plan(net1(1))
	if err != nil {
		t.Fatal(err)
	}
	if want := (hostnet.Record{NetworkID: 1, Driver: "flatdhcp", Bridge: "br100", BridgeOwned: true, DHCP: "br100",
		Gateway: netip.MustParsePrefix("10.0.0.1/24")}); rec != want {
		t.Errorf("Plan = %+v, want %+v", rec, want)
	}
	// Nothing was ever made (a crash right after the record was stored).
	if changes, err := d.Teardown(t.Context(), rec); err != nil || changes != nil {
		t.Errorf("Teardown of nothing = %q, %v", changes, err)
	}
	if _, err := d.Setup(t.Context(), net1(1)); err != nil {
		t.Fatal(err)
	}
	changes, err := d.Teardown(t.Context(), rec)
	if err != nil || !cmp.Equal(changes, []string{"dnsmasq br100 stopped", "deleted bridge br100"}) {
		t.Errorf("Teardown = %q, %v", changes, err)
	}
	if changes, err := d.Teardown(t.Context(), rec); err != nil || changes != nil {
		t.Errorf("second Teardown = %q, %v", changes, err)
	}
	if got, want := o.Dump(), hostnettest.NewLinks("eth0", "eth1", "eth2").Dump(); got != want {
		t.Errorf("after teardown:\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []hostnet.Record{
		{NetworkID: 1, Driver: "vlan", Bridge: "br100"},
		{NetworkID: 1, Driver: "flatdhcp", Bridge: "br/100"},
		{NetworkID: 1, Driver: "flatdhcp", Bridge: "br100", DHCP: "../etc"},
	} {
		if _, err := d.Teardown(t.Context(), bad); err == nil {
			t.Errorf("Teardown(%+v) succeeded", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	ctx := t.Context()
	t.Run("missing flat interface", func(t *testing.T) {
		o := newOS(t)
		n := net1(0)
		n.BridgeInterface = "eth7"
		_, err := o.Agent.Driver.Setup(ctx, n)
		if !errors.Is(err, link.ErrNotFound) || !strings.Contains(err.Error(), "flat interface eth7") || !strings.Contains(err.Error(), "network 1 (br100)") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("port of another bridge", func(t *testing.T) {
		o := newOS(t)
		o.Links.Add("br9", hostnettest.Link{Kind: "bridge", Up: true, MTU: 1500})
		if err := o.Links.Enslave(ctx, "br9", "eth1", link.EnslaveOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := o.Agent.Driver.Setup(ctx, net1(0))
		if !errors.Is(err, hostnet.ErrPortInUse) || !strings.Contains(err.Error(), "eth1") || !strings.Contains(err.Error(), "br9") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("bridge name taken by a device", func(t *testing.T) {
		o := newOS(t)
		n := net1(0)
		n.Bridge = "eth2"
		if _, err := o.Agent.Driver.Setup(ctx, n); !errors.Is(err, link.ErrMismatch) || !strings.Contains(err.Error(), "eth2") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("dhcp without gateway is refused before anything is made", func(t *testing.T) {
		o := newOS(t)
		n := net1(0)
		n.Gateway = ""
		if _, err := o.Agent.Driver.Setup(ctx, n); !errors.Is(err, hostnet.ErrInvalidNetwork) || !strings.Contains(err.Error(), "gateway") {
			t.Errorf("Setup = %v", err)
		}
		if o.Links.Calls != nil {
			t.Errorf("links changed: %q", o.Links.Calls)
		}
	})
	t.Run("dnsmasq failure names the network", func(t *testing.T) {
		o := newOS(t)
		o.DHCP.Fail = errors.New("boom")
		_, err := o.Agent.Driver.Setup(ctx, net1(0))
		if err == nil || !strings.Contains(err.Error(), "network 1 (br100)") {
			t.Errorf("Setup = %v", err)
		}
		// Stated once (it read "network 1 (br100): network 1 (br100): boom").
		if err != nil && err.Error() != "network 1 (br100): boom" {
			t.Errorf("Setup = %q, want %q", err, "network 1 (br100): boom")
		}
	})
	t.Run("config", func(t *testing.T) {
		cfg := config()
		cfg.DHCPDir = "dhcp"
		if _, err := hostnet.NewDriver(cfg, hostnettest.NewLinks(), hostnettest.NewDHCP()); !errors.Is(err, hostnet.ErrInvalidConfig) {
			t.Errorf("New with relative dir = %v", err)
		}
		cfg = config()
		cfg.FlatInterface = "eth 1"
		if _, err := hostnet.NewDriver(cfg, hostnettest.NewLinks(), hostnettest.NewDHCP()); !errors.Is(err, hostnet.ErrInvalidConfig) {
			t.Errorf("New with bad flat interface = %v", err)
		}
		if _, err := flatdhcp.New(config(), nil, nil); !errors.Is(err, hostnet.ErrInvalidConfig) {
			t.Errorf("New without links = %v", err)
		}
	})
}

// A VM's tap on br100, seen by a convergence, is put back when the bridge
// is made again, also by an agent started afresh (the memory is in the
// state directory); the driver's own flat interface is enslaved as usual.
func TestPortsPutBackOnRecreatedBridge(t *testing.T) {
	cfg := config()
	cfg.StateDir = t.TempDir()
	links, dhcp := hostnettest.NewLinks("eth1"), hostnettest.NewDHCP()
	d, err := hostnet.NewDriver(cfg, links, dhcp)
	if err != nil {
		t.Fatal(err)
	}
	agent := hostnettest.NewAgent(d)
	ctx := t.Context()
	if _, err := agent.Converge(ctx, []rpc.HostNetwork{net1(1)}); err != nil {
		t.Fatal(err)
	}
	links.Add("tap1", hostnettest.Link{Kind: "tun", Up: true, MTU: 1500, Master: "br100"})
	if _, err := agent.Converge(ctx, []rpc.HostNetwork{net1(1)}); err != nil { // sees tap1
		t.Fatal(err)
	}
	if err := links.Delete(ctx, "br100"); err != nil { // behind the agent's back
		t.Fatal(err)
	}
	// A new agent process: same state directory, no memory of its own.
	d, err = hostnet.NewDriver(cfg, links, dhcp)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := hostnettest.NewAgent(d).Converge(ctx, []rpc.HostNetwork{net1(1)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"created bridge br100", "added address 10.0.0.1/24 to br100", "enslaved eth1 to br100", "put port tap1 back on br100"}
	if d := cmp.Diff(want, changes); d != "" {
		t.Errorf("changes (-want +got):\n%s", d)
	}
	if tap, _ := links.Get("tap1"); tap.Master != "br100" {
		t.Errorf("tap1 master %q, want br100", tap.Master)
	}
}
