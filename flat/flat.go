// Package flat is the flat host driver: instances are plugged into a bridge
// the operator made (network.Bridge); the driver makes nothing, runs no
// dnsmasq (addresses are injected into the instances), and only checks that
// the bridge is there.
package flat

import (
	"context"
	"errors"
	"fmt"

	"novanet/hostnet"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// ErrNoBridge is returned (wrapped) by Setup when the operator's bridge is
// missing or is not a bridge.
var ErrNoBridge = errors.New("flat mode uses the operator's bridge; create it or use flatdhcp")

// Links is what the driver reads: whether the bridge exists.
// *hostnet.Links implements it.
type Links interface {
	Stat(ctx context.Context, name string) (link.State, error)
}

// Driver implements hostnet.Driver for flat mode.
type Driver struct {
	links Links
}

var _ hostnet.Driver = (*Driver)(nil)

// New returns the flat driver. cfg is not needed by flat mode but taken for
// symmetry with the other drivers.
func New(cfg hostnet.Config, links Links) (*Driver, error) {
	if links == nil {
		return nil, fmt.Errorf("flat: %w: no links", hostnet.ErrInvalidConfig)
	}
	return &Driver{links: links}, nil
}

// Name returns "flat".
func (d *Driver) Name() string { return hostnet.DriverFlat }

// Plan returns the record of network n: the operator's bridge, not owned.
func (d *Driver) Plan(n rpc.HostNetwork) (hostnet.Record, error) {
	net, err := hostnet.ParseNetwork(n)
	if err != nil {
		return hostnet.Record{}, err
	}
	return hostnet.Record{NetworkID: net.ID, Driver: hostnet.DriverFlat, Bridge: net.Bridge}, nil
}

// Setup checks that the bridge of n exists. It changes nothing and so
// always returns nil changes.
func (d *Driver) Setup(ctx context.Context, n rpc.HostNetwork) ([]string, error) {
	net, err := hostnet.ParseNetwork(n)
	if err != nil {
		return nil, err
	}
	st, err := d.links.Stat(ctx, net.Bridge)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", net, err)
	}
	if !st.Exists {
		return nil, fmt.Errorf("%s: bridge %s does not exist: %w", net, net.Bridge, ErrNoBridge)
	}
	if st.Kind != "bridge" {
		return nil, fmt.Errorf("%s: %s is a %s, not a bridge: %w", net, net.Bridge, st.Kind, ErrNoBridge)
	}
	return nil, nil
}

// Teardown removes nothing: the bridge is the operator's.
func (d *Driver) Teardown(ctx context.Context, rec hostnet.Record) ([]string, error) {
	if rec.Driver != "" && rec.Driver != hostnet.DriverFlat {
		return nil, fmt.Errorf("network %d: record of driver %q, not flat", rec.NetworkID, rec.Driver)
	}
	return nil, nil
}
