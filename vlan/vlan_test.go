package vlan_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/hostnet"
	"novanet/hostnet/hostnettest"
	"novanet/linuxnet/link"
	"novanet/rpc"
	"novanet/vlan"
)

func config(segment string) hostnet.Config {
	return hostnet.Config{
		Driver: "vlan", VLANInterface: "eth1", VLANSegment: segment, DHCPDir: "/var/lib/novanet/dhcp",
		VXLANGroup: netip.MustParseAddr("239.1.1.1"), VXLANPort: 4789,
	}
}

func newOS(t *testing.T, segment string) *hostnettest.OS {
	t.Helper()
	return hostnettest.NewOS(t, config(segment), "eth0", "eth1", "eth2")
}

func project(id int64, vid int, hosts int) rpc.HostNetwork {
	n := rpc.HostNetwork{
		ID: id, CIDR: fmt.Sprintf("10.%d.0.0/24", id), Gateway: fmt.Sprintf("10.%d.0.1", id),
		Bridge: fmt.Sprintf("br%d", vid), VLAN: vid, MTU: 1450, EnableDHCP: true,
	}
	for i := range hosts {
		n.DHCPHosts = append(n.DHCPHosts, rpc.DHCPHost{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", id, i+1), Address: fmt.Sprintf("10.%d.0.%d", id, 10+i)})
	}
	return n
}

func states() []hostnettest.State {
	other := project(2, 102, 1)
	other.BridgeInterface = "eth2"
	moved := project(1, 111, 1) // same network, new VLAN id and bridge
	nodhcp := project(3, 103, 0)
	nodhcp.EnableDHCP = false
	// Served by another host, with an instance here: layer 2 only.
	carried := project(1, 101, 0)
	carried.Layer2Only = true
	return []hostnettest.State{
		{Name: "empty"},
		{Name: "one project", Nets: []rpc.HostNetwork{project(1, 101, 1)}},
		{Name: "two projects", Nets: []rpc.HostNetwork{project(1, 101, 2), other}},
		{Name: "vlan moved", Nets: []rpc.HostNetwork{moved, other}},
		{Name: "three projects", Nets: []rpc.HostNetwork{project(1, 101, 0), project(2, 102, 1), nodhcp}},
		{Name: "first project served elsewhere", Nets: []rpc.HostNetwork{carried, project(2, 102, 1)}},
		{Name: "only layer 2", Nets: []rpc.HostNetwork{carried}},
	}
}

func TestStates(t *testing.T) {
	for _, seg := range []string{"vlan", "vxlan"} {
		t.Run(seg, func(t *testing.T) {
			newOS := func(t *testing.T) *hostnettest.OS { return newOS(t, seg) }
			hostnettest.CheckStates(t, newOS, states(), "states_"+seg+".golden", 3, 4)
		})
	}
}

func TestPlan(t *testing.T) {
	o := newOS(t, "vxlan")
	rec, err := o.Agent.Driver.Plan(project(1, 101, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := hostnet.Record{NetworkID: 1, Driver: "vlan", Bridge: "br101", BridgeOwned: true, Segment: "vxlan101", DHCP: "br101",
		Gateway: netip.MustParsePrefix("10.1.0.1/24")}
	if rec != want {
		t.Errorf("Plan = %+v, want %+v", rec, want)
	}
	o = newOS(t, "")
	if rec, err := o.Agent.Driver.Plan(project(1, 101, 0)); err != nil || rec.Segment != "vlan101" {
		t.Errorf("Plan with default segment = %+v, %v", rec, err)
	}
	n := project(1, 101, 0)
	n.VLAN = 0
	if _, err := o.Agent.Driver.Plan(n); !errors.Is(err, hostnet.ErrInvalidNetwork) || !strings.Contains(err.Error(), "vlan") {
		t.Errorf("Plan without vlan id = %v", err)
	}
	n = project(1, 101, 0)
	n.Bridge = "vlan101"
	if _, err := o.Agent.Driver.Plan(n); !errors.Is(err, hostnet.ErrInvalidNetwork) {
		t.Errorf("Plan with bridge named like the segment = %v", err)
	}
}

func TestSetupChangesAndTeardown(t *testing.T) {
	o := newOS(t, "vxlan")
	ctx := t.Context()
	d := o.Agent.Driver
	n := project(1, 101, 1)
	changes, err := d.Setup(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"created vxlan vxlan101 on eth1", "created bridge br101", "added address 10.1.0.1/24 to br101", "enslaved vxlan101 to br101", "dnsmasq br101 started"}
	if d := cmp.Diff(want, changes); d != "" {
		t.Errorf("Setup (-want +got):\n%s", d)
	}
	if changes, err := d.Setup(ctx, n); err != nil || changes != nil {
		t.Errorf("second Setup = %q, %v", changes, err)
	}
	// Drift: the segment was deleted behind our back.
	if err := o.Links.Delete(ctx, "vxlan101"); err != nil {
		t.Fatal(err)
	}
	want = []string{"created vxlan vxlan101 on eth1", "enslaved vxlan101 to br101"}
	if changes, err := d.Setup(ctx, n); err != nil || !cmp.Equal(changes, want) {
		t.Errorf("Setup after drift = %q, %v; want %q", changes, err, want)
	}
	rec, _ := d.Plan(n)
	want = []string{"dnsmasq br101 stopped", "deleted bridge br101", "deleted vxlan vxlan101"}
	if changes, err := d.Teardown(ctx, rec); err != nil || !cmp.Equal(changes, want) {
		t.Errorf("Teardown = %q, %v; want %q", changes, err, want)
	}
	if changes, err := d.Teardown(ctx, rec); err != nil || changes != nil {
		t.Errorf("second Teardown = %q, %v", changes, err)
	}
	if got, want := o.Dump(), hostnettest.NewLinks("eth0", "eth1", "eth2").Dump(); got != want {
		t.Errorf("after teardown:\n%s\nwant\n%s", got, want)
	}
}

func TestErrors(t *testing.T) {
	ctx := t.Context()
	t.Run("no 802.1Q", func(t *testing.T) {
		o := newOS(t, "vlan")
		o.Links.NoVLAN = true
		_, err := o.Agent.Driver.Setup(ctx, project(1, 101, 0))
		if !errors.Is(err, link.ErrUnsupported) || !strings.Contains(err.Error(), "network 1 (br101)") || !strings.Contains(err.Error(), "vlan101") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("missing vlan interface", func(t *testing.T) {
		o := newOS(t, "vxlan")
		n := project(1, 101, 0)
		n.BridgeInterface = "bond0"
		if _, err := o.Agent.Driver.Setup(ctx, n); !errors.Is(err, link.ErrNotFound) || !strings.Contains(err.Error(), "bond0") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("no vlan interface configured", func(t *testing.T) {
		cfg := config("vxlan")
		cfg.VLANInterface = ""
		drv, err := hostnet.NewDriver(cfg, hostnettest.NewLinks(), hostnettest.NewDHCP())
		if err != nil {
			t.Fatal(err)
		}
		d := hostnettest.Driver{Driver: drv}
		if _, err := d.Setup(ctx, project(1, 101, 0)); !errors.Is(err, hostnet.ErrInvalidNetwork) || !strings.Contains(err.Error(), "vlan interface") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("same vlan id for two bridges", func(t *testing.T) {
		o := newOS(t, "vxlan")
		if _, err := o.Agent.Driver.Setup(ctx, project(1, 101, 0)); err != nil {
			t.Fatal(err)
		}
		n := project(2, 101, 0)
		n.Bridge = "brother"
		if _, err := o.Agent.Driver.Setup(ctx, n); !errors.Is(err, hostnet.ErrPortInUse) || !strings.Contains(err.Error(), "vxlan101") {
			t.Errorf("Setup = %v", err)
		}
	})
	t.Run("bad segment kind", func(t *testing.T) {
		if _, err := hostnet.NewDriver(config("gre"), hostnettest.NewLinks(), hostnettest.NewDHCP()); !errors.Is(err, hostnet.ErrInvalidConfig) || !strings.Contains(err.Error(), "gre") {
			t.Errorf("New = %v", err)
		}
		if _, err := vlan.New(config("vlan"), nil, nil); !errors.Is(err, hostnet.ErrInvalidConfig) {
			t.Errorf("New without links = %v", err)
		}
	})
}
