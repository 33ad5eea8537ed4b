package manager_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

func createFloating(t *testing.T, env *testenv.Env, pool, cidr string) rpc.FloatingRange {
	t.Helper()
	r, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{Pool: pool, CIDR: cidr})
	if err != nil {
		t.Fatalf("create floating %s %s: %v", pool, cidr, err)
	}
	return r
}

func allocFloating(t *testing.T, env *testenv.Env, project, pool string) string {
	t.Helper()
	fl, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: project, Pool: pool})
	if err != nil {
		t.Fatalf("allocate floating for %s: %v", project, err)
	}
	return fl.Address
}

func wantMessage(t *testing.T, what string, err error, code rpc.Code, msg string) {
	t.Helper()
	wantCode(t, what, err, code)
	if err != nil && !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: error %q does not say %q", what, err, msg)
	}
}

func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	re, ok := err.(*rpc.Error)
	if !ok || re.Code != rpc.CodeInvalidArgument || re.Field != field {
		t.Errorf("%s: error %v, want invalid_argument on field %s", what, err, field)
	}
}

func floatingCount(t *testing.T, env *testenv.Env, where string, args ...any) int {
	t.Helper()
	var n int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM floating_ips WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFloatingRanges(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Label: "web"})

	r, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{CIDR: "203.0.113.0/24", Interface: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	// The network and broadcast addresses are left out, as nova-manage did.
	if r.Pool != "nova" || r.Total != 254 || r.Interface != "eth0" || r.CIDR != "203.0.113.0/24" {
		t.Errorf("created %+v: want pool nova, 254 addresses on eth0", r)
	}
	if n := floatingCount(t, env, "address IN ('203.0.113.0', '203.0.113.255')"); n != 0 {
		t.Errorf("network or broadcast address in the pool (%d)", n)
	}
	// A /32 and a /31 are used whole.
	if r := createFloating(t, env, "single", "198.51.100.7/32"); r.Total != 1 {
		t.Errorf("/32: %+v", r)
	}
	if r := createFloating(t, env, "single", "198.51.100.8/31"); r.Total != 2 {
		t.Errorf("/31: %+v", r)
	}
	// A /16 is one statement.
	if r := createFloating(t, env, "big", "100.64.0.0/16"); r.Total != 65534 {
		t.Errorf("/16: %+v", r)
	}

	before := floatingCount(t, env, "true")
	for _, tc := range []struct {
		req   rpc.CreateFloatingIPsRequest
		code  rpc.Code
		field string
		msg   string
	}{
		{rpc.CreateFloatingIPsRequest{CIDR: "10.0.0.8/29"}, rpc.CodeConflict, "", "10.0.0.8/29 overlaps fixed network web (10.0.0.0/28"},
		{rpc.CreateFloatingIPsRequest{CIDR: "10.0.0.0/14", Pool: "x"}, rpc.CodeConflict, "", "overlaps fixed network web"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.113.128/25", Pool: "other"}, rpc.CodeConflict, "", "203.0.113.128/25 overlaps floating range 203.0.113.0/24 of pool nova"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.0.0/16"}, rpc.CodeConflict, "", "overlaps floating range 203.0.113.0/24"},
		{rpc.CreateFloatingIPsRequest{CIDR: ""}, rpc.CodeInvalidArgument, "cidr", "cidr is required"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.114.1/24"}, rpc.CodeInvalidArgument, "cidr", "host bits set (the network is 203.0.114.0/24)"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.114.0/33"}, rpc.CodeInvalidArgument, "cidr", "not a CIDR"},
		{rpc.CreateFloatingIPsRequest{CIDR: "fd00::/64"}, rpc.CodeInvalidArgument, "cidr", "not an IPv4 CIDR"},
		{rpc.CreateFloatingIPsRequest{CIDR: "44.0.0.0/13"}, rpc.CodeInvalidArgument, "cidr", "at most 262144"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.114.0/24", Interface: "eth/0"}, rpc.CodeInvalidArgument, "interface", `"eth/0"`},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.114.0/24", Interface: "a-very-long-interface"}, rpc.CodeInvalidArgument, "interface", "longer than 15"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.114.0/24", Pool: " x"}, rpc.CodeInvalidArgument, "pool", "leading or trailing space"},
		{rpc.CreateFloatingIPsRequest{CIDR: "203.0.114.0/24", Pool: "a\x01"}, rpc.CodeInvalidArgument, "pool", "control"},
	} {
		_, err := env.Client.CreateFloatingIPs(ctx, tc.req)
		what := fmt.Sprintf("create %+v", tc.req)
		wantMessage(t, what, err, tc.code, tc.msg)
		if tc.field != "" {
			wantField(t, what, err, tc.field)
		}
	}
	if after := floatingCount(t, env, "true"); after != before {
		t.Errorf("refused creates changed the floating IPs: %d -> %d", before, after)
	}
	// And a fixed network may not overlap a range.
	_, err = env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "203.0.113.0/28", NumNetworks: 1, NetworkSize: 16})
	wantMessage(t, "network over a floating range", err, rpc.CodeConflict, "overlaps floating range 203.0.113.0/24 of pool nova")

	pools, err := env.Client.FloatingPools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(pools); got != "[{big 65534 65534 0 1} {nova 254 254 0 1} {single 3 3 0 2}]" {
		t.Errorf("pools %s", got)
	}

	// Delete is refused while an address is allocated, and names it.
	a := allocFloating(t, env, "p1", "")
	if a != "203.0.113.1" {
		t.Errorf("first allocation %s, want 203.0.113.1", a)
	}
	_, err = env.Client.DeleteFloatingIPs(ctx, "203.0.113.0/24")
	wantMessage(t, "delete in use", err, rpc.CodeInUse,
		"floating range 203.0.113.0/24 of pool nova has 1 addresses allocated: 203.0.113.1 (project p1); deallocate them first")
	if _, err := env.Client.DeallocateFloatingIP(ctx, rpc.FloatingIPRequest{Address: a}); err != nil {
		t.Fatal(err)
	}
	d, err := env.Client.DeleteFloatingIPs(ctx, "203.0.113.0/24")
	if err != nil || d.Total != 254 || d.Pool != "nova" {
		t.Fatalf("delete: %+v %v", d, err)
	}
	if n := floatingCount(t, env, "pool = 'nova'"); n != 0 {
		t.Errorf("%d addresses left after delete", n)
	}
	_, err = env.Client.DeleteFloatingIPs(ctx, "203.0.113.0/24")
	wantCode(t, "delete twice", err, rpc.CodeNotFound)
	_, err = env.Client.DeleteFloatingIPs(ctx, "203.0.113.1/24")
	wantField(t, "delete with host bits", err, "cidr")

	// Listing pages in address order.
	page, err := env.Client.ListFloatingIPs(ctx, rpc.ListFloatingIPsRequest{Pool: "big", Limit: 2, After: "100.64.0.1"})
	if err != nil || len(page.FloatingIPs) != 2 || !page.More || page.FloatingIPs[0].Address != "100.64.0.2" {
		t.Errorf("page: %+v %v", page, err)
	}
	all, err := env.Client.AllFloatingIPs(ctx, rpc.ListFloatingIPsRequest{Pool: "single"})
	if err != nil || len(all) != 3 || all[2].Address != "198.51.100.9" {
		t.Errorf("all of pool single: %+v %v", all, err)
	}
	_, err = env.Client.ListFloatingIPs(ctx, rpc.ListFloatingIPsRequest{Limit: 5000})
	wantField(t, "list limit", err, "limit")
}

