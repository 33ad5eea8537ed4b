// Command floating measures associating one more floating IP with a host
// that already has 10,000 associated, end to end: from the
// associate_floating_ip call through NATS, the manager and PostgreSQL, the
// manager's notice to the agent, the agent's convergence (desired state,
// rules, iptables-restore) to the address bound on the public interface. The
// agent binds an address only after its iptables-restore succeeded, so a
// bound address means its NAT rules are in the kernel (checked once with
// iptables -C). Beside it, in the same run and namespace, the kernel-only
// floor: one iptables-restore --noflush appending one DNAT and SNAT pair to
// chains of another prefix that already hold 10,000 pairs.
//
// Run it as root ("make bench", or go run ./bench/floating). It starts its
// own PostgreSQL (see internal/pgtest), embedded NATS and a flatdhcp manager
// in process, builds cmd/network-host and runs it against a throwaway
// network namespace nn-bench-<pid>-fl with a public interface pub0. The
// 10,000 associations are written with one SQL statement, as
// associate_floating_ip writes them, their addresses bound through netlink
// before that commits (the agent adopts them: binding them itself, it would
// run arping once per address, about a second each), then the agent's first
// full convergence is timed (informational).
// Everything (agent, dnsmasq, namespace, PostgreSQL, NATS, temporary
// files) is removed on exit, also on error and on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"novanet/bench/internal/floatpairs"
	"novanet/client"
	"novanet/internal/pgtest"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/link"
	"novanet/manager"
	"novanet/natsembed"
	"novanet/rpc"
)

const (
	host        = "hv1"
	project     = "p1"
	pool        = "public"
	pubIface    = "pub0"
	agentPrefix = "nn-bench" // the agent's chains
	basePrefix  = "nn-base"  // the floor's chains
	instances   = 4
)

var verbose bool

func main() {
	samples := flag.Int("n", 20, "associations timed (each also waits about a second for the agent's gratuitous ARP to finish)")
	count := flag.Int("floating", 10000, "floating IPs associated with the host before the timed ones")
	flag.BoolVar(&verbose, "v", false, "print every sample")
	flag.Parse()
	var c cleanups
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "bench: %v: cleaning up\n", s)
		c.run()
		os.Exit(130)
	}()
	err := run(context.Background(), &c, *samples, *count)
	c.run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// cleanups run last-in first-out, once, from main or the signal handler.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, f)
}

func (c *cleanups) run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

