// Command manager benchmarks the allocation path end to end (NATS +
// network-manager + PostgreSQL) and network creation, each beside a
// baseline measured in the same run on the same database server:
//
//   - fixed-IP allocations per second at 1 and 64 concurrent callers, with
//     p50 and p99 latency, against pgbench running a one-row UPDATE
//     transaction at the same client count;
//   - creating one /16 network through the manager against a plain bulk
//     INSERT of as many rows.
//
// Run it with "make bench" (or go run ./bench/manager); -seconds sets the
// length of each timed phase.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"novanet/client"
	"novanet/internal/pgtest"
	"novanet/manager"
	"novanet/natsembed"
	"novanet/rpc"
)

func main() {
	seconds := flag.Int("seconds", 8, "length of each timed phase")
	flag.Parse()
	if err := run(context.Background(), time.Duration(*seconds)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, phase time.Duration) error {
	srv, err := pgtest.Start()
	if err != nil {
		return err
	}
	defer srv.Stop()
	const dbName = "novanet_bench"
	_ = srv.DropDatabase(ctx, dbName)
	dbURL, err := srv.CreateDatabase(ctx, dbName)
	if err != nil {
		return err
	}
	defer srv.DropDatabase(ctx, dbName) //nolint:errcheck

	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	cfg.MaxConns = 8 // as network-manager's --db-max-conns default
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	ns, err := natsembed.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	mnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer mnc.Close()
	m, err := manager.New(pool, zap.NewNop(), manager.Config{Mode: manager.ModeVLAN, Workers: 64}, nil)
	if err != nil {
		return err
	}
	svc, err := m.Serve(ctx, mnc)
	if err != nil {
		return err
	}
	defer svc.Stop() //nolint:errcheck
	cnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer cnc.Close()
	c := client.New(cnc, 30*time.Second)

	fmt.Printf("novanet bench: %d-second phases, PostgreSQL %s, one manager replica, embedded NATS\n\n", int(phase.Seconds()), serverVersion(ctx, pool))
	if err := benchCreate(ctx, c, pool); err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("fixed-IP allocation, allocate_for_instance end to end, against pgbench (one-row UPDATE transaction) on the same server")
	fmt.Printf("%-8s %12s %9s %9s %14s %7s\n", "clients", "allocs/s", "p50", "p99", "pgbench tps", "ratio")
	for i, clients := range []int{1, 64} {
		r, err := benchAllocate(ctx, c, fmt.Sprintf("bench-%d", i), clients, phase)
		if err != nil {
			return err
		}
		tps, err := pgbench(ctx, srv.AdminURL(), dbName, clients, phase)
		if err != nil {
			return err
		}
		fmt.Printf("%-8d %12.0f %9s %9s %14.0f %7.2f\n", clients, r.rate, r.p50.Round(time.Microsecond),
			r.p99.Round(time.Microsecond), tps, r.rate/tps)
	}
	return nil
}

func serverVersion(ctx context.Context, pool *pgxpool.Pool) string {
	var v string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v
}

// benchCreate times a /16 through the manager and a plain bulk insert of
// the same number of rows. It leaves two /16 VLAN networks for the
// allocation phases.
func benchCreate(ctx context.Context, c *client.Client, pool *pgxpool.Pool) error {
	start := time.Now()
	if _, err := c.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/15", NumNetworks: 2, NetworkSize: 65536}); err != nil {
		return err
	}
	took := time.Since(start) / 2
	if _, err := pool.Exec(ctx, "CREATE TABLE bench_bulk (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, address inet UNIQUE, n bigint, reserved bool)"); err != nil {
		return err
	}
	start = time.Now()
	if _, err := pool.Exec(ctx, "INSERT INTO bench_bulk (address, n, reserved) SELECT '10.0.0.0'::inet + g, 1, false FROM generate_series(0, 65535) g"); err != nil {
		return err
	}
	base := time.Since(start)
	fmt.Println("network create, one /16 (65536 fixed IPs) through netadm's RPC, against one INSERT of 65536 rows into a table with a unique inet column")
	fmt.Printf("  create_networks: %v   baseline INSERT: %v   ratio (baseline/ours) %.2f\n",
		took.Round(time.Millisecond), base.Round(time.Millisecond), base.Seconds()/took.Seconds())
	return nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
}

func benchAllocate(ctx context.Context, c *client.Client, project string, clients int, phase time.Duration) (result, error) {
	// Warm up: the project's first allocation associates its network.
	if _, err := c.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: project}); err != nil {
		return result{}, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		firstErr atomic.Value
	)
	deadline := time.Now().Add(phase)
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				_, err := c.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: project})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return result{}, fmt.Errorf("allocate at %d clients: %w", clients, err)
	}
	if len(lat) == 0 {
		return result{}, errors.New("no allocation finished")
	}
	slices.Sort(lat)
	return result{
		rate: float64(len(lat)) / elapsed.Seconds(),
		p50:  lat[len(lat)/2],
		p99:  lat[len(lat)*99/100],
	}, nil
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs a one-row UPDATE transaction at the given client count
// against the same server and returns transactions per second.
func pgbench(ctx context.Context, adminURL, db string, clients int, phase time.Duration) (float64, error) {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return 0, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	dir, err := os.MkdirTemp("", "novanet-pgbench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "update.sql")
	if err := os.WriteFile(script, []byte("\\set id random(1, 10000)\nBEGIN;\nUPDATE bench_rows SET v = v + 1 WHERE id = :id;\nEND;\n"), 0o644); err != nil {
		return 0, err
	}
	setup := fmt.Sprintf("psql -q -h %s -p %d -U %s -d %s -c 'DROP TABLE IF EXISTS bench_rows; CREATE TABLE bench_rows (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO bench_rows SELECT g, 0 FROM generate_series(1, 10000) g'",
		cfg.Host, cfg.Port, cfg.User, db)
	if out, err := exec.CommandContext(ctx, "sh", "-c", setup).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench setup: %w: %s", err, out)
	}
	threads := min(clients, 2)
	cmd := exec.CommandContext(ctx, "pgbench", "-n", "-f", script, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
		"-T", strconv.Itoa(int(phase.Seconds())), "-h", cfg.Host, "-p", strconv.Itoa(int(cfg.Port)), "-U", cfg.User, db)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