func TestFloatingQuota(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createFloating(t, env, "nova", "203.0.113.0/24")
	q, err := env.Client.QuotaShow(ctx, "p1")
	if err != nil || len(q.Quotas) != 1 || q.Quotas[0] != (rpc.Quota{Resource: "floating_ips", Limit: 10, Default: true}) {
		t.Fatalf("default quota %+v %v", q, err)
	}
	for i := 0; i < 10; i++ {
		allocFloating(t, env, "p1", "")
	}
	_, err = env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
	wantMessage(t, "11th", err, rpc.CodeQuotaExceeded, "project p1 has 10 floating IPs and its quota is 10")
	// Another project is not affected.
	allocFloating(t, env, "p2", "")

	q, err = env.Client.QuotaSet(ctx, "p1", "floating_ips", 12)
	if err != nil || q.Quotas[0] != (rpc.Quota{Resource: "floating_ips", Limit: 12, InUse: 10}) {
		t.Fatalf("quota set: %+v %v", q, err)
	}
	allocFloating(t, env, "p1", "")
	allocFloating(t, env, "p1", "")
	_, err = env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
	wantCode(t, "13th", err, rpc.CodeQuotaExceeded)
	// Only the manager auto-assigns: a caller cannot skip the quota so.
	_, err = env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1", AutoAssigned: true})
	wantField(t, "auto_assigned from a caller", err, "auto_assigned")
	wantMessage(t, "auto_assigned from a caller", err, rpc.CodeInvalidArgument, "auto_assigned is set only by the manager")
	if _, err := env.Client.QuotaSet(ctx, "p1", "floating_ips", -1); err != nil {
		t.Fatal(err)
	}
	allocFloating(t, env, "p1", "")
	q, _ = env.Client.QuotaShow(ctx, "p1")
	if q.Quotas[0] != (rpc.Quota{Resource: "floating_ips", Limit: -1, InUse: 13}) {
		t.Errorf("unlimited: %+v", q)
	}
	// Zero forbids.
	if _, err := env.Client.QuotaSet(ctx, "p3", "floating_ips", 0); err != nil {
		t.Fatal(err)
	}
	_, err = env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p3"})
	wantMessage(t, "quota 0", err, rpc.CodeQuotaExceeded, "its quota is 0")

	_, err = env.Client.QuotaSet(ctx, "p1", "networks", 3)
	wantField(t, "quota of networks", err, "resource")
	_, err = env.Client.QuotaSet(ctx, "p1", "floating_ips", -2)
	wantField(t, "quota -2", err, "limit")
	err = env.Client.Call(ctx, rpc.MethodQuotaSet, map[string]any{"project_id": "p1", "resource": "floating_ips"}, nil)
	wantField(t, "quota without limit", err, "limit")
	_, err = env.Client.QuotaShow(ctx, "")
	wantField(t, "quota show without project", err, "project_id")
}

