package flat_test

import (
	"errors"
	"strings"
	"testing"

	"novanet/flat"
	"novanet/hostnet"
	"novanet/hostnet/hostnettest"
	"novanet/rpc"
)

func net1() rpc.HostNetwork {
	return rpc.HostNetwork{ID: 1, CIDR: "10.0.0.0/24", Bridge: "br100", DHCPHosts: []rpc.DHCPHost{{MAC: "02:00:00:00:00:01", Address: "10.0.0.5"}}}
}

func TestMissingBridge(t *testing.T) {
	links := hostnettest.NewLinks("eth0")
	d := newDriver(t, links)
	_, err := d.Setup(t.Context(), net1())
	if !errors.Is(err, hostnet.ErrNoBridge) {
		t.Fatalf("Setup = %v, want ErrNoBridge", err)
	}
	const want = "bridge br100 does not exist: flat mode uses the operator's bridge; create it or use flatdhcp"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Setup error %q lacks %q", err, want)
	}
	if links.Calls != nil {
		t.Errorf("Setup changed links: %q", links.Calls)
	}

	// A link of that name that is no bridge is refused too.
	links.Add("br100", hostnettest.Link{Kind: "device", Up: true})
	if _, err := d.Setup(t.Context(), net1()); !errors.Is(err, hostnet.ErrNoBridge) || !strings.Contains(err.Error(), "br100 is a device") {
		t.Errorf("Setup on a device = %v", err)
	}
}

func TestUsesOperatorBridge(t *testing.T) {
	links := hostnettest.NewLinks("eth0")
	links.Add("br100", hostnettest.Link{Kind: "bridge", Up: true, MTU: 1500})
	before := links.Dump()
	d := newDriver(t, links)
	rec, err := d.Plan(net1())
	if err != nil {
		t.Fatal(err)
	}
	if want := (hostnet.Record{NetworkID: 1, Driver: "flat", Bridge: "br100"}); rec != want {
		t.Errorf("Plan = %+v, want %+v", rec, want)
	}
	for i := range 2 {
		if changes, err := d.Setup(t.Context(), net1()); err != nil || changes != nil {
			t.Fatalf("Setup #%d = %q, %v; want no changes", i, changes, err)
		}
	}
	if changes, err := d.Teardown(t.Context(), rec); err != nil || changes != nil {
		t.Fatalf("Teardown = %q, %v", changes, err)
	}
	if links.Dump() != before || links.Calls != nil {
		t.Errorf("flat driver changed links: %q\n%s", links.Calls, links.Dump())
	}
	if _, err := d.Teardown(t.Context(), hostnet.Record{NetworkID: 1, Driver: "vlan"}); err == nil {
		t.Error("Teardown of a vlan record succeeded")
	}
}

// A bad network is refused when it is parsed, before the driver sees it.
func TestBadNetwork(t *testing.T) {
	d := newDriver(t, hostnettest.NewLinks())
	n := net1()
	n.CIDR = "10.0.0.0/99"
	if _, err := d.Plan(n); !errors.Is(err, hostnet.ErrInvalidNetwork) {
		t.Errorf("Plan = %v", err)
	}
	if _, err := d.Setup(t.Context(), n); !errors.Is(err, hostnet.ErrInvalidNetwork) {
		t.Errorf("Setup = %v", err)
	}
	if _, err := flat.New(hostnet.Config{}, nil); !errors.Is(err, hostnet.ErrInvalidConfig) {
		t.Errorf("New without links = %v", err)
	}
}

// newDriver is the flat driver on links, taking rpc.HostNetwork as the
// agent gets it.
func newDriver(t *testing.T, links *hostnettest.Links) hostnettest.Driver {
	t.Helper()
	d, err := hostnet.NewDriver(hostnet.Config{Driver: "flat"}, links, nil)
	if err != nil {
		t.Fatal(err)
	}
	return hostnettest.Driver{Driver: d}
}
