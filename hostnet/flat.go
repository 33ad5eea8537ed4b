package hostnet

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoBridge is returned (wrapped) by the flat driver's Setup when the
// operator's bridge is missing or is not a bridge.
var ErrNoBridge = errors.New("flat mode uses the operator's bridge; create it or use flatdhcp")

// flatDriver is the flat driver: instances are plugged into a bridge the
// operator made (the network's bridge); it makes nothing, runs no dnsmasq
// (addresses are injected into the instances), and only checks that the
// bridge is there.
type flatDriver struct {
	k kernel
}

func newFlat(k kernel) *flatDriver { return &flatDriver{k: k} }

func (d *flatDriver) Name() string { return DriverFlat }

// Plan returns the record of network n: the operator's bridge, not owned.
func (d *flatDriver) Plan(n Network) (Record, error) {
	return Record{NetworkID: n.ID, Driver: DriverFlat, Bridge: n.Bridge}, nil
}

// Setup checks that the bridge of n exists. It changes nothing and so
// always returns nil changes.
func (d *flatDriver) Setup(ctx context.Context, n Network) ([]string, error) {
	st, err := d.k.Stat(ctx, n.Bridge)
	if err != nil {
		return nil, named(n, err)
	}
	if !st.Exists {
		return nil, named(n, fmt.Errorf("bridge %s does not exist: %w", n.Bridge, ErrNoBridge))
	}
	if st.Kind != "bridge" {
		return nil, named(n, fmt.Errorf("%s is a %s, not a bridge: %w", n.Bridge, st.Kind, ErrNoBridge))
	}
	return nil, nil
}

// Teardown removes nothing: the bridge is the operator's.
func (d *flatDriver) Teardown(ctx context.Context, rec Record) ([]string, error) {
	if rec.Driver != "" && rec.Driver != DriverFlat {
		return nil, named(rec, fmt.Errorf("teardown: %w: record of driver %q, not flat", ErrInvalidConfig, rec.Driver))
	}
	return nil, nil
}