func cmd(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func run(ctx context.Context, c *cleanups, samples, count int) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: creates a network namespace and runs network-host in it")
	}
	if samples < 1 || count < 1 || count > 30000 {
		return errors.New("-n must be at least 1 and -floating 1 to 30000")
	}
	for _, b := range []string{"ip", "dnsmasq", "arping", "iptables-restore"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s: %w", b, err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go (to build network-host): %w", err)
	}
	dir, err := os.MkdirTemp("", "novanet-bench-floating-")
	if err != nil {
		return err
	}
	c.add(func() { os.RemoveAll(dir) })
	agentBin := filepath.Join(dir, "network-host")
	if out, err := exec.Command(goBin, "build", "-o", agentBin, "novanet/cmd/network-host").CombinedOutput(); err != nil {
		return fmt.Errorf("go build network-host: %w\n%s", err, out)
	}

	// PostgreSQL, NATS and a manager.
	srv, err := pgtest.Start()
	if err != nil {
		return err
	}
	c.add(srv.Stop)
	dbName := fmt.Sprintf("novanet_bench_floating_%d", os.Getpid())
	dbURL, err := srv.CreateDatabase(ctx, dbName)
	if err != nil {
		return err
	}
	c.add(func() { _ = srv.DropDatabase(context.Background(), dbName) })
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	cfg.MaxConns = 8 // as network-manager's --db-max-conns default
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	c.add(db.Close)
	ns, err := natsembed.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	c.add(ns.Shutdown)
	mnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	c.add(mnc.Close)
	m, err := manager.New(db, zap.NewNop(), manager.Config{Mode: manager.ModeFlatDHCP}, nil)
	if err != nil {
		return err
	}
	svc, err := m.Serve(ctx, mnc)
	if err != nil {
		return err
	}
	c.add(func() { _ = svc.Stop() })
	cnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	c.add(cnc.Close)
	cl := client.New(cnc, 3*time.Minute)

	// The namespace, with pub0 (a veth whose peer stays in the namespace:
	// arping needs a link that can send).
	nsName := fmt.Sprintf("nn-bench-%d-fl", os.Getpid())
	nsPath := "/var/run/netns/" + nsName
	if err := cmd("ip", "netns", "add", nsName); err != nil {
		return err
	}
	c.add(func() { deleteNamespace(nsName) })
	for _, args := range [][]string{
		{"link", "add", pubIface, "type", "veth", "peer", "name", pubIface + "p"},
		{"addr", "add", "203.0.113.1/24", "dev", pubIface},
		{"link", "set", pubIface, "up"},
		{"link", "set", pubIface + "p", "up"},
	} {
		if err := cmd("ip", append([]string{"-n", nsName}, args...)...); err != nil {
			return err
		}
	}
	nl, err := link.Open(nsPath)
	if err != nil {
		return err
	}
	c.add(nl.Close)

	// The agent.
	ag := &agent{bin: agentBin, dir: dir, log: filepath.Join(dir, "agent.log")}
	c.add(ag.stop)
	if err := ag.start(ns.ClientURL(), nsPath); err != nil {
		return err
	}
	if err := eventually(30*time.Second, host+" registered", func() bool {
		hs, err := cl.ListHosts(ctx)
		return err == nil && slices.ContainsFunc(hs, func(h rpc.HostInfo) bool { return h.Name == host && h.Alive })
	}); err != nil {
		return ag.withLog(err)
	}

	// A network, instances of p1 on hv1, a floating range, and count
	// associations written in bulk.
	if _, err := cl.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/24", NumNetworks: 1,
		NetworkSize: 256, Bridge: "br100"}); err != nil {
		return err
	}
	var fixed []string
	var uuids []string
	for range instances {
		inst := uuid.NewString()
		info, err := cl.AllocateForInstance(ctx, rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: project, Host: host})
		if err != nil {
			return err
		}
		if len(info.VIFs) != 1 || len(info.VIFs[0].FixedIPs) != 1 {
			return fmt.Errorf("allocate %s: %+v, want one interface with one address", inst, info)
		}
		fixed = append(fixed, info.VIFs[0].FixedIPs[0].Address)
		uuids = append(uuids, inst)
	}
	if _, err := cl.QuotaSet(ctx, project, rpc.ResourceFloatingIPs, rpc.QuotaUnlimited); err != nil {
		return err
	}
	if _, err := cl.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{Pool: pool, CIDR: "198.18.0.0/17"}); err != nil {
		return err
	}
	// As associate_floating_ip writes an association: the project's
	// address, the fixed IP, and the host that NATs it (the network's host,
	// the network not being multi-host). The lowest free addresses, as
	// allocate_floating_ip takes them, spread over the instances. Their
	// addresses are bound before the commit, so the agent never binds them
	// itself (it adopts them: it would run arping once per address).
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	rows, err := tx.Query(ctx, `
		WITH fx AS (
			SELECT f.id, row_number() OVER (ORDER BY f.address) - 1 AS i, count(*) OVER () AS n, nw.host
			FROM fixed_ips f JOIN networks nw ON nw.id = f.network_id WHERE f.instance_uuid = ANY($1::uuid[])),
		fl AS (
			SELECT id, row_number() OVER (ORDER BY address) - 1 AS i FROM floating_ips
			WHERE pool = $2 AND project_id IS NULL ORDER BY address LIMIT $3)
		UPDATE floating_ips u SET project_id = $4, fixed_ip_id = fx.id, host = fx.host, auto_assigned = false, updated_at = now()
		FROM fl JOIN fx ON fx.i = fl.i % fx.n
		WHERE u.id = fl.id
		RETURNING u.address, u.host`, uuids, pool, count, project)
	if err != nil {
		return err
	}
	var (
		addrs []netip.Addr
		a     netip.Prefix
		h     string
	)
	if _, err := pgx.ForEachRow(rows, []any{&a, &h}, func() error {
		if h != host {
			return fmt.Errorf("floating IP %s associated on host %q, want %s", a, h, host)
		}
		addrs = append(addrs, a.Addr())
		return nil
	}); err != nil {
		return err
	}
	if len(addrs) != count {
		return fmt.Errorf("associated %d floating IPs in bulk, want %d", len(addrs), count)
	}
	start := time.Now()
	for _, a := range addrs {
		if err := nl.AddAddr(ctx, pubIface, netip.PrefixFrom(a, 32)); err != nil {
			return fmt.Errorf("bind %s: %w", a, err)
		}
	}
	prebind := time.Since(start)
	if err := tx.Commit(ctx); err != nil {
		return err
	}

	// The agent's first full convergence with count floating IPs.
	start = time.Now()
	if _, err := cl.ConvergeHost(ctx, host); err != nil {
		return ag.withLog(fmt.Errorf("converge %s: %w", host, err))
	}
	initial := time.Since(start)
	if n, err := countHostAddrs(ctx, nl); err != nil || n != count {
		return fmt.Errorf("%d /32 on %s after the convergence (%v), want %d", n, pubIface, err, count)
	}
	start = time.Now()
	st, err := cl.HostState(ctx, host, 0)
	if err != nil {
		return err
	}
	stateTook := time.Since(start)
	if len(st.FloatingIPs) != count {
		return fmt.Errorf("host state of %s has %d floating IPs, want %d", host, len(st.FloatingIPs), count)
	}

	// The floor's chains: count pairs in one restore, not timed.
	base, err := iptables.New(iptables.Config{Binary: basePrefix, Families: []iptables.Family{iptables.IPv4}, NetNS: nsPath})
	if err != nil {
		return err
	}
	for i := range count {
		if err := floatpairs.Add(base, i); err != nil {
			return err
		}
	}
	if err := base.Apply(ctx); err != nil {
		return err
	}

	// Timed.
	wctx, stopWatch := context.WithCancel(ctx)
	c.add(stopWatch)
	updates, err := nl.WatchAddrs(wctx, pubIface, 4096)
	if err != nil {
		return err
	}
	var e2e, rpcTook, agentDone, floor []time.Duration
	for i := range samples {
		fip, err := cl.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: project, Pool: pool})
		if err != nil {
			return err
		}
		fa, err := netip.ParseAddr(fip.Address)
		if err != nil {
			return err
		}
		xa := fixed[i%len(fixed)]
		mark, err := ag.reports()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := cl.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: fip.Address, FixedAddress: xa}); err != nil {
			return err
		}
		rpcTook = append(rpcTook, time.Since(t0))
		if err := waitBound(updates, fa, 60*time.Second); err != nil {
			return ag.withLog(err)
		}
		e2e = append(e2e, time.Since(t0))
		// The agent finishes (gratuitous ARP) before the next one, so that
		// each association finds it idle.
		if err := eventually(60*time.Second, "agent report", func() bool { n, err := ag.reports(); return err == nil && n > mark }); err != nil {
			return ag.withLog(err)
		}
		agentDone = append(agentDone, time.Since(t0))
		if i == 0 {
			if err := checkRules(nsName, fip.Address, xa); err != nil {
				return err
			}
		}
		if err := floatpairs.Add(base, count+i); err != nil {
			return err
		}
		t0 = time.Now()
		if err := base.Apply(ctx); err != nil {
			return err
		}
		floor = append(floor, time.Since(t0))
		if verbose {
			fmt.Printf("  %2d %s: reply %s bound %s agent done %s | floor %s\n", i, fip.Address, ms(rpcTook[i]), ms(e2e[i]), ms(agentDone[i]), ms(floor[i]))
		}
	}
	if n, err := countHostAddrs(ctx, nl); err != nil || n != count+samples {
		return fmt.Errorf("%d /32 on %s at the end (%v), want %d", n, pubIface, err, count+samples)
	}

	e, f, r, d := stats(e2e), stats(floor), stats(rpcTook), stats(agentDone)
	fmt.Printf("floating: associate 1 more with %d associated, RPC to kernel: p50 %s p99 %s mean %s (n=%d) | floor: one restore of 1 pair with %d present p50 %s p99 %s | ratio %.1fx\n",
		count, ms(e.p50), ms(e.p99), ms(e.mean), len(e2e), count, ms(f.p50), ms(f.p99), e.p50.Seconds()/f.p50.Seconds())
	fmt.Printf("floating: of which the associate_floating_ip reply p50 %s; the agent's convergence ended (gratuitous ARP included) p50 %s after the call\n",
		ms(r.p50), ms(d.p50))
	fmt.Printf("floating: first full convergence with %d floating IPs (addresses pre-bound in %.2fs): %.2fs; host state (%d floating IPs) read in %s\n",
		count, prebind.Seconds(), initial.Seconds(), len(st.FloatingIPs), ms(stateTook))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

