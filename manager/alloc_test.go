package manager_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/google/uuid"

	"novanet/internal/pgtest"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var ctx = context.Background()

func create(t *testing.T, env *testenv.Env, req rpc.CreateNetworksRequest) []rpc.Network {
	t.Helper()
	nets, err := env.Client.CreateNetworks(ctx, req)
	if err != nil {
		t.Fatalf("create %+v: %v", req, err)
	}
	return nets
}

func allocate(t *testing.T, env *testenv.Env, inst, project string) rpc.NetworkInfo {
	t.Helper()
	var info rpc.NetworkInfo
	err := env.Client.Call(ctx, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
		InstanceUUID: inst, ProjectID: project, Host: "compute-1"}, &info)
	if err != nil {
		t.Fatalf("allocate %s: %v", inst, err)
	}
	return info
}

func call(env *testenv.Env, method string, req, reply any) error {
	return env.Client.Call(ctx, method, req, reply)
}

func wantCode(t *testing.T, what string, err error, code rpc.Code) {
	t.Helper()
	var re *rpc.Error
	if !errors.As(err, &re) || re.Code != code {
		t.Errorf("%s: error %v, want code %s", what, err, code)
	}
}

func fixedState(t *testing.T, env *testenv.Env, addr string) string {
	t.Helper()
	var s string
	err := env.Pool.QueryRow(ctx, `SELECT coalesce(instance_uuid::text, '-') || ' allocated=' || allocated ||
		' leased=' || leased || ' reserved=' || reserved || ' vif=' || (virtual_interface_id IS NOT NULL)
		FROM fixed_ips WHERE address = $1`, addr).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAllocateLifecycle(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, DNS1: "10.9.0.1", Label: "web"})
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.1.0.0/28", NumNetworks: 1, NetworkSize: 16, Label: "db", ProjectID: "p1"})
	inst := uuid.NewString()

	info := allocate(t, env, inst, "p1")
	if len(info.VIFs) != 1 || len(info.VIFs[0].FixedIPs) != 1 {
		t.Fatalf("nw info %+v: want one interface on the project-less network", info)
	}
	vif := info.VIFs[0]
	ip := vif.FixedIPs[0]
	got := fmt.Sprintf("%s %s gw=%s mask=%s bc=%s dhcp=%s dns=%v br=%s", vif.Network.Label, ip.Address, ip.Gateway,
		ip.Netmask, ip.Broadcast, ip.DHCPServer, ip.DNS, vif.Network.Bridge)
	if want := "web 10.0.0.2 gw=10.0.0.1 mask=255.255.255.240 bc=10.0.0.15 dhcp=10.0.0.1 dns=[10.9.0.1] br=br100"; got != want {
		t.Errorf("vif = %s, want %s", got, want)
	}
	mac, err := net.ParseMAC(vif.MAC)
	if err != nil || mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
		t.Errorf("MAC %s is not a locally administered unicast address", vif.MAC)
	}

	// A retry returns the same interface, not a second one.
	again := allocate(t, env, inst, "p1")
	if fmt.Sprint(again) != fmt.Sprint(info) {
		t.Errorf("retried allocate = %+v, want %+v", again, info)
	}
	var got2 rpc.NetworkInfo
	if err := call(env, rpc.MethodGetInstanceNWInfo, rpc.InstanceRequest{InstanceUUID: inst}, &got2); err != nil || fmt.Sprint(got2) != fmt.Sprint(info) {
		t.Errorf("get_instance_nw_info = %+v, %v", got2, err)
	}

	// add and remove a fixed IP on the project's network.
	var added rpc.NetworkInfo
	if err := call(env, rpc.MethodAddFixedIPToInstance, rpc.AddFixedIPRequest{InstanceUUID: inst, Network: "db"}, &added); err != nil {
		t.Fatal(err)
	}
	if len(added.VIFs) != 2 || added.VIFs[1].FixedIPs[0].Address != "10.1.0.2" {
		t.Fatalf("after add: %+v", added)
	}
	err = call(env, rpc.MethodAddFixedIPToInstance, rpc.AddFixedIPRequest{InstanceUUID: inst, Network: "db"}, nil)
	wantCode(t, "second add on one network", err, rpc.CodeConflict)
	var removed rpc.NetworkInfo
	if err := call(env, rpc.MethodRemoveFixedIPFromInstance, rpc.RemoveFixedIPRequest{InstanceUUID: inst, Address: "10.1.0.2"}, &removed); err != nil {
		t.Fatal(err)
	}
	if len(removed.VIFs) != 1 || removed.VIFs[0].Network.Label != "web" {
		t.Errorf("after remove: %+v", removed)
	}
	err = call(env, rpc.MethodRemoveFixedIPFromInstance, rpc.RemoveFixedIPRequest{InstanceUUID: inst, Address: "10.1.0.2"}, nil)
	wantCode(t, "remove twice", err, rpc.CodeNotFound)

	// DHCP lease, then deallocate: the address stays held until release.
	var fip rpc.FixedIP
	if err := call(env, rpc.MethodLeaseFixedIP, rpc.AddressRequest{Address: "10.0.0.2", MAC: vif.MAC}, &fip); err != nil || !fip.Leased {
		t.Fatalf("lease: %+v %v", fip, err)
	}
	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := fixedState(t, env, "10.0.0.2"), inst+" allocated=false leased=true reserved=false vif=false"; got != want {
		t.Errorf("after deallocate: %s, want %s", got, want)
	}
	err = call(env, rpc.MethodGetInstanceNWInfo, rpc.InstanceRequest{InstanceUUID: inst}, nil)
	wantCode(t, "nw info after deallocate", err, rpc.CodeNotFound)
	// Deallocate is idempotent.
	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Errorf("second deallocate: %v", err)
	}
	// A held address is not handed out.
	other := allocate(t, env, uuid.NewString(), "p1")
	if a := other.VIFs[0].FixedIPs[0].Address; a != "10.0.0.3" {
		t.Errorf("next allocation got %s, want 10.0.0.3 (10.0.0.2 is held)", a)
	}
	if err := call(env, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: "10.0.0.2", MAC: vif.MAC}, &fip); err != nil {
		t.Fatal(err)
	}
	if got, want := fixedState(t, env, "10.0.0.2"), "- allocated=false leased=false reserved=false vif=false"; got != want {
		t.Errorf("after release: %s, want %s", got, want)
	}
	// Releasing an address still allocated only clears the lease.
	a3 := other.VIFs[0].FixedIPs[0].Address
	if err := call(env, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: a3}, nil); err != nil {
		t.Fatal(err)
	}
	if got := fixedState(t, env, a3); got != other.InstanceUUID+" allocated=true leased=false reserved=false vif=true" {
		t.Errorf("release of an allocated address: %s", got)
	}

	var list rpc.FixedIPsReply
	if err := call(env, rpc.MethodGetFixedIPsByInstance, rpc.InstanceRequest{InstanceUUID: other.InstanceUUID}, &list); err != nil ||
		len(list.FixedIPs) != 1 || list.FixedIPs[0].Address != a3 || list.FixedIPs[0].VIFAddress != other.VIFs[0].MAC {
		t.Errorf("fixed ips by instance: %+v %v", list, err)
	}
	if err := call(env, rpc.MethodGetFixedIPByAddress, rpc.AddressRequest{Address: a3}, &fip); err != nil || fip.InstanceUUID != other.InstanceUUID || fip.Host != "compute-1" {
		t.Errorf("fixed ip by address: %+v %v", fip, err)
	}
	wantCode(t, "unknown address", call(env, rpc.MethodGetFixedIPByAddress, rpc.AddressRequest{Address: "10.7.7.7"}, nil), rpc.CodeNotFound)
}

