package clustertest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap/zaptest"

	"novanet/agent"
	"novanet/client"
	"novanet/hostnet"
	"novanet/internal/natsconn"
	"novanet/internal/pgtest"
	"novanet/internal/poll"
	"novanet/manager"
	"novanet/natsauth"
	"novanet/natsembed"
	"novanet/rpc"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const agentHost = "hv1"

// recordingDriver stands in for the kernel: it remembers the MACs of the
// DHCP hosts it was last asked to serve.
type recordingDriver struct {
	mu     sync.Mutex
	macs   map[string]bool
	setups int
}

func (d *recordingDriver) Name() string { return "flatdhcp" }

func (d *recordingDriver) Plan(n hostnet.Network) (hostnet.Record, error) {
	return hostnet.Record{NetworkID: n.ID, Driver: "flatdhcp", Bridge: n.Bridge, BridgeOwned: true, DHCP: n.Bridge}, nil
}

func (d *recordingDriver) Setup(_ context.Context, n hostnet.Network) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setups++
	d.macs = map[string]bool{}
	for _, h := range n.Hosts {
		d.macs[h.MAC.String()] = true
	}
	return nil, nil
}

func (d *recordingDriver) Teardown(context.Context, hostnet.Record) ([]string, error) {
	return nil, nil
}

func (d *recordingDriver) serves(mac string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.macs[strings.ToLower(mac)]
}

type noHost struct{}

func (noHost) Apply(context.Context, []hostnet.Network, []rpc.HostFloatingIP) ([]string, error) {
	return nil, nil
}

// replica is one manager process: its own NATS connection and pool.
type replica struct {
	name string
	nc   *nats.Conn
	svc  *manager.Service
}

// served is how many allocate_for_instance requests the replica answered.
func (r *replica) served() int {
	for _, e := range r.svc.Stats().Endpoints {
		if e.Subject == rpc.Subject(rpc.MethodAllocateForInstance) {
			return e.NumRequests
		}
	}
	return 0
}

type world struct {
	nodes    map[string]*natsembed.Server
	order    []string
	replicas []*replica
	agentNC  *nats.Conn
	driver   *recordingDriver
	dbURL    string
	// store holds the identities, as "network-manager creds" keeps them;
	// every node serves its authorization block.
	store natsauth.Store
}

// identity names one of the store's identities.
type identity struct {
	kind natsauth.Kind
	name string
}

var (
	operatorID = identity{natsauth.KindOperator, "admin"}
	computeID  = identity{natsauth.KindCompute, "nova"}
	hv1        = identity{natsauth.KindHost, agentHost}
)