func TestFloatingQuotaConcurrent(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	env.AddManager(t, "0.1.1") // two replicas
	createFloating(t, env, "nova", "203.0.113.0/24")
	if _, err := env.Client.QuotaSet(ctx, "p1", "floating_ips", 5); err != nil {
		t.Fatal(err)
	}
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		ok, refuse int
		other      []error
	)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
			mu.Lock()
			defer mu.Unlock()
			switch re, _ := err.(*rpc.Error); {
			case err == nil:
				ok++
			case re != nil && re.Code == rpc.CodeQuotaExceeded:
				refuse++
			default:
				other = append(other, err)
			}
		}()
	}
	wg.Wait()
	if ok != 5 || refuse != 27 || len(other) > 0 {
		t.Errorf("32 concurrent allocations with quota 5: %d allocated, %d refused, other errors %v", ok, refuse, other)
	}
	if n := floatingCount(t, env, "project_id = 'p1'"); n != 5 {
		t.Errorf("p1 holds %d floating IPs, want 5", n)
	}
}

func TestFloatingPoolExhausted(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createFloating(t, env, "tiny", "203.0.113.0/30") // .1 and .2
	got := []string{allocFloating(t, env, "p1", "tiny"), allocFloating(t, env, "p2", "tiny")}
	if fmt.Sprint(got) != "[203.0.113.1 203.0.113.2]" {
		t.Errorf("allocated %v", got)
	}
	_, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1", Pool: "tiny"})
	wantMessage(t, "exhausted", err, rpc.CodeNoMoreFloatingIPs, "floating pool tiny has no free address")
	_, err = env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
	wantMessage(t, "default pool absent", err, rpc.CodeNotFound, `floating pool "nova" not found`)
	// A freed address is handed out again.
	if _, err := env.Client.DeallocateFloatingIP(ctx, rpc.FloatingIPRequest{Address: "203.0.113.1", ProjectID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if a := allocFloating(t, env, "p3", "tiny"); a != "203.0.113.1" {
		t.Errorf("after deallocate: %s", a)
	}
	pools, _ := env.Client.FloatingPools(ctx)
	if fmt.Sprint(pools) != "[{tiny 2 0 0 1}]" {
		t.Errorf("pools %v", pools)
	}
}

// hostFloating returns the floating IPs in a host's desired state as
// "floating>fixed".
func hostFloating(t *testing.T, env *testenv.Env, host string) string {
	t.Helper()
	st, err := env.Client.HostState(ctx, host, 0)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, f := range st.FloatingIPs {
		s = append(s, f.Address+">"+f.FixedAddress+"@"+f.Interface)
	}
	return strings.Join(s, " ")
}

// expectRefresh waits for a refresh_dhcp notice for network on inbox,
// skipping other notices; nextNotice fails the test if none comes.
func expectRefresh(t *testing.T, inbox <-chan *nats.Msg, network int64) {
	t.Helper()
	for {
		subj, id := nextNotice(t, inbox)
		if strings.HasSuffix(subj, "."+rpc.HostMethodRefresh) && id == network {
			return
		}
	}
}

func TestFloatingAssociate(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	for _, h := range []string{"hv1", "hv2"} {
		if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: h, Driver: "flatdhcp"}); err != nil {
			t.Fatal(err)
		}
	}
	in1, in2 := agentInbox(t, env, "hv1"), agentInbox(t, env, "hv2")
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, MultiHost: true})
	netID := nets[0].ID
	if _, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{CIDR: "203.0.113.0/29", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()
	fixed := map[string]string{}
	for _, x := range []struct{ inst, project, host string }{{a, "p1", "hv1"}, {b, "p1", "hv2"}, {c, "p2", "hv2"}} {
		info, err := env.Client.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: x.inst, ProjectID: x.project, Host: x.host})
		if err != nil {
			t.Fatal(err)
		}
		fixed[x.inst] = info.VIFs[0].FixedIPs[0].Address
	}
	nextNotice(t, in1)
	nextNotice(t, in2)
	nextNotice(t, in2)
	fa, fb, fc := fixed[a], fixed[b], fixed[c]
	fl := allocFloating(t, env, "p1", "")

	assoc := func(floating, fixedAddr string, reassociate bool) (rpc.FloatingIP, error) {
		return env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: floating,
			FixedAddress: fixedAddr, Reassociate: reassociate})
	}
	got, err := assoc(fl, fa, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.FixedAddress != fa || got.InstanceUUID != a || got.Host != "hv1" || got.NetworkID != netID || got.ProjectID != "p1" {
		t.Errorf("associated %+v", got)
	}
	expectRefresh(t, in1, netID)
	if s := hostFloating(t, env, "hv1"); s != fl+">"+fa+"@eth0" {
		t.Errorf("hv1 floating IPs %q", s)
	}
	if s := hostFloating(t, env, "hv2"); s != "" {
		t.Errorf("hv2 floating IPs %q", s)
	}
	info, _ := env.Client.InstanceNWInfo(ctx, a)
	if fmt.Sprint(info.VIFs[0].FixedIPs[0].FloatingIPs) != "["+fl+"]" {
		t.Errorf("nw info floating IPs %v", info.VIFs[0].FixedIPs[0].FloatingIPs)
	}
	if ips, err := env.Client.FloatingIPsByFixedAddress(ctx, fa); err != nil || len(ips) != 1 || ips[0].Address != fl {
		t.Errorf("by fixed address: %+v %v", ips, err)
	}
	if ips, err := env.Client.FloatingIPsByProject(ctx, "p1"); err != nil || len(ips) != 1 || ips[0].FixedAddress != fa {
		t.Errorf("by project: %+v %v", ips, err)
	}
	// The same association again is not an error and changes nothing.
	if _, err := assoc(fl, fa, false); err != nil {
		t.Errorf("associate again: %v", err)
	}

	// Moving needs reassociate; then the old host loses it and the new one
	// gains it, and both hear of it.
	_, err = assoc(fl, fb, false)
	wantMessage(t, "move without reassociate", err, rpc.CodeConflict, "already associated with fixed IP "+fa)
	if _, err := assoc(fl, fb, true); err != nil {
		t.Fatal(err)
	}
	expectRefresh(t, in1, netID)
	expectRefresh(t, in2, netID)
	if s1, s2 := hostFloating(t, env, "hv1"), hostFloating(t, env, "hv2"); s1 != "" || s2 != fl+">"+fb+"@eth0" {
		t.Errorf("after move: hv1 %q, hv2 %q", s1, s2)
	}

	// Refusals.
	_, err = assoc(fl, fc, true)
	wantMessage(t, "other project's instance", err, rpc.CodeConflict, "belongs to project p1, but fixed address "+fc+" to instance "+c+" of project p2")
	_, err = assoc(fl, "10.0.0.9", false)
	wantMessage(t, "free fixed address", err, rpc.CodeConflict, "fixed address 10.0.0.9 is not allocated to an instance")
	_, err = assoc(fl, "10.9.9.9", false)
	wantCode(t, "unknown fixed address", err, rpc.CodeNotFound)
	_, err = assoc("203.0.113.99", fa, false)
	wantCode(t, "unknown floating address", err, rpc.CodeNotFound)
	_, err = assoc("203.0.113.6", fa, false)
	wantMessage(t, "unallocated floating", err, rpc.CodeConflict, "not allocated to a project")
	_, err = assoc("nope", fa, false)
	wantField(t, "bad floating address", err, "floating_address")
	_, err = assoc(fl, "", false)
	wantField(t, "no fixed address", err, "fixed_address")

	// Deallocating an associated address is refused; disassociate first.
	_, err = env.Client.DeallocateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl})
	wantMessage(t, "deallocate associated", err, rpc.CodeConflict, "is associated with fixed IP "+fb+" (instance "+b+"); disassociate it first")
	_, err = env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl, ProjectID: "p2"})
	wantMessage(t, "disassociate as another project", err, rpc.CodeConflict, "allocated to project p1, not p2")
	d, err := env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl})
	if err != nil || d.FixedAddress != "" || d.Host != "" || d.ProjectID != "p1" {
		t.Fatalf("disassociate: %+v %v", d, err)
	}
	expectRefresh(t, in2, netID)
	if s := hostFloating(t, env, "hv2"); s != "" {
		t.Errorf("hv2 after disassociate %q", s)
	}
	if _, err := env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl}); err != nil {
		t.Errorf("disassociate twice: %v", err)
	}
	_, err = env.Client.DeallocateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl, ProjectID: "p2"})
	wantCode(t, "deallocate as another project", err, rpc.CodeConflict)
	for i := 0; i < 2; i++ { // the second is a harmless retry
		d, err := env.Client.DeallocateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl, ProjectID: "p1"})
		if err != nil || d.ProjectID != "" {
			t.Errorf("deallocate #%d: %+v %v", i+1, d, err)
		}
	}
	if got, err := env.Client.FloatingIP(ctx, fl); err != nil || got.ProjectID != "" || got.Pool != "nova" {
		t.Errorf("get by address: %+v %v", got, err)
	}
}

