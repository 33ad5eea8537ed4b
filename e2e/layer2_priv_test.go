package e2e_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// TestLayer2OnInstanceHosts runs one project's single-host VLAN network
// with instances on two hypervisors, joined by their uplinks (VXLAN
// segments stand in for 802.1Q VLANs, which this kernel may lack). The
// network is served by hv1 (gateway, dnsmasq); hv2 only has an instance on
// it, and must still get the network's layer 2 — the bridge and the
// segment, no gateway address and no dnsmasq — so that its VM gets its
// address from hv1 across the segment and pings the gateway.
func TestLayer2OnInstanceHosts(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.Start(t, "vlan")
	hv1, hv2 := nstest.New(t), nstest.New(t)
	hv1.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", hv2.Name)
	for i, hv := range []*nstest.NS{hv1, hv2} {
		hv.Run(t, "ip", "addr", "add", fmt.Sprintf("192.168.60.%d/24", i+1), "dev", "eth1")
		hv.Run(t, "ip", "link", "set", "eth1", "up")
	}
	agents := []*agent{
		newAgent(t, env, hv1, "hv1", "vlan", "--vlan-interface", "eth1", "--vlan-segment", "vxlan", "--vxlan-group", "192.168.60.2"),
		newAgent(t, env, hv2, "hv2", "vlan", "--vlan-interface", "eth1", "--vlan-segment", "vxlan", "--vxlan-group", "192.168.60.1"),
	}
	for _, a := range agents {
		a.start()
		a.waitRegistered()
	}
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.6.0.0/24", NumNetworks: 1,
		NetworkSize: 16, VLANStart: 300}); err != nil {
		t.Fatal(err)
	}
	vif1 := allocate(t, env, uuid.NewString(), "project-a", "hv1")
	vif2 := allocate(t, env, uuid.NewString(), "project-a", "hv2")
	if vif1.Network.ID != vif2.Network.ID {
		t.Fatalf("the project's instances on networks %d and %d", vif1.Network.ID, vif2.Network.ID)
	}
	br, seg := vif1.Network.Bridge, fmt.Sprintf("vxlan%d", vif1.Network.VLAN)
	for _, hv := range []*nstest.NS{hv1, hv2} {
		nstest.Eventually(t, 30*time.Second, br+" and "+seg+" on "+hv.Name, func() bool { return hasLink(hv, br) && hasLink(hv, seg) })
	}
	// hv2 carries layer 2 only: no gateway, no dnsmasq, nothing else.
	if got, want := links(t, hv2), []string{br, "eth1", seg}; !slices.Equal(got, want) {
		t.Errorf("links on hv2 %v, want %v", got, want)
	}
	if out := hv2.Run(t, "ip", "-4", "-o", "addr", "show", "dev", br); out != "" {
		t.Errorf("%s on hv2 has addresses (only hv1 serves the network):\n%s", br, out)
	}
	if pids, err := topProcesses(hv2); err != nil || len(pids) != 0 {
		t.Errorf("processes on hv2 %v (%v), want no dnsmasq", pids, err)
	}
	st, err := env.Client.HostState(ctx, "hv2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Networks) != 1 || !st.Networks[0].Layer2Only || len(st.Networks[0].DHCPHosts) != 0 {
		t.Errorf("hv2's state %+v, want the network, layer 2 only, without reservations", st.Networks)
	}

	for i, x := range []struct {
		hv  *nstest.NS
		vif rpc.VIF
	}{{hv1, vif1}, {hv2, vif2}} {
		v := newVM(t, x.hv, br, fmt.Sprintf("tap%d", i+1), x.vif.MAC)
		v.StartDHCP(t)
		ip := x.vif.FixedIPs[0]
		nstest.Eventually(t, 30*time.Second, fmt.Sprintf("VM on %s has address %s", x.hv.Name, ip.Address),
			func() bool { return v.Addr(t) == ip.Address })
		if !v.Ping(ip.Gateway) {
			t.Errorf("VM on %s cannot ping its gateway %s", x.hv.Name, ip.Gateway)
		}
	}

	// The instance on hv2 goes: hv2 drops the network's layer 2.
	if err := env.Client.Call(ctx, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: instanceOf(t, env, vif2)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Call(ctx, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: vif2.FixedIPs[0].Address}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.ConvergeHost(ctx, "hv2"); err != nil {
		t.Fatal(err)
	}
	if got, want := links(t, hv2), []string{"eth1"}; !slices.Equal(got, want) {
		t.Errorf("links on hv2 after its instance went: %v, want %v", got, want)
	}
}

// instanceOf returns the instance that holds vif's address.
func instanceOf(t *testing.T, env *testenv.Env, vif rpc.VIF) string {
	t.Helper()
	return fixedIP(t, env, vif.FixedIPs[0].Address).InstanceUUID
}
