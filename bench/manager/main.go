// Command manager benchmarks the allocation path end to end (NATS +
// network-manager + PostgreSQL) and network creation, each beside a
// baseline measured in the same run on the same database server:
//
//   - the floor: one one-row transaction (BEGIN, UPDATE, COMMIT) and one
//     NATS request/reply, p50 of each, measured first;
//   - fixed-IP allocations per second at 1, 16 and 64 concurrent callers,
//     with one and with two manager replicas, with p50 and p99 latency, on
//     a database that already holds 100,000 interfaces, against pgbench
//     running a one-row UPDATE transaction at the same client count;
//   - creating /16 networks through the manager against a plain bulk
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
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"novanet/client"
	"novanet/internal/dbfill"
	"novanet/internal/pgtest"
	"novanet/manager"
	"novanet/natsembed"
	"novanet/rpc"
)

const (
	// prefill is how many interfaces the database holds before the timed
	// phases, spread over the networks.
	prefill = 100_000
	// networks /16 networks are created: one per allocation phase, and
	// spares.
	networks = 8
	// perCreate /16 networks are created per create_networks (its most).
	perCreate = 4
)

// dbMaxConns is each replica's pool size; -db-max-conns sets it.
var dbMaxConns = 8

var (
	callerCounts  = []int{1, 16, 64}
	replicaCounts = []int{1, 2}
)

func main() {
	seconds := flag.Int("seconds", 8, "length of each timed phase")
	flag.Func("clients", "comma-separated caller counts of the allocation phases (default 1,16,64)", func(v string) error {
		return parseInts(v, &callerCounts)
	})
	flag.Func("replicas", "comma-separated manager replica counts of the allocation phases (default 1,2)", func(v string) error {
		return parseInts(v, &replicaCounts)
	})
	flag.IntVar(&dbMaxConns, "db-max-conns", dbMaxConns, "database connections per manager replica (network-manager's default: 8)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (manager, client and NATS) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), time.Duration(*seconds)*time.Second); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// replica is one manager serving on its own NATS connection and pool.
type replica struct {
	pool *pgxpool.Pool
	nc   *nats.Conn
	svc  *manager.Service
}

func startReplica(ctx context.Context, dbURL, natsURL string) (*replica, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(dbMaxConns)
	manager.TunePool(cfg) // as network-manager does
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		pool.Close()
		return nil, err
	}
	m, err := manager.New(pool, zap.NewNop(), manager.Config{Mode: manager.ModeVLAN, Workers: 64}, nil)
	if err == nil {
		var svc *manager.Service
		if svc, err = m.Serve(ctx, nc); err == nil {
			return &replica{pool: pool, nc: nc, svc: svc}, nil
		}
	}
	nc.Close()
	pool.Close()
	return nil, err
}

func (r *replica) stop() {
	_ = r.svc.Stop()
	r.nc.Close()
	r.pool.Close()
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

	ns, err := natsembed.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	first, err := startReplica(ctx, dbURL, ns.ClientURL())
	if err != nil {
		return err
	}
	defer first.stop()
	cnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer cnc.Close()
	c := client.New(cnc, 30*time.Second)
	pool := first.pool

	fmt.Printf("novanet bench: %d-second phases, PostgreSQL %s, embedded NATS, --db-max-conns %d per replica\n\n",
		int(phase.Seconds()), serverVersion(ctx, pool), dbMaxConns)
	nets, err := benchCreate(ctx, c, pool)
	if err != nil {
		return err
	}
	if err := fill(ctx, pool, nets); err != nil {
		return err
	}
	fmt.Println()
	tx, err := floorTx(ctx, srv.AdminURL(), dbName, phase/4)
	if err != nil {
		return err
	}
	rr, err := floorNATS(ctx, ns.ClientURL(), phase/4)
	if err != nil {
		return err
	}
	floor := tx + rr
	fmt.Printf("floor: one one-row transaction p50 %v + one NATS request/reply p50 %v = %v\n\n",
		tx.Round(time.Microsecond), rr.Round(time.Microsecond), floor.Round(time.Microsecond))

	tps := map[int]float64{}
	for _, clients := range callerCounts {
		if tps[clients], err = pgbench(ctx, srv.AdminURL(), dbName, clients, phase); err != nil {
			return err
		}
	}
	fmt.Printf("fixed-IP allocation, allocate_for_instance end to end, on a database holding %d interfaces,\n", prefill)
	fmt.Println("against pgbench (one-row UPDATE transaction) on the same server at the same client count")
	cpu := newCPUMeter(ctx, pool)
	fmt.Printf("%-9s %-8s %10s %9s %9s %10s %10s %12s %7s\n", "replicas", "clients", "allocs/s", "p50", "p99", "p50/floor",
		"CPU/alloc", "pgbench tps", "ratio")
	project := 0
	running := 1
	for _, replicas := range replicaCounts {
		for ; running < replicas; running++ {
			more, err := startReplica(ctx, dbURL, ns.ClientURL())
			if err != nil {
				return err
			}
			defer more.stop()
		}
		for _, clients := range callerCounts {
			r, err := benchAllocate(ctx, c, fmt.Sprintf("bench-%d", project), clients, phase, cpu)
			if err != nil {
				return err
			}
			project++
			fmt.Printf("%-9d %-8d %10.0f %9s %9s %10.2f %10s %12.0f %7.2f\n", replicas, clients, r.rate,
				r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), float64(r.p50)/float64(floor),
				r.cpu, tps[clients], r.rate/tps[clients])
		}
	}
	fmt.Println("CPU/alloc: CPU time of this process (client, NATS, managers) and of the PostgreSQL server's processes")
	fmt.Println("during the phase, per allocation: the machine's cores divided by it bound the rate on an idle machine.")
	return nil
}

