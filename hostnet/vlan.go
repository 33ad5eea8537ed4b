package hostnet

import (
	"context"
	"errors"
	"fmt"

	"novanet/ifname"
	"novanet/linuxnet/link"
)

// Segment kinds (Config.VLANSegment).
const (
	SegmentVLAN  = "vlan"
	SegmentVXLAN = "vxlan"
)

// vlanDriver is the VLAN driver: per network (one per project) a segment
// link on the VLAN interface — an 802.1Q link vlan<ID>, or with
// Config.VLANSegment "vxlan" a VXLAN link vxlan<ID> (VNI = the VLAN id) —
// enslaved to the network's own bridge, which carries the gateway address,
// and the network's own dnsmasq.
type vlanDriver struct {
	bridged
	segment string // SegmentVLAN or SegmentVXLAN
}

// newVLAN checks cfg: cfg.VLANSegment must be "", "vlan" or "vxlan";
// cfg.VLANInterface, when set, must be a valid name (networks without a
// bridge interface need it); cfg.DHCPDir must be a clean absolute path.
func newVLAN(cfg Config, k kernel, dhcp dhcpServers) (*vlanDriver, error) {
	b, err := newBridged(DriverVLAN, cfg, k, dhcp)
	if err != nil {
		return nil, err
	}
	seg := cfg.VLANSegment
	switch seg {
	case "", SegmentVLAN:
		seg = SegmentVLAN
	case SegmentVXLAN:
	default:
		return nil, fmt.Errorf("vlan: %w: segment %q: want vlan or vxlan", ErrInvalidConfig, cfg.VLANSegment)
	}
	if cfg.VLANInterface != "" {
		if err := ifname.Validate(cfg.VLANInterface); err != nil {
			return nil, fmt.Errorf("vlan: %w: vlan interface: %w", ErrInvalidConfig, err)
		}
	}
	return &vlanDriver{bridged: b, segment: seg}, nil
}

func (d *vlanDriver) Name() string { return DriverVLAN }

// Plan returns the record of n: its bridge (owned), its segment link and
// its dnsmasq (named even when DHCP is disabled).
func (d *vlanDriver) Plan(n Network) (Record, error) {
	rec, _, err := d.plan(n)
	return rec, named(n, err)
}

func (d *vlanDriver) plan(n Network) (rec Record, parent string, err error) {
	if n.VLAN == 0 {
		return Record{}, "", fmt.Errorf("%w: no vlan id", ErrInvalidNetwork)
	}
	parent = n.BridgeIf
	if parent == "" {
		parent = d.cfg.VLANInterface
	}
	if parent == "" {
		return Record{}, "", fmt.Errorf("%w: no bridge interface and no vlan interface configured", ErrInvalidNetwork)
	}
	seg := link.VLANName(n.VLAN)
	if d.segment == SegmentVXLAN {
		seg = link.VXLANName(uint32(n.VLAN))
	}
	if seg == n.Bridge || parent == n.Bridge {
		return Record{}, "", fmt.Errorf("%w: bridge name clashes with segment %s on %s", ErrInvalidNetwork, seg, parent)
	}
	return Record{
		NetworkID:   n.ID,
		Driver:      DriverVLAN,
		Bridge:      n.Bridge,
		BridgeOwned: true,
		Segment:     seg,
		DHCP:        DHCPName(n.Bridge),
		Gateway:     n.servedGateway(),
		GatewayV6:   n.servedGatewayV6(),
	}, parent, nil
}

// Setup makes the segment on the VLAN interface, the bridge (up, MTU,
// gateway address) with the segment enslaved, and runs (or, with DHCP
// disabled, stops) the network's dnsmasq. With 802.1Q segments on a kernel
// without 802.1Q the error wraps link.ErrUnsupported.
func (d *vlanDriver) Setup(ctx context.Context, n Network) ([]string, error) {
	rec, parent, err := d.plan(n)
	if err != nil {
		return nil, named(n, err)
	}
	changes, err := d.setup(ctx, n, rec, port{
		name: rec.Segment, what: d.segment + " segment",
		ensure: func(ctx context.Context) ([]string, error) { return d.ensureSegment(ctx, rec.Segment, parent, n) },
	})
	return changes, named(n, err)
}

func (d *vlanDriver) ensureSegment(ctx context.Context, name, parent string, n Network) ([]string, error) {
	before, err := d.k.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	ensure := func() error {
		if d.segment == SegmentVXLAN {
			_, err := d.k.EnsureVXLAN(ctx, link.VXLANConfig{
				Parent: parent, VNI: uint32(n.VLAN), Group: d.cfg.VXLANGroup, Port: d.cfg.VXLANPort, MTU: n.MTU,
			})
			return err
		}
		_, err := d.k.EnsureVLAN(ctx, parent, n.VLAN, n.MTU)
		return err
	}
	var changes []string
	err = ensure()
	if errors.Is(err, link.ErrMismatch) && before.Kind == d.segment {
		// Our segment with other settings (the network's interface or
		// the VXLAN group/port changed): the name is ours (vlan<ID> or
		// vxlan<ID>, in the record), so make it again.
		if err := d.k.Delete(ctx, name); err != nil {
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
func (d *vlanDriver) Teardown(ctx context.Context, rec Record) ([]string, error) {
	changes, err := d.teardown(ctx, DriverVLAN, rec)
	if err != nil {
		err = named(rec, fmt.Errorf("teardown: %w", err))
	}
	return changes, err
}
