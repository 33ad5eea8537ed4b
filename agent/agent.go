// Package agent is network-host's core: it registers the host with the
// manager and keeps it registered, serves the manager's per-host requests
// (setup_network, teardown_network, refresh_dhcp, converge), and converges
// the host to the desired state the manager reports — on start, on each
// request and periodically — through one driver (flat, flatdhcp or vlan),
// the firewall and the floating addresses.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"novanet/client"
	"novanet/hostnet"
	"novanet/rpc"
)

// ServiceName is the agents' name in NATS micro discovery ($SRV.INFO).
const ServiceName = "novanet-host"

// Manager is what the agent asks of the network-manager.
type Manager interface {
	RegisterHost(ctx context.Context, req rpc.RegisterHostRequest) (rpc.HostInfo, error)
	HostState(ctx context.Context, host string, networkID int64) (rpc.HostState, error)
	Call(ctx context.Context, method string, req, reply any) error
}

var _ Manager = (*client.Client)(nil)

// Host is what the agent programs beside the driver: the firewall and the
// floating addresses, both computed from the whole desired state.
type Host interface {
	// Apply makes the firewall and the floating addresses match nets and
	// fips, and returns what it changed.
	Apply(ctx context.Context, nets []hostnet.Network, fips []rpc.HostFloatingIP) ([]string, error)
}

// Config tunes an Agent.
type Config struct {
	Host     string
	Driver   string
	Version  string
	StateDir string
	// HeartbeatInterval: how often the agent re-registers; default
	// rpc.DefaultHeartbeatSec seconds.
	HeartbeatInterval time.Duration
	// ConvergeInterval: how often the whole host is converged; default 60s.
	ConvergeInterval time.Duration
	// ReconnectSpread: after a NATS reconnection the agent registers and
	// converges after a random delay up to this long (at most half of
	// ConvergeInterval), so that a fleet reconnecting at once does not
	// ask at once; default 10s.
	ReconnectSpread time.Duration
}

// Agent converges one host.
type Agent struct {
	cfg   Config
	log   *zap.Logger
	mgr   Manager
	drv   hostnet.Driver
	host  Host
	store *store

	// mu makes convergences one at a time, each from one consistent
	// state: the desired state is read from the manager under it, so an
	// older state is never applied after a newer one.
	mu sync.Mutex
	// desired is the last desired state seen, by network, parsed; fips the
	// floating IPs. Both feed the firewall, which is computed whole.
	desired map[int64]hostnet.Network
	fips    []rpc.HostFloatingIP
	synced  bool // a full convergence has succeeded since start
}

// New returns an agent. drv programs networks; host the firewall and
// floating addresses.
func New(cfg Config, log *zap.Logger, mgr Manager, drv hostnet.Driver, host Host) (*Agent, error) {
	if err := rpc.ValidateHostName(cfg.Host); err != nil {
		return nil, err
	}
	if cfg.Driver != drv.Name() {
		return nil, fmt.Errorf("driver %q configured but %q given", cfg.Driver, drv.Name())
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = rpc.DefaultHeartbeatSec * time.Second
	}
	if cfg.ConvergeInterval <= 0 {
		cfg.ConvergeInterval = time.Minute
	}
	if cfg.ReconnectSpread <= 0 {
		cfg.ReconnectSpread = 10 * time.Second
	}
	cfg.ReconnectSpread = min(cfg.ReconnectSpread, cfg.ConvergeInterval/2)
	st, err := newStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: log, mgr: mgr, drv: drv, host: host, store: st, desired: map[int64]hostnet.Network{}}, nil
}

// Report is what one convergence did.
type Report struct {
	Changes []string // what was created, removed or repaired
	Errors  []error  // what could not be done; the rest was
}

func (r *Report) add(changes []string, err error) {
	r.Changes = append(r.Changes, changes...)
	if err != nil {
		r.Errors = append(r.Errors, err)
	}
}

// err is every error of the report, joined (nil when there is none).
func (r Report) err() error { return errors.Join(r.Errors...) }