func parseInts(v string, into *[]int) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%q: want positive whole numbers, comma-separated", v)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	*into = out
	return nil
}

func serverVersion(ctx context.Context, pool *pgxpool.Pool) string {
	var v string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v
}

// benchCreate times creating the allocation networks (/16 each) through
// the manager and a plain bulk insert of one /16's rows, and returns the
// networks.
func benchCreate(ctx context.Context, c *client.Client, pool *pgxpool.Pool) ([]rpc.Network, error) {
	start := time.Now()
	var nets []rpc.Network
	for i := 0; i < networks/perCreate; i++ {
		cidr := fmt.Sprintf("10.%d.0.0/14", 4*i)
		n, err := c.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: cidr, NumNetworks: perCreate, NetworkSize: 65536,
			VLANStart: 100 + perCreate*i, VPNStart: 1000 + perCreate*i})
		if err != nil {
			return nil, err
		}
		nets = append(nets, n...)
	}
	took := time.Since(start) / networks
	if _, err := pool.Exec(ctx, "CREATE TABLE bench_bulk (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, address inet UNIQUE, n bigint, reserved bool)"); err != nil {
		return nil, err
	}
	start = time.Now()
	if _, err := pool.Exec(ctx, "INSERT INTO bench_bulk (address, n, reserved) SELECT '10.0.0.0'::inet + g, 1, false FROM generate_series(0, 65535) g"); err != nil {
		return nil, err
	}
	base := time.Since(start)
	fmt.Printf("network create, %d /16 networks (65536 fixed IPs each), %d per create_networks, per /16, against one INSERT\n",
		networks, perCreate)
	fmt.Println("of 65536 rows into a table with a unique inet column")
	fmt.Printf("  create_networks: %v   baseline INSERT: %v   ratio (baseline/ours) %.2f\n",
		took.Round(time.Millisecond), base.Round(time.Millisecond), base.Seconds()/took.Seconds())
	return nets, nil
}

// fill gives each network a project (bench-0, bench-1, ...: as a
// project's first allocation would) and prefill/len(nets) interfaces,
// then refreshes the statistics, as after any bulk write.
func fill(ctx context.Context, pool *pgxpool.Pool, nets []rpc.Network) error {
	start := time.Now()
	for i, n := range nets {
		project := fmt.Sprintf("bench-%d", i)
		if _, err := pool.Exec(ctx, "UPDATE networks SET project_id = $2 WHERE id = $1", n.ID, project); err != nil {
			return err
		}
		if err := dbfill.Interfaces(ctx, pool, n.ID, project, prefill/len(nets)); err != nil {
			return err
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return err
	}
	fmt.Printf("prefill: %d interfaces in %v\n", prefill, time.Since(start).Round(time.Millisecond))
	return nil
}

// floorTx is the p50 of one one-row UPDATE transaction (BEGIN, UPDATE,
// COMMIT, three round trips as pgx sends them) from one connection.
func floorTx(ctx context.Context, adminURL, db string, d time.Duration) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, withDB(adminURL, db))
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE bench_floor (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO bench_floor VALUES (1, 0)"); err != nil {
		return 0, err
	}
	return p50For(d, func() error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE bench_floor SET v = v + 1 WHERE id = 1")
			return err
		})
	})
}