func TestFloatingAssociateRace(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	env.AddManager(t, "0.1.1")
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16})
	createFloating(t, env, "nova", "203.0.113.0/29")
	var fixed []string
	for i := 0; i < 2; i++ {
		info := allocate(t, env, uuid.NewString(), "p1")
		fixed = append(fixed, info.VIFs[0].FixedIPs[0].Address)
	}
	fl := allocFloating(t, env, "p1", "")
	for round := 0; round < 10; round++ {
		if _, err := env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl}); err != nil {
			t.Fatal(err)
		}
		// Two different fixed IPs: exactly one wins, the other gets conflict.
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: fl, FixedAddress: fixed[i]})
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: both associations succeeded", round)
				}
				winner = i
			} else {
				wantCode(t, fmt.Sprintf("round %d loser", round), err, rpc.CodeConflict)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no association succeeded: %v", round, errs)
		}
		if got, _ := env.Client.FloatingIP(ctx, fl); got.FixedAddress != fixed[winner] {
			t.Fatalf("round %d: associated with %s, winner was %s", round, got.FixedAddress, fixed[winner])
		}
		// The same fixed IP twice at once: both succeed.
		if _, err := env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: fl}); err != nil {
			t.Fatal(err)
		}
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: fl, FixedAddress: fixed[0]})
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: same association twice: %v", round, errs)
		}
	}
}

