package manager_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"novanet/internal/dbfill"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

var buffersRe = regexp.MustCompile(`Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?`)

// maxHostStateBuffers bounds the pages one get_host_state statement reads
// for a host that serves 300 instances: an index walk and a lookup or two
// per instance. Reading the cloud's 100,000 addresses takes hundreds of
// thousands (368k before the host indexes).
const maxHostStateBuffers = 5000

// TestHostStatePlans plans get_host_state's statements on a database with
// 100,000 instances for a host that serves 300 of them: 100 of a
// multi-host network of 60,000 shared by 600 hosts, and the 200 of its
// own single-host network, one of 200 such networks served by 200 hosts
// (and carries the layer 2 of another, for 10 of its instances).
// With stale and with fresh statistics, no statement scans a table that
// grows with the cloud, and run they read a few thousand pages at most. The state itself is checked against
// the slow definition.
func TestHostStatePlans(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a database with 100,000 interfaces")
	}
	env := testenv.Start(t, manager.ModeVLAN)
	multi := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/16", NumNetworks: 1, NetworkSize: 65536})[0].ID
	singles := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.4.0.0/16", NumNetworks: 200, NetworkSize: 256, VLANStart: 200})
	own := singles[7].ID
	if err := dbfill.Interfaces(ctx, env.Pool, multi, "p", 60000); err != nil {
		t.Fatal(err)
	}
	for _, n := range singles {
		if err := dbfill.Interfaces(ctx, env.Pool, n.ID, "p", 200); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO hosts (name, driver) SELECT 'hv-' || i, 'vlan' FROM generate_series(0, 599) i`, nil},
		{`UPDATE networks SET multi_host = true WHERE id = $1`, []any{multi}},
		// Single-host network i is served by hv-i, its instances on
		// other hosts.
		{`UPDATE networks n SET host = 'hv-' || (SELECT count(*) FROM networks m WHERE m.id < n.id AND m.id <> $1)
			WHERE id <> $1`, []any{multi}},
		// 600 hosts of 100 instances each on the multi-host network; a
		// single-host network's instances on its own host, but for 10
		// of network 8's on hv-7 (which carries its layer 2 only).
		{`UPDATE fixed_ips SET host = 'hv-' || (id % 600) WHERE allocated AND network_id = $1`, []any{multi}},
		{`UPDATE fixed_ips f SET host = n.host FROM networks n WHERE n.id = f.network_id AND f.allocated AND n.id <> $1`, []any{multi}},
		{`UPDATE fixed_ips SET host = 'hv-7' WHERE id IN (
			SELECT id FROM fixed_ips WHERE network_id = $1 AND allocated ORDER BY address LIMIT 10)`, []any{singles[8].ID}},
		// A floating IP on every seventh address.
		{`INSERT INTO floating_ips (address, pool, project_id, fixed_ip_id)
			SELECT '172.16.0.0'::inet + row_number() OVER (ORDER BY id), 'nova', 'p', id
			FROM fixed_ips WHERE allocated AND id % 7 = 0`, nil},
	} {
		if _, err := env.Pool.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}

	st, err := env.Client.HostState(ctx, "hv-7", 0)
	if err != nil {
		t.Fatal(err)
	}
	dhcp, layer2 := map[int64]int{}, map[int64]bool{}
	for _, n := range st.Networks {
		dhcp[n.ID], layer2[n.ID] = len(n.DHCPHosts), n.Layer2Only
	}
	if l2 := singles[8].ID; len(st.Networks) != 3 || dhcp[multi] != 100 || dhcp[own] != 200 || dhcp[l2] != 0 ||
		!layer2[l2] || layer2[own] || layer2[multi] {
		t.Errorf("hv-7's state: DHCP hosts by network %v, layer 2 only %v; want %d: 100, %d: 200, %d: 0 and layer 2 only",
			dhcp, layer2, multi, own, l2)
	}
	// What the host NATs, by its definition, read the slow way.
	var floating int
	if err := env.Pool.QueryRow(ctx, `SELECT count(*)
		FROM floating_ips fl JOIN fixed_ips f ON f.id = fl.fixed_ip_id JOIN networks n ON n.id = f.network_id
		WHERE (CASE WHEN n.multi_host THEN f.host ELSE n.host END) = 'hv-7'`).Scan(&floating); err != nil {
		t.Fatal(err)
	}
	if len(st.FloatingIPs) != floating || floating < 10 {
		t.Errorf("hv-7's state: %d floating IPs, want %d (and at least 10)", len(st.FloatingIPs), floating)
	}
	for _, fl := range st.FloatingIPs {
		if fl.NetworkID != multi && fl.NetworkID != own {
			t.Errorf("hv-7's state has floating IP %+v of another host's network", fl)
		}
	}

	conn, err := env.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// As in get_host_state's transaction (SET LOCAL there).
	if _, err := conn.Exec(ctx, strings.Replace(manager.HostStateSettings, "SET LOCAL", "SET", 1)); err != nil {
		t.Fatal(err)
	}
	queries := manager.HostStateQueries("hv-7", multi)
	for _, stats := range []string{"stale statistics", "after ANALYZE"} {
		fresh := stats == "after ANALYZE"
		if fresh {
			if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range queries {
			// The estimated cost grows with the rows the planner guesses a
			// network holds (the cloud's average), not the host's: the
			// pages read bound the cost instead.
			checkPlan(t, stats+", custom plan: "+q.Name, explain(t, conn.Conn(), "EXPLAIN "+q.SQL, q.Args...), false)
			checkPlan(t, stats+", generic plan: "+q.Name, genericPlan(t, conn.Conn(), q), false)
			plan := explain(t, conn.Conn(), "EXPLAIN (ANALYZE, BUFFERS) "+q.SQL, q.Args...)
			b := planBuffers(plan)
			t.Logf("%s: %s reads %d buffers", stats, q.Name, b)
			if b > maxHostStateBuffers {
				t.Errorf("%s: %s reads %d buffers, want at most %d:\n%s", stats, q.Name, b, maxHostStateBuffers, plan)
			}
		}
	}
}

// planBuffers is the shared buffers (hit and read) of an EXPLAIN
// (ANALYZE, BUFFERS)'s top node: its first Buffers line.
func planBuffers(plan string) int {
	m := buffersRe.FindStringSubmatch(plan)
	if m == nil {
		return 0
	}
	hit, _ := strconv.Atoi(m[1])
	read, _ := strconv.Atoi(m[2])
	return hit + read
}