// issue creates the identities of the test and the authorization block.
func (w *world) issue(t *testing.T) {
	t.Helper()
	w.store = natsauth.Store{Dir: t.TempDir()}
	for _, id := range []identity{{natsauth.KindManager, "m1"}, {natsauth.KindManager, "m2"}, hv1, computeID, operatorID} {
		if _, err := w.store.Add(id.kind, id.name); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.store.WriteConfig(); err != nil {
		t.Fatal(err)
	}
}

// startNodes starts nodes a, b and c clustered on loopback, each with the
// generated authorization block (anonymous clients refused): b and c route
// to a, which tells each of the other.
func (w *world) startNodes(t *testing.T) {
	w.issue(t)
	w.nodes, w.order = map[string]*natsembed.Server{}, []string{"a", "b", "c"}
	var seed string
	for _, name := range w.order {
		cl := natsembed.Cluster{Name: "novanet-test", Listen: "127.0.0.1:0"}
		if seed != "" {
			cl.Routes = []string{seed}
		}
		s, err := natsembed.Start("127.0.0.1:0", natsembed.WithServerName(name), natsembed.WithCluster(cl),
			natsembed.WithAuthFile(w.store.ConfigPath()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		if seed == "" {
			seed = s.RouteURL()
		}
		w.nodes[name] = s
	}
	for _, name := range w.order {
		s := w.nodes[name]
		poll.Until(t, "node "+name+" routed to both others", func() bool { return s.Peers() == 2 })
	}
}

// connect opens a client connection as id that tries the nodes in order,
// first its home node: what an operator's comma-separated --nats-url does,
// with the helper and options the binaries use (reconnect for ever).
func (w *world) connect(t *testing.T, name string, id identity, nodes ...string) *nats.Conn {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, w.nodes[n].ClientURL())
	}
	nc, err := natsconn.Options{NKey: w.store.SeedPath(id.kind, id.name)}.Connect(strings.Join(urls, ","), name,
		nats.DontRandomize(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (w *world) addReplica(t *testing.T, name string, nodes ...string) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	m, err := manager.New(pool, zaptest.NewLogger(t).Named(name), manager.Config{Mode: manager.ModeFlatDHCP, Version: "0.0.0-" + name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc := w.connect(t, name, identity{natsauth.KindManager, name}, nodes...)
	svc, err := m.Serve(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	w.replicas = append(w.replicas, &replica{name: name, nc: nc, svc: svc})
}

// startAgent runs the real agent on nodes, with heartbeats and periodic
// convergence an hour apart: whatever it sets up during the test, a
// notice from a manager made it do.
func (w *world) startAgent(t *testing.T, nodes ...string) {
	t.Helper()
	w.driver = &recordingDriver{}
	w.agentNC = w.connect(t, "network-host "+agentHost, hv1, nodes...)
	a, err := agent.New(agent.Config{Host: agentHost, Driver: "flatdhcp", Version: "0.0.0-test", StateDir: t.TempDir(),
		HeartbeatInterval: time.Hour, ConvergeInterval: time.Hour},
		zaptest.NewLogger(t).Named("agent"), client.New(w.agentNC, 20*time.Second), w.driver, noHost{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, w.agentNC) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
}

// waitSubscribed waits until every live node knows of both replicas'
// subscriptions to every manager endpoint and of the agent's (once
// started) to its own subjects: a request from any node then finds them all.
func (w *world) waitSubscribed(t *testing.T) {
	t.Helper()
	var manager []string
	for _, e := range w.replicas[0].svc.Info().Endpoints {
		// A subject a publisher would use: the host-facing endpoints
		// (novanet.manager.host.*.<method>) for our agent's host.
		manager = append(manager, strings.ReplaceAll(e.Subject, ".*.", "."+agentHost+"."))
	}
	var host []string
	for _, m := range rpc.HostMethods {
		if w.driver == nil { // no agent yet
			break
		}
		host = append(host, rpc.HostSubject(agentHost, m))
	}
	for _, name := range w.order {
		s := w.nodes[name]
		if s == nil {
			continue
		}
		for _, subj := range manager {
			poll.Until(t, "node "+name+" to know both replicas on "+subj, func() bool { return s.Interest(subj) == len(w.replicas) })
		}
		for _, subj := range host {
			poll.Until(t, "node "+name+" to know the agent on "+subj, func() bool { return s.Interest(subj) == 1 })
		}
	}
}

// kill shuts a node down. during runs at once, while the clients of the
// dead node reconnect. kill then waits until every connection it held is
// back on another node, with its subscriptions re-sent (Flush returns once
// the new server has processed them), and every node knows them again.
func (w *world) kill(t *testing.T, name string, during func()) {
	t.Helper()
	s := w.nodes[name]
	s.Shutdown()
	delete(w.nodes, name)
	during()
	for _, name := range w.order {
		if o := w.nodes[name]; o != nil {
			poll.Until(t, "node "+name+" to drop the dead one", func() bool { return o.Peers() == 1 })
		}
	}
	conns := []*nats.Conn{w.agentNC}
	for _, r := range w.replicas {
		conns = append(conns, r.nc)
	}
	for _, nc := range conns {
		poll.Until(t, nc.Opts.Name+" reconnected elsewhere", func() bool {
			return nc.IsConnected() && nc.ConnectedServerName() != s.Name()
		})
		if err := nc.Flush(); err != nil {
			t.Fatalf("%s: flush after reconnect: %v", nc.Opts.Name, err)
		}
	}
	w.waitSubscribed(t)
}

// allocate allocates a new instance on the agent's host and waits until
// the agent has been told: the driver serves the new MAC.
func (w *world) allocate(t *testing.T, c *client.Client) rpc.NetworkInfo {
	t.Helper()
	info := allocateRetrying(t, c)
	mac := info.VIFs[0].MAC
	poll.Until(t, "agent to be told of "+mac, func() bool { return w.driver.serves(mac) })
	return info
}

// allocateRetrying allocates a new instance on the agent's host, retrying
// while the manager is unavailable as a compute service does: a retry
// returns the interfaces of the first attempt.
func allocateRetrying(t *testing.T, c *client.Client) rpc.NetworkInfo {
	t.Helper()
	inst := uuid.NewString()
	req := rpc.AllocateForInstanceRequest{InstanceUUID: inst, ProjectID: "p1", Host: agentHost}
	var (
		info rpc.NetworkInfo
		err  error
	)
	for attempt := 0; attempt < 10; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err = c.AllocateForInstance(ctx, req)
		cancel()
		var re *rpc.Error
		if err == nil || !errors.As(err, &re) || re.Code != rpc.CodeUnavailable {
			break
		}
		t.Logf("allocate %s: %v; retrying", inst, err)
	}
	if err != nil {
		t.Fatalf("allocate %s: %v", inst, err)
	}
	if len(info.VIFs) != 1 || len(info.VIFs[0].FixedIPs) != 1 {
		t.Fatalf("allocate %s: %+v, want one interface with one address", inst, info)
	}
	return info
}

// TestNodeFailure runs the service on a three-node cluster (replica m1 on
// node a, m2 on b, the agent on c, a compute service on a) and kills each
// node in turn, in a fresh cluster each time.
func TestNodeFailure(t *testing.T) {
	for _, victim := range []string{"a", "b", "c"} {
		t.Run("kill "+victim, func(t *testing.T) { nodeFailure(t, victim) })
	}
}

func nodeFailure(t *testing.T, victim string) {
	w := &world{}
	_, w.dbURL = pgtest.NewDB(t)
	w.startNodes(t)
	// Each connection lists every node, its home first.
	w.addReplica(t, "m1", "a", "c", "b")
	w.addReplica(t, "m2", "b", "c", "a")
	compute := client.New(w.connect(t, "compute", computeID, "a", "b", "c"), 20*time.Second)
	// The operator (netadm) creates the network and lists the hosts: a
	// compute identity may not.
	operator := client.New(w.connect(t, "netadm", operatorID, "b"), 20*time.Second)
	// The agent registers once at start (its heartbeat is an hour away):
	// the managers must be reachable from its node first.
	w.waitSubscribed(t)
	w.startAgent(t, "c", "a", "b")
	w.waitSubscribed(t)

	ctx := context.Background()
	if _, err := operator.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/24", NumNetworks: 1, NetworkSize: 256, Label: "net"}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "agent registered", func() bool {
		hosts, err := operator.ListHosts(ctx)
		return err == nil && len(hosts) == 1 && hosts[0].Name == agentHost
	})
	first := w.allocate(t, compute)
	if first.VIFs[0].Network.Host != agentHost {
		t.Fatalf("network given to %q, want %s", first.VIFs[0].Network.Host, agentHost)
	}

	before := map[string]int{}
	for _, r := range w.replicas {
		before[r.name] = r.served()
	}
	// An allocation at the moment of the failure: the compute service's
	// node may be the dead one, its request buffered until it reconnects
	// or lost with the connection (then retried). Its notice may find the
	// agent reconnecting; the agent converges in full once back, and every
	// later notice for the network carries all its addresses.
	var during rpc.NetworkInfo
	w.kill(t, victim, func() { during = allocateRetrying(t, compute) })
	// A compute service on each surviving node allocates: NATS picks a
	// queue member at random, local or across a route, so both replicas
	// answer some of these (the chance that 200 calls all reach one of
	// them is 2^-199), and the agent hears of each.
	var computes []*client.Client
	for _, name := range w.order {
		if w.nodes[name] != nil {
			computes = append(computes, client.New(w.connect(t, "compute on "+name, computeID, name), 20*time.Second))
		}
	}
	computes = append(computes, compute)
	var macs []string
	bothServed := func() bool {
		for _, r := range w.replicas {
			if r.served() == before[r.name] {
				return false
			}
		}
		return true
	}
	for i := 0; i < 200 && (i < 2*len(computes) || !bothServed()); i++ {
		macs = append(macs, w.allocate(t, computes[i%len(computes)]).VIFs[0].MAC)
	}
	for _, r := range w.replicas {
		if r.served() == before[r.name] {
			t.Errorf("replica %s (now on %s) answered no allocation after node %s died", r.name, r.nc.ConnectedServerName(), victim)
		}
	}
	// The agent serves every address allocated, before and after.
	for _, mac := range append(macs, first.VIFs[0].MAC, during.VIFs[0].MAC) {
		if !w.driver.serves(mac) {
			t.Errorf("agent does not serve %s", mac)
		}
	}
}