func TestDeallocateInstanceWithFloating(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatal(err)
	}
	inbox := agentInbox(t, env, "hv1")
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16, Label: "web"})
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.1.0.0/28", NumNetworks: 1, NetworkSize: 16, Label: "db", ProjectID: "p1"})
	createFloating(t, env, "nova", "203.0.113.0/29")
	inst := uuid.NewString()
	info := allocate(t, env, inst, "p1") // on web, served by hv1
	nextNotice(t, inbox)
	addr := info.VIFs[0].FixedIPs[0].Address
	f1, f2 := allocFloating(t, env, "p1", ""), allocFloating(t, env, "p1", "")
	for _, f := range []string{f1, f2} {
		if _, err := env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: f, FixedAddress: addr}); err != nil {
			t.Fatal(err)
		}
		expectRefresh(t, inbox, nets[0].ID)
	}
	// Removing a fixed IP disassociates its floating IPs.
	added, err := env.Client.AddFixedIPToInstance(ctx, rpc.AddFixedIPRequest{InstanceUUID: inst, Network: "db"})
	if err != nil {
		t.Fatal(err)
	}
	dbAddr := added.VIFs[1].FixedIPs[0].Address
	f3 := allocFloating(t, env, "p1", "")
	if _, err := env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: f3, FixedAddress: dbAddr}); err != nil {
		t.Fatalf("associate with the added fixed IP: %v", err)
	}
	if _, err := env.Client.RemoveFixedIPFromInstance(ctx, inst, dbAddr); err != nil {
		t.Fatalf("remove fixed IP with a floating IP: %v", err)
	}
	if got, _ := env.Client.FloatingIP(ctx, f3); got.FixedAddress != "" || got.ProjectID != "p1" {
		t.Errorf("after remove_fixed_ip: %+v", got)
	}

	// Deallocating the instance does not trip over the floating IPs'
	// references: they are disassociated and stay the project's.
	if err := env.Client.DeallocateForInstance(ctx, inst); err != nil {
		t.Fatalf("deallocate instance with floating IPs: %v", err)
	}
	expectRefresh(t, inbox, nets[0].ID)
	for _, f := range []string{f1, f2} {
		got, err := env.Client.FloatingIP(ctx, f)
		if err != nil || got.FixedAddress != "" || got.Host != "" || got.ProjectID != "p1" {
			t.Errorf("%s after deallocate: %+v %v", f, got, err)
		}
	}
	if s := hostFloating(t, env, "hv1"); s != "" {
		t.Errorf("hv1 still NATs %q", s)
	}
	// The held fixed IP cannot be associated, and is freed and deleted as
	// before.
	_, err = env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: f1, FixedAddress: addr})
	wantCode(t, "associate with a held address", err, rpc.CodeConflict)
	if _, err := env.Client.ReleaseFixedIP(ctx, rpc.AddressRequest{Address: addr}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.DeleteNetwork(ctx, "web"); err != nil {
		t.Errorf("delete network after deallocation: %v", err)
	}
}

