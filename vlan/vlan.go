// Package vlan is the VLAN host driver: per network (one per project) a
// segment link on the VLAN interface — an 802.1Q link vlan<ID>, or with
// Config.VLANSegment "vxlan" a VXLAN link vxlan<ID> (VNI = the VLAN id) —
// enslaved to the network's own bridge, which carries the gateway address,
// and the network's own dnsmasq.
package vlan

import (
	"context"
	"errors"
	"fmt"

	"novanet/hostnet"
	"novanet/ifname"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// Segment kinds (Config.VLANSegment).
const (
	SegmentVLAN  = "vlan"
	SegmentVXLAN = "vxlan"
)

// Links is the part of the link layer the driver uses; *hostnet.Links
// implements it.
type Links interface {
	Stat(ctx context.Context, name string) (link.State, error)
	EnsureBridge(ctx context.Context, c link.BridgeConfig) (link.State, error)
	Enslave(ctx context.Context, bridge, iface string, o link.EnslaveOptions) error
	EnsureVLAN(ctx context.Context, parent string, id uint16, mtu int) (string, error)
	EnsureVXLAN(ctx context.Context, c link.VXLANConfig) (string, error)
	Delete(ctx context.Context, name string) error
}

// Driver implements hostnet.Driver for VLAN mode.
type Driver struct {
	cfg     hostnet.Config
	segment string
	links   Links
	dhcp    hostnet.DHCP
}

var _ hostnet.Driver = (*Driver)(nil)

// New returns the vlan driver. cfg.VLANSegment must be "", "vlan" or
// "vxlan"; cfg.VLANInterface, when set, must be a valid name (networks
// without a bridge interface need it); cfg.DHCPDir must be a clean absolute
// path.
func New(cfg hostnet.Config, links Links, dhcp hostnet.DHCP) (*Driver, error) {
	if links == nil || dhcp == nil {
		return nil, fmt.Errorf("vlan: %w: links and dhcp are required", hostnet.ErrInvalidConfig)
	}
	seg := cfg.VLANSegment
	switch seg {
	case "", SegmentVLAN:
		seg = SegmentVLAN
	case SegmentVXLAN:
	default:
		return nil, fmt.Errorf("vlan: %w: segment %q: want vlan or vxlan", hostnet.ErrInvalidConfig, cfg.VLANSegment)
	}
	if cfg.VLANInterface != "" {
		if err := ifname.Validate(cfg.VLANInterface); err != nil {
			return nil, fmt.Errorf("vlan: %w: vlan interface: %w", hostnet.ErrInvalidConfig, err)
		}
	}
	if _, err := hostnet.NewDHCPServers(cfg.DHCPDir); err != nil {
		return nil, fmt.Errorf("vlan: %w", err)
	}
	return &Driver{cfg: cfg, segment: seg, links: links, dhcp: dhcp}, nil
}

// Name returns "vlan".
func (d *Driver) Name() string { return hostnet.DriverVLAN }

// Plan returns the record of n: its bridge (owned), its segment link and
// its dnsmasq (named even when DHCP is disabled).
func (d *Driver) Plan(n rpc.HostNetwork) (hostnet.Record, error) {
	net, err := hostnet.ParseNetwork(n)
	if err != nil {
		return hostnet.Record{}, err
	}
	rec, _, err := d.plan(net)
	return rec, err
}

func (d *Driver) plan(n hostnet.Network) (rec hostnet.Record, parent string, err error) {
	if n.VLAN == 0 {
		return hostnet.Record{}, "", fmt.Errorf("%w: %s: no vlan id", hostnet.ErrInvalidNetwork, n)
	}
	parent = n.BridgeIf
	if parent == "" {
		parent = d.cfg.VLANInterface
	}
	if parent == "" {
		return hostnet.Record{}, "", fmt.Errorf("%w: %s: no bridge interface and no vlan interface configured", hostnet.ErrInvalidNetwork, n)
	}
	seg := link.VLANName(n.VLAN)
	if d.segment == SegmentVXLAN {
		seg = link.VXLANName(uint32(n.VLAN))
	}
	if seg == n.Bridge || parent == n.Bridge {
		return hostnet.Record{}, "", fmt.Errorf("%w: %s: bridge name clashes with segment %s on %s", hostnet.ErrInvalidNetwork, n, seg, parent)
	}
	return hostnet.Record{
		NetworkID:   n.ID,
		Driver:      hostnet.DriverVLAN,
		Bridge:      n.Bridge,
		BridgeOwned: true,
		Segment:     seg,
		DHCP:        hostnet.DHCPName(n.ID, n.Bridge),
	}, parent, nil
}

// Setup makes the segment on the VLAN interface, the bridge (up, MTU,
// gateway address) with the segment enslaved, and runs (or, with DHCP
// disabled, stops) the network's dnsmasq. With 802.1Q segments on a kernel
// without 802.1Q the error wraps link.ErrUnsupported.
func (d *Driver) Setup(ctx context.Context, n rpc.HostNetwork) ([]string, error) {
	net, err := hostnet.ParseNetwork(n)
	if err != nil {
		return nil, err
	}
	rec, parent, err := d.plan(net)
	if err != nil {
		return nil, err
	}
	var dc dnsmasq.Config
	if net.EnableDHCP {
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
	if err := add(d.ensureSegment(ctx, rec.Segment, parent, net)); err != nil {
		return changes, err
	}
	bc := link.BridgeConfig{Name: net.Bridge, MTU: net.MTU, Addr: net.Gateway}
	if err := add(hostnet.EnsureBridge(ctx, d.links, bc)); err != nil {
		return changes, err
	}
	if err := add(hostnet.EnslavePort(ctx, d.links, net.Bridge, rec.Segment, d.segment+" segment", link.EnslaveOptions{})); err != nil {
		return changes, err
	}
	if err := add(nil, hostnet.SettleBridgeMTU(ctx, d.links, bc)); err != nil {
		return changes, err
	}
	if net.EnableDHCP {
		err = add(hostnet.EnsureDHCP(ctx, d.dhcp, dc, net))
	} else {
		err = add(hostnet.StopDHCP(ctx, d.dhcp, rec.DHCP, "dhcp disabled"))
	}
	return changes, err
}

func (d *Driver) ensureSegment(ctx context.Context, name, parent string, n hostnet.Network) ([]string, error) {
	before, err := d.links.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	ensure := func() error {
		if d.segment == SegmentVXLAN {
			_, err := d.links.EnsureVXLAN(ctx, link.VXLANConfig{
				Parent: parent, VNI: uint32(n.VLAN), Group: d.cfg.VXLANGroup, Port: d.cfg.VXLANPort, MTU: n.MTU,
			})
			return err
		}
		_, err := d.links.EnsureVLAN(ctx, parent, n.VLAN, n.MTU)
		return err
	}
	var changes []string
	err = ensure()
	if errors.Is(err, link.ErrMismatch) && before.Kind == d.segment {
		// Our segment with other settings (the network's interface or
		// the VXLAN group/port changed): the name is ours (vlan<ID> or
		// vxlan<ID>, in the record), so make it again.
		if err := d.links.Delete(ctx, name); err != nil {
			return nil, err
		}
		if err = ensure(); err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("recreated %s %s on %s (settings changed)", d.segment, name, parent)}, nil
	}
	if err != nil {
		return nil, err
	}
	switch {
	case !before.Exists:
		changes = append(changes, fmt.Sprintf("created %s %s on %s", d.segment, name, parent))
	case !before.Up:
		changes = append(changes, fmt.Sprintf("set %s up", name))
	}
	if before.Exists && n.MTU != 0 && before.MTU != n.MTU {
		changes = append(changes, fmt.Sprintf("set %s mtu %d (was %d)", name, n.MTU, before.MTU))
	}
	return changes, nil
}

// Teardown stops the dnsmasq and removes its directory, deletes the bridge
// and the segment link.
func (d *Driver) Teardown(ctx context.Context, rec hostnet.Record) ([]string, error) {
	return hostnet.TeardownBridged(ctx, d.links, d.dhcp, hostnet.DriverVLAN, rec)
}