type summary struct{ p50, p99, mean time.Duration }

func stats(ds []time.Duration) summary {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return summary{p50: s[len(s)/2], p99: s[len(s)*99/100], mean: sum / time.Duration(len(s))}
}

func countHostAddrs(ctx context.Context, nl *link.Manager) (int, error) {
	as, err := nl.Addrs(ctx, pubIface)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range as {
		if a.Addr().Is4() && a.Bits() == 32 {
			n++
		}
	}
	return n, nil
}

// waitBound waits for the kernel's notice that a is on link index.
func waitBound(updates <-chan link.AddrEvent, a netip.Addr, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case u := <-updates:
			if u.Added && u.Prefix.Addr() == a {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("%s not bound on %s after %v", a, pubIface, timeout)
		}
	}
}

// checkRules checks with iptables -C that the agent's NAT rules for the
// association are in the kernel.
func checkRules(nsName, floating, fixed string) error {
	for _, r := range [][]string{
		{agentPrefix + "-PREROUTING", "-d", floating + "/32", "-j", "DNAT", "--to-destination", fixed},
		{agentPrefix + "-OUTPUT", "-d", floating + "/32", "-j", "DNAT", "--to-destination", fixed},
		{agentPrefix + "-float-snat", "-s", fixed + "/32", "-o", pubIface, "-j", "SNAT", "--to-source", floating},
	} {
		if err := cmd("ip", append([]string{"netns", "exec", nsName, "iptables", "-w", "-t", "nat", "-C"}, r...)...); err != nil {
			return fmt.Errorf("rule not in the kernel: %w", err)
		}
	}
	return nil
}