func TestSweepFreesStaleAddresses(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlat)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16})
	inst := uuid.NewString()
	addr := allocate(t, env, inst, "p").VIFs[0].FixedIPs[0].Address
	if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Fatal(err)
	}
	// Not yet stale: nothing freed.
	if n, err := env.Manager.SweepStale(ctx); err != nil || n != 0 {
		t.Fatalf("sweep of fresh addresses freed %d (%v)", n, err)
	}
	if _, err := env.Pool.Exec(ctx, "UPDATE fixed_ips SET updated_at = now() - interval '11 minutes' WHERE address = $1", addr); err != nil {
		t.Fatal(err)
	}
	if n, err := env.Manager.SweepStale(ctx); err != nil || n != 1 {
		t.Fatalf("sweep freed %d (%v), want 1", n, err)
	}
	if got := fixedState(t, env, addr); got != "- allocated=false leased=false reserved=false vif=false" {
		t.Errorf("after sweep: %s", got)
	}
}

func TestExhaustion(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/29", NumNetworks: 1, NetworkSize: 8, Label: "tiny"})
	var got []string
	for i := 0; i < 5; i++ {
		got = append(got, allocate(t, env, uuid.NewString(), "p").VIFs[0].FixedIPs[0].Address)
	}
	if fmt.Sprint(got) != "[10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6]" {
		t.Errorf("allocated %v", got)
	}
	inst := uuid.NewString()
	err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p"}, nil)
	wantCode(t, "allocate from a full network", err, rpc.CodeNoMoreAddresses)
	var vifs int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM virtual_interfaces WHERE instance_uuid = $1", inst).Scan(&vifs); err != nil || vifs != 0 {
		t.Errorf("failed allocate left %d interfaces (%v)", vifs, err)
	}
}

