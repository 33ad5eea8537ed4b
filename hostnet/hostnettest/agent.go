package hostnettest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"novanet/hostnet"
	"novanet/internal/golden"
	"novanet/rpc"
)

// Agent converges a driver to a list of networks the way the real agent
// does, keeping the records in memory: it parses every network once,
// plans it, tears down records that changed or whose network is gone, then
// sets up every network.
type Agent struct {
	Driver  Driver
	Records map[int64]hostnet.Record
}

// NewAgent returns an Agent with no records.
func NewAgent(d hostnet.Driver) *Agent {
	return &Agent{Driver: Driver{d}, Records: map[int64]hostnet.Record{}}
}

// Driver is a hostnet.Driver that takes the manager's rpc.HostNetwork and
// parses it as the agent does, so that the tests keep their networks in the
// wire form.
type Driver struct{ hostnet.Driver }

// Plan parses n and plans it.
func (d Driver) Plan(n rpc.HostNetwork) (hostnet.Record, error) {
	p, err := hostnet.ParseNetwork(n)
	if err != nil {
		return hostnet.Record{}, err
	}
	return d.Driver.Plan(p)
}

// Setup parses n and sets it up.
func (d Driver) Setup(ctx context.Context, n rpc.HostNetwork) ([]string, error) {
	p, err := hostnet.ParseNetwork(n)
	if err != nil {
		return nil, err
	}
	return d.Driver.Setup(ctx, p)
}

// Converge makes the host serve exactly nets and returns every change the
// driver reported.
func (a *Agent) Converge(ctx context.Context, nets []rpc.HostNetwork) ([]string, error) {
	plans := map[int64]hostnet.Record{}
	parsed := make([]hostnet.Network, 0, len(nets))
	for _, n := range nets {
		p, err := hostnet.ParseNetwork(n)
		if err != nil {
			return nil, err
		}
		rec, err := a.Driver.Driver.Plan(p)
		if err != nil {
			return nil, err
		}
		plans[n.ID] = rec
		parsed = append(parsed, p)
	}
	parsed = hostnet.ShareBridges(parsed)
	var changes []string
	for _, id := range slices.Sorted(maps.Keys(a.Records)) {
		rec := a.Records[id]
		if p, ok := plans[id]; ok && p == rec {
			continue
		}
		c, err := hostnet.TeardownAmong(ctx, a.Driver.Driver, rec, parsed)
		changes = append(changes, c...)
		if err != nil {
			return changes, err
		}
		delete(a.Records, id)
	}
	for _, n := range parsed {
		a.Records[n.ID] = plans[n.ID] // stored before Setup, as the agent does
		c, err := a.Driver.Driver.Setup(ctx, n)
		changes = append(changes, c...)
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}

// State is one desired state of a host in a state table: its networks.
type State struct {
	Name string
	Nets []rpc.HostNetwork
}

// OS is a fake host: in-memory links and dnsmasq instances, and an agent
// running one driver on them.
type OS struct {
	Links *Links
	DHCP  *DHCP
	Agent *Agent
}

// NewOS returns a host with the given physical devices (see NewLinks)
// running the driver of cfg.
func NewOS(t *testing.T, cfg hostnet.Config, devices ...string) *OS {
	t.Helper()
	o := &OS{Links: NewLinks(devices...), DHCP: NewDHCP()}
	d, err := hostnet.NewDriver(cfg, o.Links, o.DHCP)
	if err != nil {
		t.Fatal(err)
	}
	o.Agent = NewAgent(d)
	return o
}

// Dump renders the host's links and dnsmasq instances as text.
func (o *OS) Dump() string { return o.Links.Dump() + o.DHCP.Dump() }

// CheckStates is the state-table test of a driver. It applies the states
// in order on one host made by newOS, checks the host after each against
// the golden file testdata/<goldenName> and that converging again changes
// nothing, and that each state is what a fresh host reaches; then it walks
// 60 random transitions (from the given seed) and checks that every state
// is reached cleanly.
func CheckStates(t *testing.T, newOS func(t *testing.T) *OS, states []State, goldenName string, seed1, seed2 uint64) {
	t.Helper()
	o := newOS(t)
	want := map[string]string{}
	var all strings.Builder
	for _, s := range states {
		changes, err := o.Agent.Converge(t.Context(), s.Nets)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		fmt.Fprintf(&all, "== %s\n-- changes\n%s\n-- state\n%s", s.Name, strings.Join(changes, "\n"), o.Dump())
		if again, err := o.Agent.Converge(t.Context(), s.Nets); err != nil || again != nil {
			t.Errorf("%s: converging again = %q, %v; want no changes", s.Name, again, err)
		}
		// The state reached from a fresh host.
		fresh := newOS(t)
		if _, err := fresh.Agent.Converge(t.Context(), s.Nets); err != nil {
			t.Fatalf("%s from scratch: %v", s.Name, err)
		}
		want[s.Name] = fresh.Dump()
		if d := cmp.Diff(want[s.Name], o.Dump()); d != "" {
			t.Errorf("%s: state after the previous one differs from a fresh host (-fresh +got):\n%s", s.Name, d)
		}
	}
	golden.Check(t, goldenName, all.String())

	rng := rand.New(rand.NewPCG(seed1, seed2))
	for i := range 60 {
		s := states[rng.IntN(len(states))]
		if _, err := o.Agent.Converge(t.Context(), s.Nets); err != nil {
			t.Fatalf("transition %d to %s: %v", i, s.Name, err)
		}
		if d := cmp.Diff(want[s.Name], o.Dump()); d != "" {
			t.Fatalf("transition %d to %s (-want +got):\n%s", i, s.Name, d)
		}
	}
}