func eventually(timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v", what, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// agent is the network-host process.
type agent struct {
	bin, dir, log string
	cmd           *exec.Cmd
	logf          *os.File
}

func (a *agent) start(natsURL, nsPath string) error {
	f, err := os.Create(a.log)
	if err != nil {
		return err
	}
	a.logf = f
	a.cmd = exec.Command(a.bin, "serve", "--host", host, "--driver", "flatdhcp", "--nats-url", natsURL,
		"--netns", nsPath, "--public-interface", pubIface, "--routing-source-ip", "203.0.113.1", "--ipv6=false",
		"--dnsmasq-user", "root", "--dhcp-dir", filepath.Join(a.dir, "dhcp"), "--state-dir", filepath.Join(a.dir, "state"),
		"--event-socket", filepath.Join(a.dir, "host.sock"), "--iptables-chain-prefix", agentPrefix,
		"--converge-interval", "1h", "--log-format", "json", "--log-level", "debug")
	a.cmd.Stdout, a.cmd.Stderr = f, f
	// Its own process group: Ctrl-C reaches the bench, which stops it.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return a.cmd.Start()
}

// reports counts the convergence reports the agent has logged (each
// request with changes or errors ends with one).
func (a *agent) reports() (int, error) {
	b, err := os.ReadFile(a.log)
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte(`"msg":"host changed"`)) + bytes.Count(b, []byte(`"msg":"convergence incomplete"`)), nil
}

func (a *agent) withLog(err error) error {
	b, _ := os.ReadFile(a.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Errorf("%w\nagent log (tail):\n%s", err, b)
}

// stop ends the agent, then the dnsmasq it started (by the pid files).
func (a *agent) stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = a.cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = a.cmd.Process.Kill()
			<-exited
		}
		a.cmd = nil
	}
	if a.logf != nil {
		a.logf.Close()
		a.logf = nil
	}
	pids, _ := filepath.Glob(filepath.Join(a.dir, "dhcp", "*", "*.pid"))
	for _, p := range pids {
		if b, err := os.ReadFile(p); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// deleteNamespace kills what is left running in the namespace (processes
// the agent started) and deletes it.
func deleteNamespace(name string) {
	for range 50 {
		out, err := exec.Command("ip", "netns", "pids", name).Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			break
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd("ip", "netns", "del", name); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}
