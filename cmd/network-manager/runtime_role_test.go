package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"novanet/client"
	"novanet/internal/pgtest"
	"novanet/rpc"
)

// roleDB makes an empty database owned by a new role of its own, and a
// second role with no privileges at all, and returns the URLs of both; all
// three are dropped when the test ends. Names carry the process id: roles
// belong to the whole server, which other test binaries may share.
func roleDB(t *testing.T) (ownerURL, appURL string) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgtest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano())
	owner, app, db := "novanet_owner_"+suffix, "novanet_app_"+suffix, "novanet_roles_"+suffix
	for _, q := range []string{
		"CREATE ROLE " + owner + " LOGIN",
		"CREATE ROLE " + app + " LOGIN",
		"CREATE DATABASE " + db + " OWNER " + owner,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, q := range []string{"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)", "DROP ROLE IF EXISTS " + app, "DROP ROLE IF EXISTS " + owner} {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
		admin.Close(ctx)
	})
	as := func(role string) string {
		u, err := url.Parse(pgtest.AdminURL(t))
		if err != nil {
			t.Fatal(err)
		}
		u.User, u.Path = url.User(role), "/"+db
		return u.String()
	}
	return as(owner), as(app)
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestRuntimeRole migrates as the owner role, which grants the runtime role
// DML; the manager then serves allocations and floating IPs as the runtime
// role, which can change no schema.
func TestRuntimeRole(t *testing.T) {
	ctx := context.Background()
	ownerURL, appURL := roleDB(t)
	app, err := pgx.ParseConfig(appURL)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"NOVANET_DATABASE_URL": appURL, "NOVANET_MIGRATE_DATABASE_URL": ownerURL}

	// Without privileges the runtime role cannot migrate.
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"migrate", "up"}, &out, &errb, env(map[string]string{"NOVANET_DATABASE_URL": appURL}), nil); code != 1 ||
		!strings.Contains(errb.String(), "permission denied") {
		t.Errorf("migrate up as the runtime role: exit %d %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run(ctx, []string{"migrate", "up"}, &out, &errb, env(vars), nil); code != 0 {
		t.Fatalf("migrate up: exit %d %s", code, errb.String())
	}
	conn, err := pgx.Connect(ctx, appURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables < 8 {
		t.Fatalf("tables: %d %v", tables, err)
	}
	if want := fmt.Sprintf("runtime role %s: SELECT, INSERT, UPDATE, DELETE on %d tables", app.User, tables); !strings.Contains(out.String(), want) {
		t.Errorf("migrate up printed %q, want %q", out.String(), want)
	}
	// Again: idempotent.
	if code := run(ctx, []string{"migrate", "up"}, io.Discard, &errb, env(vars), nil); code != 0 {
		t.Fatalf("second migrate up: exit %d %s", code, errb.String())
	}

	s := serve(t, map[string]string{"NOVANET_DATABASE_URL": appURL},
		"--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "console")
	c := client.New(s.connect(t), 10*time.Second)
	if _, err := c.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/24", NumNetworks: 1, NetworkSize: 256}); err != nil {
		t.Fatalf("create networks as the runtime role: %v", err)
	}
	// create_networks refreshed the statistics through novanet_analyze:
	// the runtime role may not ANALYZE itself.
	var tuples float64
	if err := conn.QueryRow(ctx, "SELECT reltuples FROM pg_class WHERE relname = 'fixed_ips'").Scan(&tuples); err != nil || tuples != 256 {
		t.Errorf("fixed_ips reltuples after create_networks = %v (%v), want 256: not analyzed", tuples, err)
	}
	info, err := c.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{
		InstanceUUID: "6e9b6a9e-5d3f-4f8e-9a55-0b8f6f1d2c3a", ProjectID: "p1", Host: "hv1"})
	if err != nil || len(info.VIFs) != 1 {
		t.Fatalf("allocate as the runtime role: %+v %v", info, err)
	}
	if _, err := c.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{CIDR: "203.0.113.0/29"}); err != nil { // LOCK TABLE
		t.Fatalf("floating create as the runtime role: %v", err)
	}
	if _, err := c.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"}); err != nil {
		t.Fatalf("floating allocate as the runtime role: %v", err)
	}
	if err := c.DeallocateForInstance(ctx, "6e9b6a9e-5d3f-4f8e-9a55-0b8f6f1d2c3a"); err != nil {
		t.Fatalf("deallocate as the runtime role: %v", err)
	}
	if code, body := get(t, "http://"+s.httpAddr.String()+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q", code, body)
	}

	for _, q := range []string{
		"DROP TABLE fixed_ips",
		"CREATE TABLE stolen (x int)",
		"ALTER TABLE networks ADD COLUMN x int",
		"TRUNCATE networks CASCADE",
		"CREATE INDEX ON networks (label)",
		"UPDATE schema_migrations SET version = 1",
		"DELETE FROM schema_migrations",
	} {
		if _, err := conn.Exec(ctx, q); pgCode(err) != "42501" {
			t.Errorf("%s as the runtime role: %v, want a permission error (42501)", q, err)
		}
	}
	s.stop(t)
	if strings.Contains(s.stderr.String(), "serves with DDL rights") {
		t.Errorf("the manager warned about the runtime role's rights:\n%s", s.stderr)
	}
}

// TestRuntimeRoleRefused: migrate up does not grant to a role that is
// missing, or is the owner or a superuser.
func TestRuntimeRoleRefused(t *testing.T) {
	ctx := context.Background()
	ownerURL, appURL := roleDB(t)
	owner, _ := pgx.ParseConfig(ownerURL)
	for _, tc := range []struct {
		role, want string
	}{
		{"novanet_nobody", `runtime role "novanet_nobody" does not exist: create it first`},
		{owner.User, "is the role that runs the migrations"},
		{"postgres", "is a superuser"},
	} {
		var errb bytes.Buffer
		code := run(ctx, []string{"migrate", "up", "--runtime-role", tc.role}, io.Discard, &errb,
			env(map[string]string{"NOVANET_DATABASE_URL": appURL, "NOVANET_MIGRATE_DATABASE_URL": ownerURL}), nil)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("--runtime-role %s: exit %d %q, want %q", tc.role, code, errb.String(), tc.want)
		}
	}
}
