package hostnet

import (
	"context"
	"fmt"

	"novanet/ifname"
	"novanet/linuxnet/link"
)

// flatDHCPDriver is the flat DHCP driver: per network a bridge (the
// network's bridge) that it makes, with the flat interface enslaved (its
// addresses moved to the bridge as nova's ensure_bridge did), the gateway
// address on the bridge, and one dnsmasq serving the network's
// reservations.
type flatDHCPDriver struct {
	bridged
}

// newFlatDHCP checks cfg: cfg.FlatInterface, when set, is enslaved to
// every bridge whose network names no interface; cfg.DHCPDir must be a
// clean absolute path.
func newFlatDHCP(cfg Config, k kernel, dhcp dhcpServers) (*flatDHCPDriver, error) {
	b, err := newBridged(DriverFlatDHCP, cfg, k, dhcp)
	if err != nil {
		return nil, err
	}
	if cfg.FlatInterface != "" {
		if err := ifname.Validate(cfg.FlatInterface); err != nil {
			return nil, fmt.Errorf("flatdhcp: %w: flat interface: %w", ErrInvalidConfig, err)
		}
	}
	return &flatDHCPDriver{b}, nil
}

func (d *flatDHCPDriver) Name() string { return DriverFlatDHCP }

// Plan returns the record of n: its bridge (owned) and its dnsmasq, named
// by DHCPName. The dnsmasq is named even when DHCP is disabled, so that one
// left from before is found.
func (d *flatDHCPDriver) Plan(n Network) (Record, error) {
	return Record{
		NetworkID:   n.ID,
		Driver:      DriverFlatDHCP,
		Bridge:      n.Bridge,
		BridgeOwned: true,
		DHCP:        DHCPName(n.Bridge),
		Gateway:     n.servedGateway(),
		GatewayV6:   n.servedGatewayV6(),
	}, nil
}

// Setup makes the bridge (up, MTU, gateway address), enslaves the flat
// interface (the network's own, else cfg.FlatInterface), and runs (or,
// with DHCP disabled, stops) the network's dnsmasq.
func (d *flatDHCPDriver) Setup(ctx context.Context, n Network) ([]string, error) {
	rec, _ := d.Plan(n)
	iface := n.BridgeIf
	if iface == "" {
		iface = d.cfg.FlatInterface
	}
	changes, err := d.setup(ctx, n, rec, port{name: iface, what: "flat interface", opts: link.EnslaveOptions{MoveAddrs: true}})
	return changes, named(n, err)
}

// Teardown stops the dnsmasq, removes its directory and deletes the bridge
// (when owned). Ports of the bridge stay, released.
func (d *flatDHCPDriver) Teardown(ctx context.Context, rec Record) ([]string, error) {
	changes, err := d.teardown(ctx, DriverFlatDHCP, rec)
	if err != nil {
		err = named(rec, fmt.Errorf("teardown: %w", err))
	}
	return changes, err
}
