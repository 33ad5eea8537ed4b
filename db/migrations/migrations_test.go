package migrations_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"novanet/db/migrations"
	"novanet/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestUpDownUp(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	st, err := migrations.Current(ctx, pool)
	if err != nil || st.Version != migrations.Version || st.Dirty {
		t.Fatalf("Current = %+v, %v; want version %d clean", st, err, migrations.Version)
	}
	// Up on a current database is a no-op, not an error.
	if err := migrations.Up(ctx, pool); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	// One step down and up again: each migration reverts on its own.
	if err := migrations.Down(ctx, pool, 1); err != nil {
		t.Fatalf("Down 1: %v", err)
	}
	// Versions need not be consecutive: Down 1 goes to the one before.
	if st, err := migrations.Current(ctx, pool); err != nil || st.Version >= migrations.Version || st.Version == 0 {
		t.Fatalf("after Down 1: %+v, %v", st, err)
	}
	if err := migrations.Up(ctx, pool); err != nil {
		t.Fatalf("Up after Down 1: %v", err)
	}
	if err := migrations.Down(ctx, pool, 0); err != nil {
		t.Fatalf("Down: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname='public' AND tablename <> 'schema_migrations'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("after Down: %d tables left (%v)", n, err)
	}
	if err := migrations.Up(ctx, pool); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func exec(t *testing.T, pool *pgxpool.Pool, q string, args ...any) error {
	t.Helper()
	_, err := pool.Exec(context.Background(), q, args...)
	return err
}

const insNet = `INSERT INTO networks (label, cidr, netmask, broadcast, vlan, bridge)
	VALUES ($1, $2, netmask($2::cidr), broadcast($2::cidr), $3, $4)`

func TestConstraints(t *testing.T) {
	pool, _ := pgtest.NewDB(t)
	if err := exec(t, pool, insNet, "a", "10.0.0.0/28", 100, "br100"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		err   error
		state string
	}{
		{"overlapping cidr", exec(t, pool, insNet, "b", "10.0.0.0/24", nil, "br1"), "23P01"},
		{"same vlan", exec(t, pool, insNet, "c", "10.0.1.0/28", 100, "br101"), "23505"},
		{"vlan 0", exec(t, pool, insNet, "d", "10.0.2.0/28", 0, "br0"), "23514"},
		{"vlan 4095", exec(t, pool, insNet, "e", "10.0.3.0/28", 4095, "br4095"), "23514"},
		{"duplicate vlan bridge", exec(t, pool, insNet, "f", "10.0.4.0/28", 101, "br100"), "23505"},
		{"bad bridge name", exec(t, pool, insNet, "g", "10.0.5.0/28", 102, "a/b"), "23514"},
		{"ipv6 as v4 cidr", exec(t, pool, insNet, "h", "fd00::/64", nil, nil), "23514"},
		{"gateway outside", exec(t, pool, `INSERT INTO networks (label, cidr, netmask, broadcast, gateway)
			VALUES ('i', '10.0.6.0/28', '255.255.255.240', '10.0.6.15', '10.9.9.9')`), "23514"},
	} {
		if got := sqlState(tc.err); got != tc.state {
			t.Errorf("%s: SQLSTATE %q (%v), want %s", tc.name, got, tc.err, tc.state)
		}
	}
	var netID int64
	if err := pool.QueryRow(context.Background(), "SELECT id FROM networks").Scan(&netID); err != nil {
		t.Fatal(err)
	}
	vif := `INSERT INTO virtual_interfaces (address, instance_uuid, network_id) VALUES ($1, gen_random_uuid(), $2)`
	if err := exec(t, pool, vif, "02:00:00:00:00:01", netID); err != nil {
		t.Fatal(err)
	}
	if got := sqlState(exec(t, pool, vif, "02:00:00:00:00:01", netID)); got != "23505" {
		t.Errorf("duplicate MAC: SQLSTATE %q, want 23505", got)
	}
	fip := `INSERT INTO fixed_ips (address, network_id) VALUES ($1, $2)`
	if err := exec(t, pool, fip, "10.0.0.5", netID); err != nil {
		t.Fatal(err)
	}
	if got := sqlState(exec(t, pool, fip, "10.0.0.5", netID)); got != "23505" {
		t.Errorf("duplicate fixed IP: SQLSTATE %q, want 23505", got)
	}
	if got := sqlState(exec(t, pool, fip, "10.0.0.6", netID+1000)); got != "23503" {
		t.Errorf("fixed IP of missing network: SQLSTATE %q, want 23503", got)
	}
}
