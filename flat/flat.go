// Package flat is the public face of the flat host driver: instances are
// plugged into a bridge the operator made (the network's bridge); the
// driver makes nothing, runs no dnsmasq (addresses are injected into the
// instances), and only checks that the bridge is there (else
// hostnet.ErrNoBridge). Its flags in network-host: none of its own (the
// bridge is the network's).
//
// The driver itself is hostnet/flat.go, beside the other drivers and their
// shared part (docs/decisions/011-host-in-two-layers.md); this package is
// its constructor and its tests.
package flat

import (
	"fmt"

	"novanet/hostnet"
	"novanet/linuxnet/link"
)

// New returns the flat driver over the links of one namespace. cfg is not
// needed by flat mode but taken for symmetry with the other drivers.
func New(cfg hostnet.Config, links *link.Manager) (hostnet.Driver, error) {
	if links == nil {
		return nil, fmt.Errorf("flat: %w: no links", hostnet.ErrInvalidConfig)
	}
	cfg.Driver = hostnet.DriverFlat
	return hostnet.NewDriver(cfg, links, nil)
}
