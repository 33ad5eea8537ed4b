package hostnettest

import (
	"context"
	"maps"
	"slices"

	"novanet/hostnet"
	"novanet/rpc"
)

// Agent converges a driver to a list of networks the way the real agent
// does, keeping the records in memory: it plans every network, tears down
// records that changed or whose network is gone, then sets up every
// network.
type Agent struct {
	Driver  hostnet.Driver
	Records map[int64]hostnet.Record
}

// NewAgent returns an Agent with no records.
func NewAgent(d hostnet.Driver) *Agent {
	return &Agent{Driver: d, Records: map[int64]hostnet.Record{}}
}

// Converge makes the host serve exactly nets and returns every change the
// driver reported.
func (a *Agent) Converge(ctx context.Context, nets []rpc.HostNetwork) ([]string, error) {
	plans := map[int64]hostnet.Record{}
	for _, n := range nets {
		rec, err := a.Driver.Plan(n)
		if err != nil {
			return nil, err
		}
		plans[n.ID] = rec
	}
	var changes []string
	for _, id := range slices.Sorted(maps.Keys(a.Records)) {
		rec := a.Records[id]
		if p, ok := plans[id]; ok && p == rec {
			continue
		}
		c, err := a.Driver.Teardown(ctx, rec)
		changes = append(changes, c...)
		if err != nil {
			return changes, err
		}
		delete(a.Records, id)
	}
	for _, n := range nets {
		a.Records[n.ID] = plans[n.ID] // stored before Setup, as the agent does
		c, err := a.Driver.Setup(ctx, n)
		changes = append(changes, c...)
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}
