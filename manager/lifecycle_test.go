package manager_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// Stopping a network takes it out of every host's state and tells the
// hosts that have it (its own, and its instances' layer 2 hosts); its
// addresses stay allocated; starting it brings it back.
func TestStopStartNetwork(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, h := range []string{"hv1", "hv2"} {
		if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: h, Driver: "flatdhcp"}); err != nil {
			t.Fatal(err)
		}
	}
	in1, in2 := agentInbox(t, env, "hv1"), agentInbox(t, env, "hv2")
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Bridge: "br100"})
	a, b := uuid.NewString(), uuid.NewString()
	for _, x := range []struct{ inst, host string }{{a, "hv1"}, {b, "hv2"}} {
		if err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
			InstanceUUID: x.inst, ProjectID: "p1", Host: x.host}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Each allocation tells hv1 (the network's host) and the instance's
	// host (coalesced per host and network).
	wantNotice(t, in1, "hv1", rpc.HostMethodSetup)
	wantNotice(t, in2, "hv2", rpc.HostMethodSetup)
	networks := func(host string) int {
		t.Helper()
		st, err := env.Client.HostState(ctx, host, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(st.Networks)
	}
	if networks("hv1") != 1 || networks("hv2") != 1 {
		t.Fatalf("before stop: hv1 %d, hv2 %d networks", networks("hv1"), networks("hv2"))
	}
	n, err := env.Client.StopNetwork(ctx, "10.0.0.0/28")
	if err != nil || !n.Stopped || n.FixedIPs.InUse != 2 || n.Host != "hv1" {
		t.Fatalf("stop: %+v (%v)", n, err)
	}
	for _, in := range []struct {
		name string
		ch   <-chan *nats.Msg
	}{{"hv1", in1}, {"hv2", in2}} {
		wantNotice(t, in.ch, in.name, rpc.HostMethodTeardown)
	}
	if networks("hv1") != 0 || networks("hv2") != 0 {
		t.Errorf("stopped: hv1 %d, hv2 %d networks, want none", networks("hv1"), networks("hv2"))
	}
	if st, err := env.Client.HostState(ctx, "hv1", n.ID); err != nil || len(st.Networks) != 0 {
		t.Errorf("stopped network's own state: %+v (%v)", st, err)
	}
	info, err := env.Client.InstanceNWInfo(ctx, a)
	if err != nil || len(info.VIFs) != 1 || info.VIFs[0].FixedIPs[0].Address != "10.0.0.2" {
		t.Errorf("instance after stop: %+v (%v)", info, err)
	}
	// Again: no change, the hosts are told again.
	if n, err := env.Client.StopNetwork(ctx, "10.0.0.0/28"); err != nil || !n.Stopped {
		t.Errorf("stop again: %+v (%v)", n, err)
	}
	wantNotice(t, in1, "hv1", rpc.HostMethodTeardown)
	wantNotice(t, in2, "hv2", rpc.HostMethodTeardown)
	n, err = env.Client.StartNetwork(ctx, "10.0.0.0/28")
	if err != nil || n.Stopped {
		t.Fatalf("start: %+v (%v)", n, err)
	}
	for _, in := range []struct {
		name string
		ch   <-chan *nats.Msg
	}{{"hv1", in1}, {"hv2", in2}} {
		wantNotice(t, in.ch, in.name, rpc.HostMethodSetup)
	}
	if networks("hv1") != 1 || networks("hv2") != 1 {
		t.Errorf("started: hv1 %d, hv2 %d networks", networks("hv1"), networks("hv2"))
	}
	_, err = env.Client.StopNetwork(ctx, "nope")
	wantCode(t, "stop unknown", err, rpc.CodeNotFound)
	_, err = env.Client.StartNetwork(ctx, "")
	wantCode(t, "start without network", err, rpc.CodeInvalidArgument)
}

// wantNotice reads host's notices until one of method comes (earlier ones,
// of other methods, may still be on their way).
func wantNotice(t *testing.T, ch <-chan *nats.Msg, host, method string) {
	t.Helper()
	for {
		if subj, _ := nextNotice(t, ch); subj == rpc.HostSubject(host, method) {
			return
		}
	}
}