func TestAutoAssignFloating(t *testing.T) {
	env := testenv.StartConfig(t, manager.Config{Mode: manager.ModeFlatDHCP, AutoAssignFloatingIP: true,
		DefaultFloatingPool: "public"})
	if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatal(err)
	}
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1, NetworkSize: 16})
	createFloating(t, env, "public", "203.0.113.0/30") // two addresses
	if _, err := env.Client.QuotaSet(ctx, "p1", "floating_ips", 0); err != nil {
		t.Fatal(err)
	}
	inst := uuid.NewString()
	info, err := env.Client.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p1", Host: "hv1"})
	if err != nil {
		t.Fatal(err)
	}
	ip := info.VIFs[0].FixedIPs[0]
	if fmt.Sprint(ip.FloatingIPs) != "[203.0.113.1]" {
		t.Fatalf("floating IPs of the new instance: %v", ip.FloatingIPs)
	}
	got, _ := env.Client.FloatingIP(ctx, "203.0.113.1")
	if !got.AutoAssigned || got.ProjectID != "p1" || got.FixedAddress != ip.Address || got.Host != "hv1" {
		t.Errorf("auto-assigned %+v", got)
	}
	if s := hostFloating(t, env, "hv1"); s != "203.0.113.1>"+ip.Address+"@" {
		t.Errorf("hv1 floating IPs %q", s)
	}
	// A retry does not take a second one.
	if again, err := env.Client.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p1", Host: "hv1"}); err != nil ||
		fmt.Sprint(again) != fmt.Sprint(info) {
		t.Errorf("retry: %+v %v", again, err)
	}
	// Auto-assigned addresses are kept from ordinary changes.
	_, err = env.Client.DisassociateFloatingIP(ctx, rpc.FloatingIPRequest{Address: "203.0.113.1"})
	wantMessage(t, "disassociate auto-assigned", err, rpc.CodeConflict, "auto-assigned to instance "+inst)

	// A second instance takes the last address; a third finds none and
	// gets nothing at all.
	allocate(t, env, uuid.NewString(), "p1")
	third := uuid.NewString()
	_, err = env.Client.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: third, ProjectID: "p1"})
	wantCode(t, "pool exhausted", err, rpc.CodeNoMoreFloatingIPs)
	var vifs int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM virtual_interfaces WHERE instance_uuid = $1", third).Scan(&vifs); err != nil || vifs != 0 {
		t.Errorf("failed allocation left %d interfaces (%v)", vifs, err)
	}

	// Deallocation returns auto-assigned addresses to the pool.
	if err := env.Client.DeallocateForInstance(ctx, inst); err != nil {
		t.Fatal(err)
	}
	got, _ = env.Client.FloatingIP(ctx, "203.0.113.1")
	if got.ProjectID != "" || got.AutoAssigned || got.FixedAddress != "" {
		t.Errorf("after deallocate: %+v", got)
	}
	if _, err := env.Client.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: third, ProjectID: "p1"}); err != nil {
		t.Errorf("allocation after the address came back: %v", err)
	}
}