func TestVLANProjectAssociation(t *testing.T) {
	env := testenv.Start(t, manager.ModeVLAN)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/8", NumNetworks: 2, NetworkSize: 16})
	a := allocate(t, env, uuid.NewString(), "alpha")
	b := allocate(t, env, uuid.NewString(), "beta")
	a2 := allocate(t, env, uuid.NewString(), "alpha")
	if a.VIFs[0].Network.VLAN != 100 || a2.VIFs[0].Network.VLAN != 100 || b.VIFs[0].Network.VLAN != 101 {
		t.Errorf("VLANs: alpha %d and %d, beta %d; want 100, 100, 101", a.VIFs[0].Network.VLAN, a2.VIFs[0].Network.VLAN, b.VIFs[0].Network.VLAN)
	}
	if ip := a.VIFs[0].FixedIPs[0].Address; ip != "10.0.0.3" {
		t.Errorf("first VLAN address %s, want 10.0.0.3 (after the VPN address)", ip)
	}
	nets, err := env.Client.Networks(ctx, "beta")
	if err != nil || len(nets) != 1 || nets[0].VLAN != 101 {
		t.Errorf("beta's networks: %+v %v", nets, err)
	}
	err = call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "gamma"}, nil)
	wantCode(t, "third project", err, rpc.CodeNoMoreNetworks)
	// A project cannot ask for another project's network.
	err = call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "beta",
		RequestedNetworks: []rpc.RequestedNetwork{{Network: a.VIFs[0].Network.UUID}}}, nil)
	wantCode(t, "other project's network", err, rpc.CodeInvalidArgument)
}