// floorNATS is the p50 of one NATS request/reply through the server the
// manager uses, to a responder that echoes.
func floorNATS(ctx context.Context, url string, d time.Duration) (time.Duration, error) {
	rnc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer rnc.Close()
	sub, err := rnc.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := rnc.Flush(); err != nil {
		return 0, err
	}
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	body := []byte(`{"instance_uuid":"` + uuid.NewString() + `","project_id":"bench"}`)
	return p50For(d, func() error {
		_, err := nc.RequestWithContext(ctx, "bench.echo", body)
		return err
	})
}

func p50For(d time.Duration, f func() error) (time.Duration, error) {
	var lat []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], nil
}

func withDB(adminURL, db string) string {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return adminURL
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, db)
}

type result struct {
	rate     float64
	p50, p99 time.Duration
	cpu      string // CPU time per allocation, or "-"
}

func benchAllocate(ctx context.Context, c *client.Client, project string, clients int, phase time.Duration,
	cpu *cpuMeter) (result, error) {
	// Warm up: every replica's connections prepare their statements.
	for i := 0; i < 4*dbMaxConns; i++ {
		if _, err := c.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: uuid.NewString(), ProjectID: project}); err != nil {
			return result{}, err
		}
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		firstErr atomic.Value
	)
	deadline := time.Now().Add(phase)
	start := time.Now()
	cpu0 := cpu.now()
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
	cpu1 := cpu.now()
	if err, _ := firstErr.Load().(error); err != nil {
		return result{}, fmt.Errorf("allocate at %d clients: %w", clients, err)
	}
	if len(lat) == 0 {
		return result{}, errors.New("no allocation finished")
	}
	slices.Sort(lat)
	r := result{
		rate: float64(len(lat)) / elapsed.Seconds(),
		p50:  lat[len(lat)/2],
		p99:  lat[len(lat)*99/100],
		cpu:  "-",
	}
	if cpu0 >= 0 && cpu1 >= 0 {
		r.cpu = ((cpu1 - cpu0) / time.Duration(len(lat))).Round(time.Microsecond).String()
	}
	return r, nil
}

// cpuMeter reads the CPU time used so far by this process and by the
// PostgreSQL server's processes (the postmaster's children, found from a
// backend of pool), from /proc. Backends that exit are not counted: the
// pools' connections stay open through a phase.
type cpuMeter struct {
	postmaster int // 0: unknown (not local, or no /proc)
}

func newCPUMeter(ctx context.Context, pool *pgxpool.Pool) *cpuMeter {
	var pid int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return &cpuMeter{}
	}
	st, err := procStat(pid)
	if err != nil {
		return &cpuMeter{}
	}
	return &cpuMeter{postmaster: st.ppid}
}

// now returns the CPU time used, or -1 when it cannot be read.
func (c *cpuMeter) now() time.Duration {
	if c.postmaster == 0 {
		return -1
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(pid); err == nil && (st.ppid == c.postmaster || pid == c.postmaster) {
			total += st.cpu
		}
	}
	return total
}

type stat struct {
	ppid int
	cpu  time.Duration
}

// clockTick is USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return stat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return stat{}, errors.New("short stat")
	}
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stm, _ := strconv.ParseInt(f[12], 10, 64)
	return stat{ppid: ppid, cpu: time.Duration(ut+stm) * clockTick}, nil
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs a one-row UPDATE transaction at the given client count
// against the same server and returns transactions per second.
func pgbench(ctx context.Context, adminURL, db string, clients int, phase time.Duration) (float64, error) {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return 0, err
	}
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
