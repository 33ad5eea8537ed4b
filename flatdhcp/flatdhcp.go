// Package flatdhcp is the flat DHCP host driver: per network a bridge
// (network.Bridge) that the driver makes, with the flat interface enslaved
// (its addresses moved to the bridge as nova's ensure_bridge did), the
// gateway address on the bridge, and one dnsmasq serving the network's
// reservations.
package flatdhcp

import (
	"context"
	"fmt"

	"novanet/hostnet"
	"novanet/ifname"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// Links is the part of the link layer the driver uses; *hostnet.Links
// implements it.
type Links interface {
	Stat(ctx context.Context, name string) (link.State, error)
	EnsureBridge(ctx context.Context, c link.BridgeConfig) (link.State, error)
	Enslave(ctx context.Context, bridge, iface string, o link.EnslaveOptions) error
	Delete(ctx context.Context, name string) error
}

// Driver implements hostnet.Driver for flat DHCP mode.
type Driver struct {
	cfg   hostnet.Config
	links Links
	dhcp  hostnet.DHCP
}

var _ hostnet.Driver = (*Driver)(nil)

// New returns the flatdhcp driver. cfg.FlatInterface, when set, is
// enslaved to every bridge whose network names no interface; cfg.DHCPDir
// must be a clean absolute path.
func New(cfg hostnet.Config, links Links, dhcp hostnet.DHCP) (*Driver, error) {
	if links == nil || dhcp == nil {
		return nil, fmt.Errorf("flatdhcp: %w: links and dhcp are required", hostnet.ErrInvalidConfig)
	}
	if cfg.FlatInterface != "" {
		if err := ifname.Validate(cfg.FlatInterface); err != nil {
			return nil, fmt.Errorf("flatdhcp: %w: flat interface: %w", hostnet.ErrInvalidConfig, err)
		}
	}
	if _, err := hostnet.NewDHCPServers(cfg.DHCPDir); err != nil {
		return nil, fmt.Errorf("flatdhcp: %w", err)
	}
	return &Driver{cfg: cfg, links: links, dhcp: dhcp}, nil
}

// Name returns "flatdhcp".
func (d *Driver) Name() string { return hostnet.DriverFlatDHCP }

// Plan returns the record of n: its bridge (owned) and its dnsmasq, named
// by hostnet.DHCPName. The dnsmasq is named even when DHCP is disabled, so
// that one left from before is found.
func (d *Driver) Plan(n rpc.HostNetwork) (hostnet.Record, error) {
	net, err := hostnet.ParseNetwork(n)
	if err != nil {
		return hostnet.Record{}, err
	}
	return d.plan(net), nil
}

func (d *Driver) plan(n hostnet.Network) hostnet.Record {
	return hostnet.Record{
		NetworkID:   n.ID,
		Driver:      hostnet.DriverFlatDHCP,
		Bridge:      n.Bridge,
		BridgeOwned: true,
		DHCP:        hostnet.DHCPName(n.ID, n.Bridge),
	}
}

// Setup makes the bridge (up, MTU, gateway address), enslaves the flat
// interface, and runs (or, with DHCP disabled, stops) the network's
// dnsmasq.
func (d *Driver) Setup(ctx context.Context, n rpc.HostNetwork) ([]string, error) {
	net, err := hostnet.ParseNetwork(n)
	if err != nil {
		return nil, err
	}
	rec := d.plan(net)
	var dc dnsmasq.Config
	if net.EnableDHCP {
		// Checked before anything is made.
		if dc, err = hostnet.DHCPConfig(d.cfg, rec.DHCP, net); err != nil {
			return nil, err
		}
	}
	var changes []string
	add := func(c []string, err error) error {
		changes = append(changes, c...)
		if err != nil {
			return fmt.Errorf("%s: %w", net, err)
		}
		return nil
	}
	bc := link.BridgeConfig{Name: net.Bridge, MTU: net.MTU, Addr: net.Gateway}
	if err := add(hostnet.EnsureBridge(ctx, d.links, bc)); err != nil {
		return changes, err
	}
	iface := net.BridgeIf
	if iface == "" {
		iface = d.cfg.FlatInterface
	}
	if iface != "" {
		if err := add(hostnet.EnslavePort(ctx, d.links, net.Bridge, iface, "flat interface", link.EnslaveOptions{MoveAddrs: true})); err != nil {
			return changes, err
		}
		if err := add(nil, hostnet.SettleBridgeMTU(ctx, d.links, bc)); err != nil {
			return changes, err
		}
	}
	if net.EnableDHCP {
		err = add(hostnet.EnsureDHCP(ctx, d.dhcp, dc, net))
	} else {
		err = add(hostnet.StopDHCP(ctx, d.dhcp, rec.DHCP, "dhcp disabled"))
	}
	return changes, err
}

// Teardown stops the dnsmasq, removes its directory and deletes the bridge
// (when owned). Ports of the bridge stay, released.
func (d *Driver) Teardown(ctx context.Context, rec hostnet.Record) ([]string, error) {
	return hostnet.TeardownBridged(ctx, d.links, d.dhcp, hostnet.DriverFlatDHCP, rec)
}
