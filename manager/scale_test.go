package manager_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// TestCreateManyNetworks creates every VLAN's network at once (4094 × 64
// addresses): the create replies success, and get_all_networks after it
// lists them with correct counts from network_counts, without reading
// fixed_ips (so it stays fast however many addresses there are).
func TestCreateManyNetworks(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 262,016 addresses")
	}
	env := testenv.Start(t, manager.ModeVLAN)
	start := time.Now()
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/14", NumNetworks: 4094, NetworkSize: 64, VLANStart: 1})
	t.Logf("create_networks 4094 × 64: %v", time.Since(start))
	if len(nets) != 4094 {
		t.Fatalf("create replied %d networks, want 4094", len(nets))
	}
	// One allocation, so that the counts have something in use.
	inst := uuid.NewString()
	info := allocate(t, env, inst, "p")
	start = time.Now()
	all, err := env.Client.Networks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("get_all_networks of 4094 networks: %v", time.Since(start))
	if len(all) != 4094 {
		t.Fatalf("get_all_networks: %d networks, want 4094", len(all))
	}
	var inUse int
	for _, n := range all {
		c := n.FixedIPs
		// The network, gateway, broadcast and VPN addresses are reserved.
		if c.Total != 64 || c.Reserved < 3 || c.Free != c.Total-c.Reserved-c.InUse {
			t.Fatalf("network %s counts %+v", n.CIDR, c)
		}
		inUse += c.InUse
		if n.ID == info.VIFs[0].Network.ID && c.InUse != 1 {
			t.Errorf("network %s of the allocation: in use %d, want 1", n.CIDR, c.InUse)
		}
	}
	if inUse != 1 {
		t.Errorf("%d addresses in use in all, want 1", inUse)
	}
	checkCounts(t, env)
	// The listing's plan does not read fixed_ips at all.
	plan := explain(t, env.Pool, "EXPLAIN "+manager.ListNetworksSQL("WHERE ($1 = '' OR n.project_id = $1)"), "")
	if strings.Contains(plan, "fixed_ips") {
		t.Errorf("get_all_networks reads fixed_ips:\n%s", plan)
	}
}

// checkCounts fails the test if network_counts differs from what fixed_ips
// holds, for any network.
func checkCounts(t *testing.T, env *testenv.Env) {
	t.Helper()
	var wrong int
	if err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT network_id, count(*) AS total, count(*) FILTER (WHERE reserved) AS reserved,
			count(*) FILTER (WHERE NOT reserved AND (instance_uuid IS NOT NULL OR allocated OR leased)) AS in_use
		FROM fixed_ips GROUP BY network_id) f
		FULL JOIN (SELECT network_id, sum(total) AS total, sum(reserved) AS reserved, sum(in_use) AS in_use
			FROM network_counts GROUP BY network_id) c USING (network_id)
		WHERE (f.total, f.reserved, f.in_use) IS DISTINCT FROM (c.total, c.reserved, c.in_use)`).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Errorf("%d networks whose network_counts differ from their fixed_ips", wrong)
	}
}