func TestRequestedNetworksMACsAndReservations(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/24", NumNetworks: 2, NetworkSize: 16})
	inst := uuid.NewString()
	var info rpc.NetworkInfo
	err := call(env, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p",
		RequestedNetworks: []rpc.RequestedNetwork{{Network: "10.0.0.16/28", Address: "10.0.0.20"}},
		MACs:              []string{"02:AA:BB:CC:DD:EE"}}, &info)
	if err != nil || len(info.VIFs) != 1 || info.VIFs[0].MAC != "02:aa:bb:cc:dd:ee" || info.VIFs[0].FixedIPs[0].Address != "10.0.0.20" {
		t.Fatalf("requested: %+v %v", info, err)
	}
	for _, tc := range []struct {
		req  rpc.AllocateForInstanceRequest
		code rpc.Code
	}{
		{rpc.AllocateForInstanceRequest{InstanceUUID: "nope", ProjectID: "p"}, rpc.CodeInvalidArgument},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString()}, rpc.CodeInvalidArgument},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", MACs: []string{"01:00:00:00:00:01"}}, rpc.CodeInvalidArgument},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", MACs: []string{"02:aa:bb:cc:dd:ee", "02:00:00:00:00:09"}}, rpc.CodeConflict},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", RequestedNetworks: []rpc.RequestedNetwork{{Network: "nowhere"}}}, rpc.CodeNotFound},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", RequestedNetworks: []rpc.RequestedNetwork{{Network: "private_0", Address: "10.0.0.20"}}}, rpc.CodeInvalidArgument},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", RequestedNetworks: []rpc.RequestedNetwork{{Network: "private_1", Address: "10.0.0.20"}}}, rpc.CodeInUse},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", RequestedNetworks: []rpc.RequestedNetwork{{Network: "private_1", Address: "10.0.0.17"}}}, rpc.CodeConflict},
		{rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: "p", RequestedNetworks: []rpc.RequestedNetwork{{Network: "private_1"}, {Network: "private_1"}}}, rpc.CodeInvalidArgument},
	} {
		wantCode(t, fmt.Sprintf("%+v", tc.req), call(env, rpc.MethodAllocateForInstance, tc.req, nil), tc.code)
	}
	var n int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM virtual_interfaces").Scan(&n); err != nil || n != 1 {
		t.Errorf("failed allocations left interfaces: %d (%v)", n, err)
	}

	// Reservations.
	var fip rpc.FixedIP
	if err := call(env, rpc.MethodReserveFixedIP, rpc.AddressRequest{Address: "10.0.0.2"}, &fip); err != nil || !fip.Reserved {
		t.Fatalf("reserve: %+v %v", fip, err)
	}
	if err := call(env, rpc.MethodReserveFixedIP, rpc.AddressRequest{Address: "10.0.0.2"}, &fip); err != nil {
		t.Errorf("reserve twice: %v", err)
	}
	got := allocate(t, env, uuid.NewString(), "p")
	if a := got.VIFs[0].FixedIPs[0].Address; a != "10.0.0.3" {
		t.Errorf("allocation took %s; 10.0.0.2 is reserved", a)
	}
	wantCode(t, "reserve in use", call(env, rpc.MethodReserveFixedIP, rpc.AddressRequest{Address: "10.0.0.20"}, nil), rpc.CodeInUse)
	wantCode(t, "unreserve gateway", call(env, rpc.MethodUnreserveFixedIP, rpc.AddressRequest{Address: "10.0.0.1"}, nil), rpc.CodeConflict)
	wantCode(t, "reserve unknown", call(env, rpc.MethodReserveFixedIP, rpc.AddressRequest{Address: "10.9.9.9"}, nil), rpc.CodeNotFound)
	wantCode(t, "reserve garbage", call(env, rpc.MethodReserveFixedIP, rpc.AddressRequest{Address: "ten"}, nil), rpc.CodeInvalidArgument)
	if err := call(env, rpc.MethodUnreserveFixedIP, rpc.AddressRequest{Address: "10.0.0.2"}, &fip); err != nil || fip.Reserved {
		t.Errorf("unreserve: %+v %v", fip, err)
	}
	var list rpc.FixedIPsReply
	if err := call(env, rpc.MethodListFixedIPs, rpc.ListFixedIPsRequest{Network: "private_0"}, &list); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, f := range list.FixedIPs {
		addrs = append(addrs, f.Address)
	}
	if fmt.Sprint(addrs) != "[10.0.0.0 10.0.0.1 10.0.0.3 10.0.0.15]" {
		t.Errorf("list in use/reserved of private_0: %v", addrs)
	}
}

