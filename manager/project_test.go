package manager_test

import (
	"testing"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// TestInstanceKeepsProject: an instance is allocated for one project. A
// retried allocation for another is refused; removing its last interface
// and adding one back keeps its project (the interface records it, as
// floating IP association checks); after deallocation it may be allocated
// for any project.
func TestInstanceKeepsProject(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Label: "a"})
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.1.0.0/28", NumNetworks: 1, NetworkSize: 16, Label: "b", ProjectID: "other"})
	inst := uuid.NewString()
	info := allocate(t, env, inst, "p1")
	addr := info.VIFs[0].FixedIPs[0].Address

	retry := rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p2"}
	wantCode(t, "retry for another project", call(env, rpc.MethodAllocateForInstance, retry, nil), rpc.CodeConflict)

	if err := call(env, rpc.MethodRemoveFixedIPFromInstance, rpc.RemoveFixedIPRequest{InstanceUUID: inst, Address: addr}, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "allocation for another project after the last interface went",
		call(env, rpc.MethodAllocateForInstance, retry, nil), rpc.CodeConflict)
	// Added back, on a network of another project: the interface is still
	// the instance's project's.
	if err := call(env, rpc.MethodAddFixedIPToInstance, rpc.AddFixedIPRequest{InstanceUUID: inst, Network: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	var project string
	if err := env.Pool.QueryRow(ctx, "SELECT coalesce(project_id, '-') FROM virtual_interfaces WHERE instance_uuid = $1", inst).Scan(&project); err != nil {
		t.Fatal(err)
	}
	if project != "p1" {
		t.Errorf("interface added back has project %q, want p1", project)
	}

	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM instance_projects WHERE instance_uuid = $1", inst).Scan(&left); err != nil || left != 0 {
		t.Errorf("instance_projects rows after deallocation: %d (%v), want 0", left, err)
	}
	if _, err := env.Client.AllocateForInstance(ctx, retry); err != nil {
		t.Errorf("allocation for another project after deallocation: %v", err)
	}
	checkCounts(t, env)
}
