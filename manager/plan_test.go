package manager_test

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"novanet/internal/dbfill"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// bigTables are the tables that grow with the cloud: no allocation
// statement may scan them.
var bigTables = []string{"fixed_ips", "virtual_interfaces", "network_counts"}

var costRe = regexp.MustCompile(`cost=[0-9.]+\.\.([0-9.]+)`)

// maxPlanCost bounds the planner's estimate of one allocation statement:
// index lookups cost tens; one scan of 100,000 rows costs thousands.
const maxPlanCost = 1000

// TestAllocationPlans plans every statement of the allocation path on a
// database holding 100,000 interfaces, both before the statistics know
// of them and after ANALYZE, as custom plans (with the arguments) and as
// the generic plans a connection caches after a few calls: each must stay
// an index lookup (no sequential scan of a table that grows, an estimated
// cost far below a scan's once the statistics are fresh, and below
// jit_above_cost).
func TestAllocationPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a database with 100,000 interfaces")
	}
	env := testenv.Start(t, manager.ModeVLAN)
	nets := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/15", NumNetworks: 2, NetworkSize: 65536})
	if err := dbfill.Interfaces(ctx, env.Pool, nets[0].ID, "p", 60000); err != nil {
		t.Fatal(err)
	}
	if err := dbfill.Interfaces(ctx, env.Pool, nets[1].ID, "p", 40000); err != nil {
		t.Fatal(err)
	}
	var (
		inst  string
		start int64
	)
	if err := env.Pool.QueryRow(ctx, `SELECT v.instance_uuid::text, host(n.cidr)::inet - '0.0.0.0'::inet
		FROM virtual_interfaces v JOIN networks n ON n.id = v.network_id WHERE n.id = $1 ORDER BY v.id DESC LIMIT 1`,
		nets[0].ID).Scan(&inst, &start); err != nil {
		t.Fatal(err)
	}
	queries := manager.AllocationQueries(inst, "p", "compute-1", nets[0].ID, start, 65536, netip.MustParseAddr("10.0.255.0"))
	conn, err := env.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, stats := range []string{"stale statistics", "after ANALYZE"} {
		if stats == "after ANALYZE" {
			if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range queries {
			// Stale statistics inflate row estimates (an instance seems
			// to have hundreds of interfaces), not the plan's shape: the
			// cost bound applies once they are fresh.
			fresh := stats == "after ANALYZE"
			custom := explain(t, conn.Conn(), "EXPLAIN "+q.SQL, q.Args...)
			checkPlan(t, stats+", custom plan: "+q.Name, custom, fresh)
			checkPlan(t, stats+", generic plan: "+q.Name, genericPlan(t, conn.Conn(), q), fresh)
		}
	}
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func explain(t *testing.T, conn querier, sql string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.Join(lines, "\n")
}

// genericPlan is the plan a prepared statement gets once it is cached
// without regard to its arguments.
func genericPlan(t *testing.T, conn *pgx.Conn, q manager.PlanQuery) string {
	t.Helper()
	for _, s := range []string{"SET plan_cache_mode = force_generic_plan", "PREPARE plan_q AS " + q.SQL} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %s: %v", q.Name, s, err)
		}
	}
	defer conn.Exec(ctx, "DEALLOCATE plan_q; RESET plan_cache_mode") //nolint:errcheck
	lits := make([]string, len(q.Args))
	for i, a := range q.Args {
		lits[i] = literal(a)
	}
	sql := "EXPLAIN EXECUTE plan_q"
	if len(lits) > 0 {
		sql += "(" + strings.Join(lits, ", ") + ")"
	}
	return explain(t, conn, sql)
}

func literal(a any) string {
	switch v := a.(type) {
	case nil:
		return "NULL"
	case string:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case []int64:
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = strconv.FormatInt(x, 10)
		}
		return "'{" + strings.Join(s, ",") + "}'"
	case netip.Addr:
		return "'" + v.String() + "'"
	default:
		return fmt.Sprint(v)
	}
}

func checkPlan(t *testing.T, what, plan string, bounded bool) {
	t.Helper()
	for _, tbl := range bigTables {
		if regexp.MustCompile(`Seq Scan on ` + tbl + `\b`).MatchString(plan) {
			t.Errorf("%s scans %s:\n%s", what, tbl, plan)
		}
	}
	if strings.Contains(plan, "JIT:") {
		t.Errorf("%s would be JIT-compiled:\n%s", what, plan)
	}
	m := costRe.FindStringSubmatch(plan)
	if m == nil {
		t.Fatalf("%s: no cost in plan:\n%s", what, plan)
	}
	if c, _ := strconv.ParseFloat(m[1], 64); bounded && c > maxPlanCost {
		t.Errorf("%s: estimated cost %.0f, want at most %d:\n%s", what, c, maxPlanCost, plan)
	}
}