// Converge makes the whole host match the manager's desired state: every
// network it should serve is set up, every network of ours it should not
// serve is torn down (from the records, even when the manager no longer
// knows the network), and the firewall and floating addresses match. One
// network's failure does not stop the others; the error joins every
// failure. A network the host cannot use (hostnet.ParseNetwork refuses it)
// is an error of the report; what was made for it stays, its record and
// its firewall rules from the last state that parsed included.
func (a *Agent) Converge(ctx context.Context) (Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.mgr.HostState(ctx, a.cfg.Host, 0)
	if err != nil {
		return Report{}, fmt.Errorf("desired state of %s: %w", a.cfg.Host, err)
	}
	var rep Report
	recs, err := a.store.list()
	if err != nil {
		return rep, err
	}
	nets, err := hostnet.ParseNetworks(st.Networks)
	rep.add(nil, err)
	listed := map[int64]bool{}
	for _, n := range st.Networks {
		listed[n.ID] = true
	}
	want := map[int64]hostnet.Network{}
	for id := range listed {
		if old, ok := a.desired[id]; ok {
			want[id] = old // replaced below unless it no longer parses
		}
	}
	for _, n := range nets {
		want[n.ID] = n
	}
	// Set first: teardowns and setups look up which networks share a
	// bridge in it.
	a.desired, a.fips = want, st.FloatingIPs
	for _, rec := range recs {
		if !listed[rec.NetworkID] {
			rep.add(a.teardown(ctx, rec))
		}
	}
	for _, n := range nets {
		rep.add(a.setup(ctx, n))
	}
	// A full convergence rewrites the whole firewall, repairing rules
	// changed behind our back; a per-network one only patches.
	if r, ok := a.host.(interface{ Resync() }); ok {
		r.Resync()
	}
	rep.add(a.applyHost(ctx))
	if len(rep.Errors) == 0 {
		a.synced = true
	}
	return rep, rep.err()
}

// ConvergeNetwork brings one network to its desired state on this host:
// set up when the manager says the host serves it, torn down when not.
// The firewall is recomputed from the whole state.
func (a *Agent) ConvergeNetwork(ctx context.Context, id int64) (Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.mgr.HostState(ctx, a.cfg.Host, id)
	if err != nil {
		return Report{}, fmt.Errorf("desired state of network %d on %s: %w", id, a.cfg.Host, err)
	}
	var rep Report
	if len(st.Networks) == 1 && st.Networks[0].ID == id {
		if n, err := hostnet.ParseNetwork(st.Networks[0]); err != nil {
			rep.add(nil, err)
		} else {
			a.desired[id] = n
			rep.add(a.setup(ctx, n))
		}
	} else {
		delete(a.desired, id)
		rec, err := a.store.get(id)
		switch {
		case errors.Is(err, errMissing): // never set up here
		case err != nil:
			rep.add(nil, err)
		default:
			rep.add(a.teardown(ctx, rec))
		}
	}
	a.fips = st.FloatingIPs
	rep.add(a.applyHost(ctx))
	return rep, rep.err()
}

// setup records, then sets up, one network, with the other desired
// networks on its bridge as its peers. A network whose plan changed (new
// bridge name, say) is torn down under its old record first. The driver's
// errors name the network already.
func (a *Agent) setup(ctx context.Context, n hostnet.Network) ([]string, error) {
	for _, m := range hostnet.ShareBridges(a.desiredList()) {
		if m.ID == n.ID {
			n = m
		}
	}
	rec, err := a.drv.Plan(n)
	if err != nil {
		return nil, err
	}
	var changes []string
	old, err := a.store.get(n.ID)
	if err == nil && !old.Gateway.IsValid() {
		// Written before records named the gateway: not a new plan.
		old.Gateway = rec.Gateway
	}
	if err == nil && !old.GatewayV6.IsValid() {
		// Written before records named the IPv6 gateway: not a new
		// plan (the setup below adds the address).
		old.GatewayV6 = rec.GatewayV6
	}
	switch {
	case err == nil && old != rec:
		ch, err := a.teardown(ctx, old)
		changes = append(changes, ch...)
		if err != nil {
			return changes, err
		}
	case err != nil && !errors.Is(err, errMissing):
		return nil, err
	}
	if err := a.store.put(rec); err != nil {
		return changes, err
	}
	ch, err := a.drv.Setup(ctx, n)
	return append(changes, ch...), err
}

// teardown tears down rec, keeping its bridge and dnsmasq for the desired
// networks that share them (hostnet.TeardownAmong), and removes the record.
func (a *Agent) teardown(ctx context.Context, rec hostnet.Record) ([]string, error) {
	changes, err := hostnet.TeardownAmong(ctx, a.drv, rec, a.desiredList())
	if err != nil {
		return changes, err
	}
	return changes, a.store.remove(rec.NetworkID)
}

// desiredList is a.desired by ID.
func (a *Agent) desiredList() []hostnet.Network {
	return slices.SortedFunc(maps.Values(a.desired), func(x, y hostnet.Network) int { return cmp.Compare(x.ID, y.ID) })
}

func (a *Agent) applyHost(ctx context.Context) ([]string, error) {
	return a.host.Apply(ctx, a.desiredList(), a.fips)
}

// register announces the host; it is also the heartbeat.
func (a *Agent) register(ctx context.Context) error {
	_, err := a.mgr.RegisterHost(ctx, rpc.RegisterHostRequest{Host: a.cfg.Host, Driver: a.cfg.Driver, Version: a.cfg.Version})
	return err
}