// TestConcurrentAllocations runs 64 callers against two replicas, each
// allocating, retrying, deallocating and releasing, and checks that no
// address is ever held by two instances and none is leaked.
func TestConcurrentAllocations(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	env.AddManager(t, "0.1.1")
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/22", NumNetworks: 1, NetworkSize: 1024})
	const callers, rounds = 64, 40
	var (
		mu     sync.Mutex
		holder = map[string]string{} // address -> instance
		kept   = map[string]string{}
		errs   = make(chan error, callers)
		wg     sync.WaitGroup
		allocs int
	)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 1))
			for i := 0; i < rounds; i++ {
				inst := uuid.NewString()
				var info rpc.NetworkInfo
				req := rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p", Host: "h"}
				if err := call(env, rpc.MethodAllocateForInstance, req, &info); err != nil {
					errs <- fmt.Errorf("allocate: %w", err)
					return
				}
				addr := info.VIFs[0].FixedIPs[0].Address
				mu.Lock()
				allocs++
				if h, ok := holder[addr]; ok {
					mu.Unlock()
					errs <- fmt.Errorf("%s handed to %s while held by %s", addr, inst, h)
					return
				}
				holder[addr] = inst
				mu.Unlock()
				if r.IntN(2) == 0 { // a retry must change nothing
					var again rpc.NetworkInfo
					if err := call(env, rpc.MethodAllocateForInstance, req, &again); err != nil || fmt.Sprint(again) != fmt.Sprint(info) {
						errs <- fmt.Errorf("retry of %s: %v %v", inst, again, err)
						return
					}
				}
				if i == rounds-1 && c%4 == 0 { // some instances stay
					mu.Lock()
					kept[addr] = inst
					mu.Unlock()
					continue
				}
				if err := call(env, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
					errs <- fmt.Errorf("deallocate: %w", err)
					return
				}
				mu.Lock()
				delete(holder, addr)
				mu.Unlock()
				if err := call(env, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: addr}, nil); err != nil {
					errs <- fmt.Errorf("release: %w", err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if allocs != callers*rounds {
		t.Fatalf("%d allocations, want %d", allocs, callers*rounds)
	}
	// The database holds exactly the kept instances' addresses.
	rows, err := env.Pool.Query(ctx, `SELECT host(f.address), f.instance_uuid::text FROM fixed_ips f
		JOIN virtual_interfaces v ON v.id = f.virtual_interface_id AND v.instance_uuid = f.instance_uuid
		WHERE f.allocated`)
	if err != nil {
		t.Fatal(err)
	}
	inDB := map[string]string{}
	for rows.Next() {
		var a, i string
		if err := rows.Scan(&a, &i); err != nil {
			t.Fatal(err)
		}
		inDB[a] = i
	}
	if fmt.Sprint(inDB) != fmt.Sprint(kept) {
		t.Errorf("allocated in the database: %d, kept by the test: %d", len(inDB), len(kept))
	}
	var leaked, vifs, dupMACs int
	if err := env.Pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM fixed_ips WHERE NOT allocated AND (instance_uuid IS NOT NULL OR leased OR virtual_interface_id IS NOT NULL)),
		(SELECT count(*) FROM virtual_interfaces),
		(SELECT count(*) - count(DISTINCT address) FROM virtual_interfaces)`).Scan(&leaked, &vifs, &dupMACs); err != nil {
		t.Fatal(err)
	}
	if leaked != 0 || vifs != len(kept) || dupMACs != 0 {
		t.Errorf("leaked addresses %d, interfaces %d (want %d), duplicate MACs %d", leaked, vifs, len(kept), dupMACs)
	}
	checkCounts(t, env)
}
