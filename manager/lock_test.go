package manager_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// TestAllocationLeavesNetworkRowUnlocked: while another transaction holds
// the network's row FOR UPDATE (which conflicts with every row lock,
// KEY SHARE included), allocations on it complete, both when no host can
// be chosen for it and when it has its host: an allocation locks the
// network row only to give the network a host.
func TestAllocationLeavesNetworkRowUnlocked(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/24", NumNetworks: 1, NetworkSize: 256})
	holdRow := func() func() {
		tx, err := env.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1 FROM networks WHERE id = $1 FOR UPDATE", nets[0].ID); err != nil {
			t.Fatal(err)
		}
		return func() { _ = tx.Rollback(ctx) }
	}
	allocate := func(what string) {
		t.Helper()
		// The bound only keeps a blocked allocation from hanging the
		// test: an unblocked one takes milliseconds.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := env.Manager.AllocateForInstance(cctx, rpc.AllocateForInstanceRequest{
			InstanceUUID: uuid.NewString(), ProjectID: "p"}); err != nil {
			t.Errorf("%s: allocation while the network row is locked: %v", what, err)
		}
	}

	// No agent registered: no host can be chosen.
	release := holdRow()
	allocate("no host to choose")
	release()

	// The network gets a host (this allocation may lock the row), then
	// keeps it.
	if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatal(err)
	}
	allocate("host given")
	if n, err := env.Client.Network(ctx, nets[0].UUID); err != nil || n.Host != "hv1" {
		t.Fatalf("network after an allocation with hv1 alive: %+v %v", n, err)
	}
	release = holdRow()
	allocate("network with its host")
	release()
}