// Serve registers the agent's endpoints on nc: novanet.host.<host>.<method>.
func (a *Agent) Serve(ctx context.Context, nc *nats.Conn) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     a.cfg.Version,
		Description: "novanet agent on " + a.cfg.Host + " (" + a.cfg.Driver + ")",
		Metadata:    map[string]string{"host": a.cfg.Host, "driver": a.cfg.Driver},
		// Each agent answers for its own host only.
		QueueGroup: ServiceName + "." + a.cfg.Host,
	})
	if err != nil {
		return nil, fmt.Errorf("add micro service: %w", err)
	}
	g := svc.AddGroup(rpc.HostPrefix + "." + a.cfg.Host)
	for _, m := range rpc.HostMethods {
		if err := g.AddEndpoint(m, a.handler(ctx, m)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("add endpoint %s: %w", m, err)
		}
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("flush subscriptions: %w", err)
	}
	return svc, nil
}

// handler serves one method. Convergence is serialized by a.mu, so the
// handler does its work inline: a request waits for the one before it.
func (a *Agent) handler(ctx context.Context, method string) micro.Handler {
	if method == rpc.HostMethodDescribe {
		return a.describeHandler(ctx)
	}
	return micro.HandlerFunc(func(req micro.Request) {
		var body rpc.HostNetworkRequest
		if err := rpc.Decode(req.Data(), &body); err != nil {
			_ = rpc.RespondError(req, replyError(method, a.cfg.Host, err))
			return
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var (
			rep Report
			err error
		)
		switch {
		case method == rpc.HostMethodConverge:
			rep, err = a.Converge(rctx)
			a.reportConvergence(rctx, method, rep, err)
		case body.NetworkID <= 0:
			_ = rpc.RespondError(req, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: "network_id is required", Field: "network_id"})
			return
		default:
			rep, err = a.ConvergeNetwork(rctx, body.NetworkID)
		}
		a.logReport(method, body.NetworkID, rep, err)
		if err != nil {
			_ = rpc.RespondError(req, replyError(method, a.cfg.Host, err))
			return
		}
		_ = req.RespondJSON(rpc.HostActionReply{Changes: nonNil(rep.Changes)})
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *Agent) logReport(what string, network int64, rep Report, err error) {
	fields := []zap.Field{zap.String("trigger", what)}
	if network != 0 {
		fields = append(fields, zap.Int64("network", network))
	}
	if len(rep.Changes) > 0 {
		a.log.Info("host changed", append(fields, zap.Strings("changes", rep.Changes))...)
	}
	if err != nil {
		a.log.Warn("convergence incomplete", append(fields, zap.Int("problems", len(rep.Errors)), zap.Error(err))...)
	}
}

// Run registers the host, serves the manager's requests on nc, converges
// the host, then heartbeats and converges periodically, and after every
// NATS reconnection, until ctx ends. The first registration and
// convergence are retried at each heartbeat until they succeed: a manager
// that is not up yet is waited for. Against storms: the timers are
// jittered (±20%), so that agents started together spread out; a
// heartbeat that fails does not make the next one converge in full (the
// manager keeps the state, the periodic convergence repairs anything
// missed); no heartbeat is sent while the connection is down (it would
// wait in the reconnect buffer and go out with every other one at the
// reconnection); and the convergence after a reconnection waits a random
// part of ReconnectSpread.
func (a *Agent) Run(ctx context.Context, nc *nats.Conn) error {
	svc, err := a.Serve(ctx, nc)
	if err != nil {
		return err
	}
	defer func() { _ = svc.Stop() }()

	// Notices sent while the connection was down (a NATS node failing
	// over, say) found no one: converge in full once it is back.
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)

	heartbeat := time.NewTimer(jitter(a.cfg.HeartbeatInterval))
	defer heartbeat.Stop()
	converge := time.NewTimer(jitter(a.cfg.ConvergeInterval))
	defer converge.Stop()
	resync := time.NewTimer(time.Hour)
	resync.Stop()
	defer resync.Stop()

	registered := false
	tryRegister := func() {
		if err := a.register(ctx); err != nil {
			a.log.Warn("register with the manager", zap.Error(err))
			registered = false
			return
		}
		if !registered {
			a.log.Info("registered", zap.String("host", a.cfg.Host), zap.String("driver", a.cfg.Driver))
		}
		registered = true
	}
	tryConverge := func(trigger string) {
		rep, err := a.Converge(ctx)
		a.logReport(trigger, 0, rep, err)
		a.reportConvergence(ctx, trigger, rep, err)
	}
	tryRegister()
	if registered {
		tryConverge("start")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
			heartbeat.Reset(jitter(a.cfg.HeartbeatInterval))
			if !nc.IsConnected() {
				continue // the reconnection registers
			}
			tryRegister()
			if registered && !a.isSynced() {
				tryConverge("start")
			}
		case <-converge.C:
			converge.Reset(jitter(a.cfg.ConvergeInterval))
			if registered {
				tryConverge("periodic")
			}
		case <-reconnected:
			resync.Reset(rand.N(a.cfg.ReconnectSpread) + time.Millisecond)
		case <-resync.C:
			tryRegister()
			if registered {
				tryConverge("reconnect")
			}
		}
	}
}

// jitter is d give or take up to 20%, at random.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}

func (a *Agent) isSynced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.synced
}
