package manager_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// agentInbox subscribes to every method of a host, as an agent would, and
// answers each request; the requests arrive on the returned channel.
func agentInbox(t *testing.T, env *testenv.Env, host string) <-chan *nats.Msg {
	t.Helper()
	nc := env.Connect(t)
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.Subscribe(rpc.HostPrefix+"."+host+".>", func(m *nats.Msg) {
		ch <- m
		_ = m.Respond([]byte(`{"changes":[]}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

func nextNotice(t *testing.T, ch <-chan *nats.Msg) (string, int64) {
	t.Helper()
	select {
	case m := <-ch:
		var req rpc.HostNetworkRequest
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Fatalf("notice %s: %v", m.Subject, err)
		}
		return m.Subject, req.NetworkID
	case <-time.After(10 * time.Second):
		t.Fatal("no notice reached the agent in 10s")
	}
	return "", 0
}

func TestHostRegistrationAndState(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, bad := range []rpc.RegisterHostRequest{
		{Host: "hv.1", Driver: "flatdhcp"}, {Host: "", Driver: "flatdhcp"}, {Host: "hv1", Driver: "ovs"},
	} {
		_, err := env.Client.RegisterHost(ctx, bad)
		wantCode(t, "register "+bad.Host+"/"+bad.Driver, err, rpc.CodeInvalidArgument)
	}
	h, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp", Version: "0.2.0"})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Alive || h.Driver != "flatdhcp" || h.Version != "0.2.0" {
		t.Errorf("registered host %+v", h)
	}
	inbox := agentInbox(t, env, "hv1")

	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16,
		Bridge: "br100", BridgeInterface: "eth1", DNS1: "10.9.0.1", Label: "web"})
	// No allocation yet: the network is nobody's.
	st, err := env.Client.HostState(ctx, "hv1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Networks) != 0 {
		t.Fatalf("state before any allocation: %+v", st.Networks)
	}

	inst := uuid.NewString()
	var info rpc.NetworkInfo
	if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
		InstanceUUID: inst, ProjectID: "p1", Host: "hv1"}, &info); err != nil {
		t.Fatal(err)
	}
	if info.VIFs[0].Network.Host != "hv1" {
		t.Errorf("network host %q, want hv1", info.VIFs[0].Network.Host)
	}
	if subj, id := nextNotice(t, inbox); subj != "novanet.host.hv1.setup_network" || id != nets[0].ID {
		t.Errorf("notice %s network %d", subj, id)
	}
	st, err = env.Client.HostState(ctx, "hv1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Networks) != 1 {
		t.Fatalf("state: %+v", st)
	}
	n := st.Networks[0]
	want := rpc.DHCPHost{MAC: info.VIFs[0].MAC, Address: info.VIFs[0].FixedIPs[0].Address, Hostname: inst}
	if n.Bridge != "br100" || n.BridgeInterface != "eth1" || n.Gateway != "10.0.0.1" || n.DHCPStart != "10.0.0.2" ||
		len(n.DNS) != 1 || len(n.DHCPHosts) != 1 || n.DHCPHosts[0] != want || !n.EnableDHCP {
		t.Errorf("network state %+v, want bridge br100 on eth1, gateway 10.0.0.1, host %+v", n, want)
	}
	if hs, err := env.Client.ListHosts(ctx); err != nil || len(hs) != 1 || hs[0].Networks != 1 {
		t.Errorf("hosts %+v, %v: want hv1 serving one network", hs, err)
	}

	// Another host sees nothing; a narrowed query sees only its network.
	if st, err := env.Client.HostState(ctx, "hv2", 0); err != nil || len(st.Networks) != 0 {
		t.Errorf("hv2 state %+v, %v", st, err)
	}
	if st, err := env.Client.HostState(ctx, "hv1", nets[0].ID+1); err != nil || len(st.Networks) != 0 || !st.Partial {
		t.Errorf("hv1 narrowed to another network: %+v, %v", st, err)
	}

	// Deallocation drops the reservation and tells the host.
	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Fatal(err)
	}
	if subj, id := nextNotice(t, inbox); subj != "novanet.host.hv1.refresh_dhcp" || id != nets[0].ID {
		t.Errorf("notice %s network %d", subj, id)
	}
	st, _ = env.Client.HostState(ctx, "hv1", nets[0].ID)
	if len(st.Networks) != 1 || len(st.Networks[0].DHCPHosts) != 0 {
		t.Errorf("after deallocate: %+v", st.Networks)
	}
	// Release, then delete: the host is told to tear the network down.
	addr := info.VIFs[0].FixedIPs[0].Address
	if err := call(env, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: addr}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.DeleteNetwork(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if subj, id := nextNotice(t, inbox); subj != "novanet.host.hv1.teardown_network" || id != nets[0].ID {
		t.Errorf("notice %s network %d", subj, id)
	}
}

func TestMultiHostState(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, h := range []string{"hv1", "hv2"} {
		if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: h, Driver: "flatdhcp"}); err != nil {
			t.Fatal(err)
		}
	}
	in1, in2 := agentInbox(t, env, "hv1"), agentInbox(t, env, "hv2")
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Bridge: "br100", MultiHost: true})
	a, b := uuid.NewString(), uuid.NewString()
	for inst, host := range map[string]string{a: "hv1", b: "hv2"} {
		if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
			InstanceUUID: inst, ProjectID: "p1", Host: host}, nil); err != nil {
			t.Fatal(err)
		}
	}
	nextNotice(t, in1)
	nextNotice(t, in2)
	for inst, host := range map[string]string{a: "hv1", b: "hv2"} {
		st, err := env.Client.HostState(ctx, host, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Networks) != 1 || len(st.Networks[0].DHCPHosts) != 1 || st.Networks[0].DHCPHosts[0].Hostname != inst {
			t.Errorf("%s state %+v: want only instance %s", host, st.Networks, inst)
		}
	}
	if hs, _ := env.Client.ListHosts(ctx); len(hs) != 2 || hs[0].Networks != 0 {
		t.Errorf("multi-host networks get no host: %+v", hs)
	}
}

// A single-host network served by hv1 with an instance on hv2: hv2 is
// told and carries its layer 2 only, without reservations.
func TestLayer2OnlyState(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, h := range []string{"hv1", "hv2"} {
		if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: h, Driver: "flatdhcp"}); err != nil {
			t.Fatal(err)
		}
	}
	in2 := agentInbox(t, env, "hv2")
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Bridge: "br100"})
	a, b := uuid.NewString(), uuid.NewString()
	for _, x := range []struct{ inst, host string }{{a, "hv1"}, {b, "hv2"}} {
		if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
			InstanceUUID: x.inst, ProjectID: "p1", Host: x.host}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if subj, id := nextNotice(t, in2); subj != "novanet.host.hv2.setup_network" || id != nets[0].ID {
		t.Errorf("hv2 notice %s network %d, want setup_network of %d", subj, id, nets[0].ID)
	}
	st1, err := env.Client.HostState(ctx, "hv1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st1.Networks) != 1 || st1.Networks[0].Layer2Only || len(st1.Networks[0].DHCPHosts) != 2 {
		t.Errorf("hv1 state %+v: want the network it serves with both reservations", st1.Networks)
	}
	st2, err := env.Client.HostState(ctx, "hv2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st2.Networks) != 1 || !st2.Networks[0].Layer2Only || len(st2.Networks[0].DHCPHosts) != 0 {
		t.Errorf("hv2 state %+v: want the network, layer 2 only, no reservations", st2.Networks)
	}
	if hs, _ := env.Client.ListHosts(ctx); len(hs) != 2 || hs[0].Networks != 1 || hs[1].Networks != 0 {
		t.Errorf("hosts %+v: want hv1 serving the network, hv2 none", hs)
	}
	// Without its instance, hv2 has nothing.
	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: b}, nil); err != nil {
		t.Fatal(err)
	}
	// b got the second free address; released, it is no longer held.
	if err := call(env, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: "10.0.0.3"}, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := env.Client.HostState(ctx, "hv2", 0); err != nil || len(st.Networks) != 0 {
		t.Errorf("hv2 state after its instance went: %+v, %v", st.Networks, err)
	}
}

// A floating IP associated while its network had no host is NATed by the
// host the network gets later.
func TestFloatingFollowsNetworkHost(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Bridge: "br100"})
	a := uuid.NewString()
	var info rpc.NetworkInfo
	if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
		InstanceUUID: a, ProjectID: "p1", Host: "hv1"}, &info); err != nil {
		t.Fatal(err)
	}
	if info.VIFs[0].Network.Host != "" {
		t.Fatalf("network got host %q with no agent registered", info.VIFs[0].Network.Host)
	}
	if _, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{Pool: "public", CIDR: "203.0.113.0/29"}); err != nil {
		t.Fatal(err)
	}
	fip, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1", Pool: "public"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{
		FloatingAddress: fip.Address, FixedAddress: info.VIFs[0].FixedIPs[0].Address}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatal(err)
	}
	if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
		InstanceUUID: uuid.NewString(), ProjectID: "p1", Host: "hv1"}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := env.Client.HostState(ctx, "hv1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Networks) != 1 || len(st.FloatingIPs) != 1 || st.FloatingIPs[0].Address != fip.Address {
		t.Errorf("hv1 state: %d networks, floating %+v; want the network and %s", len(st.Networks), st.FloatingIPs, fip.Address)
	}
}

// Releasing the last address of a multi-host network on a host tells that
// host, which no longer serves the network.
func TestMultiHostReleaseNotifies(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatal(err)
	}
	inbox := agentInbox(t, env, "hv1")
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Bridge: "br100", MultiHost: true})
	inst := uuid.NewString()
	var info rpc.NetworkInfo
	if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p1", Host: "hv1"}, &info); err != nil {
		t.Fatal(err)
	}
	nextNotice(t, inbox)
	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Fatal(err)
	}
	nextNotice(t, inbox)
	if st, _ := env.Client.HostState(ctx, "hv1", 0); len(st.Networks) != 1 {
		t.Fatalf("held address: hv1 should still serve the network until the release, state %+v", st.Networks)
	}
	if err := call(env, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: info.VIFs[0].FixedIPs[0].Address}, nil); err != nil {
		t.Fatal(err)
	}
	if subj, id := nextNotice(t, inbox); subj != "novanet.host.hv1.refresh_dhcp" || id != nets[0].ID {
		t.Errorf("notice %s network %d", subj, id)
	}
	if st, _ := env.Client.HostState(ctx, "hv1", 0); len(st.Networks) != 0 {
		t.Errorf("after the release hv1 still serves %+v", st.Networks)
	}
}

// The host-facing methods take the host from their subject
// (novanet.manager.host.<host>.<method>), so that NATS permissions decide
// who speaks for a host: a body naming another host is refused, an agent
// cannot lease or release another host's address, and the old subjects
// without a host are not served.
func TestHostMethodsTakeTheHostFromTheSubject(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, h := range []string{"hv1", "hv2"} {
		if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: h, Driver: "flatdhcp"}); err != nil {
			t.Fatal(err)
		}
	}
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Bridge: "br100"})
	var info rpc.NetworkInfo
	if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
		InstanceUUID: uuid.NewString(), ProjectID: "p1", Host: "hv1"}, &info); err != nil {
		t.Fatal(err)
	}
	addr := info.VIFs[0].FixedIPs[0].Address
	if st, err := env.Client.HostState(ctx, "hv1", 0); err != nil || len(st.Networks) != 1 || st.Networks[0].ID != nets[0].ID {
		t.Fatalf("hv1 state %+v %v", st, err)
	}

	// The body's host must be the subject's.
	err := env.Client.CallForHost(ctx, "hv2", rpc.MethodRegisterHost, rpc.RegisterHostRequest{Host: "hv1", Driver: "flat"}, nil)
	wantCode(t, "register hv1 on hv2's subject", err, rpc.CodeInvalidArgument)
	err = env.Client.CallForHost(ctx, "hv2", rpc.MethodGetHostState, rpc.HostStateRequest{Host: "hv1"}, nil)
	wantCode(t, "hv1's state on hv2's subject", err, rpc.CodeInvalidArgument)
	// Without a host in the body, the subject's applies.
	var st rpc.HostState
	if err := env.Client.CallForHost(ctx, "hv1", rpc.MethodGetHostState, struct{}{}, &st); err != nil || st.Host != "hv1" || len(st.Networks) != 1 {
		t.Errorf("state on hv1's subject: %+v %v", st, err)
	}
	hs, err := env.Client.ListHosts(ctx)
	if err != nil || len(hs) != 2 || hs[0].Driver != "flatdhcp" {
		t.Errorf("hosts after the refused registration: %+v %v", hs, err)
	}

	// hv2 may not lease or release hv1's address.
	for _, method := range []string{rpc.MethodLeaseFixedIP, rpc.MethodReleaseFixedIP} {
		err := env.Client.CallForHost(ctx, "hv2", method, rpc.AddressRequest{Address: addr}, nil)
		wantCode(t, "hv2 "+method+" of hv1's "+addr, err, rpc.CodeInvalidArgument)
		err = env.Client.CallForHost(ctx, "hv2", method, rpc.AddressRequest{Address: "10.9.9.9"}, nil)
		wantCode(t, "hv2 "+method+" of an unknown address", err, rpc.CodeNotFound)
	}
	if f, err := env.Client.FixedIP(ctx, addr); err != nil || f.Leased {
		t.Errorf("after hv2's refused lease: %+v %v", f, err)
	}
	f, err := env.Client.LeaseFixedIP(ctx, rpc.AddressRequest{Address: addr, Host: "hv1"})
	if err != nil || !f.Leased {
		t.Errorf("hv1's lease of its own address: %+v %v", f, err)
	}

	// The subjects without a host serve nothing any more.
	for _, method := range []string{rpc.MethodRegisterHost, rpc.MethodGetHostState} {
		err := call(env, method, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}, nil)
		wantCode(t, "plain "+method, err, rpc.CodeUnavailable)
	}
	if got := rpc.HostFromManagerSubject(rpc.HostManagerSubject("hv1", rpc.MethodLeaseFixedIP)); got != "hv1" {
		t.Errorf("host of the lease subject: %q", got)
	}
	for _, s := range []string{"novanet.manager.lease_fixed_ip", "novanet.manager.host.hv1", "novanet.manager.host.hv1.a.b", "novanet.host.hv1.x"} {
		if got := rpc.HostFromManagerSubject(s); got != "" {
			t.Errorf("host of %s: %q, want none", s, got)
		}
	}
}
