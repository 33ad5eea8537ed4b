package hostnet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"novanet/ifname"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
)

// The step helpers below are shared by the drivers. Each one reads the
// state it is about to change, makes the change, and says in words what
// differed, so that a second run that finds everything in place says
// nothing.

// ErrPortInUse is returned (wrapped) when the interface to enslave is
// already a port of another bridge (for example two flatdhcp networks on
// one flat interface): it is not taken away from it.
var ErrPortInUse = errors.New("interface is a port of another bridge")

// LinkStater reads a link.
type LinkStater interface {
	Stat(ctx context.Context, name string) (link.State, error)
}

// BridgeMaker is what EnsureBridge needs.
type BridgeMaker interface {
	LinkStater
	EnsureBridge(ctx context.Context, c link.BridgeConfig) (link.State, error)
}

// EnsureBridge makes the bridge c.Name exist, up, with c.MTU (when set)
// and c.Addr (when set), and describes what it changed.
func EnsureBridge(ctx context.Context, l BridgeMaker, c link.BridgeConfig) ([]string, error) {
	before, err := l.Stat(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	if before.Exists && before.Kind != "bridge" {
		return nil, fmt.Errorf("bridge %s: %w: is a %s", c.Name, link.ErrMismatch, before.Kind)
	}
	if _, err := l.EnsureBridge(ctx, c); err != nil {
		return nil, err
	}
	var changes []string
	if !before.Exists {
		changes = append(changes, "created bridge "+c.Name)
		if c.Addr.IsValid() {
			changes = append(changes, fmt.Sprintf("added address %s to %s", c.Addr, c.Name))
		}
		return changes, nil
	}
	if !before.Up {
		changes = append(changes, "set bridge "+c.Name+" up")
	}
	if c.MTU != 0 && before.MTU != c.MTU {
		changes = append(changes, fmt.Sprintf("set bridge %s mtu %d (was %d)", c.Name, c.MTU, before.MTU))
	}
	if c.Addr.IsValid() && !before.HasAddr(c.Addr) {
		changes = append(changes, fmt.Sprintf("added address %s to %s", c.Addr, c.Name))
	}
	return changes, nil
}

// Enslaver is what EnslavePort needs.
type Enslaver interface {
	LinkStater
	Enslave(ctx context.Context, bridge, iface string, o link.EnslaveOptions) error
}

// EnslavePort makes iface (which must exist) an up port of bridge; with
// o.MoveAddrs its global IPv4 addresses move to the bridge. what names the
// port in errors ("flat interface", "vlan segment").
func EnslavePort(ctx context.Context, l Enslaver, bridge, iface, what string, o link.EnslaveOptions) ([]string, error) {
	before, err := l.Stat(ctx, iface)
	if err != nil {
		return nil, err
	}
	if !before.Exists {
		return nil, fmt.Errorf("%s %s: %w", what, iface, link.ErrNotFound)
	}
	if before.Master != "" && before.Master != bridge {
		return nil, fmt.Errorf("%s %s: %w: a port of %s, wanted on %s", what, iface, ErrPortInUse, before.Master, bridge)
	}
	if err := l.Enslave(ctx, bridge, iface, o); err != nil {
		return nil, err
	}
	var changes []string
	if before.Master != bridge {
		changes = append(changes, fmt.Sprintf("enslaved %s to %s", iface, bridge))
	} else if !before.Up {
		changes = append(changes, "set "+iface+" up")
	}
	if o.MoveAddrs {
		var moved []string
		for _, a := range before.Addrs {
			if a.Addr().Is4() {
				moved = append(moved, a.String())
			}
		}
		if len(moved) > 0 {
			changes = append(changes, fmt.Sprintf("moved %s from %s to %s", strings.Join(moved, ", "), iface, bridge))
		}
	}
	return changes, nil
}

// Deleter is what DeleteLink needs.
type Deleter interface {
	LinkStater
	Delete(ctx context.Context, name string) error
}

// DeleteLink removes the link name (kind is for the message, e.g.
// "bridge"; empty: the link's own kind); a missing link says nothing.
func DeleteLink(ctx context.Context, l Deleter, kind, name string) ([]string, error) {
	if name == "" {
		return nil, nil
	}
	st, err := l.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		return nil, nil
	}
	if err := l.Delete(ctx, name); err != nil {
		return nil, err
	}
	if kind == "" {
		kind = st.Kind
	}
	return []string{"deleted " + kind + " " + name}, nil
}

// DHCP runs dnsmasq instances; *DHCPServers is the real one.
type DHCP interface {
	Ensure(ctx context.Context, c dnsmasq.Config, hosts []dnsmasq.Host) (dnsmasq.Action, error)
	Stop(ctx context.Context, name string) (bool, error)
}

// EnsureDHCP makes the dnsmasq of n run as c with n's hosts and describes
// what it did.
func EnsureDHCP(ctx context.Context, d DHCP, c dnsmasq.Config, n Network) ([]string, error) {
	act, err := d.Ensure(ctx, c, n.Hosts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n, err)
	}
	switch act {
	case dnsmasq.Started:
		return []string{"dnsmasq " + c.Name + " started"}, nil
	case dnsmasq.Restarted:
		return []string{"dnsmasq " + c.Name + " restarted (config changed)"}, nil
	case dnsmasq.Reloaded:
		return []string{"dnsmasq " + c.Name + " reloaded (hosts changed)"}, nil
	}
	return nil, nil
}

// StopDHCP stops the dnsmasq instance name and removes its files; why is
// appended to the message ("dhcp disabled"), if any.
func StopDHCP(ctx context.Context, d DHCP, name, why string) ([]string, error) {
	if name == "" {
		return nil, nil
	}
	did, err := d.Stop(ctx, name)
	if err != nil || !did {
		return nil, err
	}
	msg := "dnsmasq " + name + " stopped"
	if why != "" {
		msg += " (" + why + ")"
	}
	return []string{msg}, nil
}

// TeardownBridged is the teardown of flatdhcp and vlan: stop the dnsmasq
// (removing its files), delete the bridge when owned, then the segment.
// What is already gone is fine. rec must be of driver.
func TeardownBridged(ctx context.Context, l Deleter, d DHCP, driver string, rec Record) ([]string, error) {
	bad := func(format string, args ...any) ([]string, error) {
		return nil, fmt.Errorf("%w: network %d: record: %s", ErrInvalidConfig, rec.NetworkID, fmt.Sprintf(format, args...))
	}
	if rec.Driver != driver {
		return bad("driver %q, not %s", rec.Driver, driver)
	}
	for _, n := range []string{rec.Bridge, rec.Segment} {
		if n == "" {
			continue
		}
		if err := ifname.Validate(n); err != nil {
			return bad("%v", err)
		}
	}
	if rec.DHCP != "" && !ValidDHCPName(rec.DHCP) {
		return bad("dnsmasq name %q", rec.DHCP)
	}
	var changes []string
	for _, step := range []func() ([]string, error){
		func() ([]string, error) { return StopDHCP(ctx, d, rec.DHCP, "") },
		func() ([]string, error) {
			if !rec.BridgeOwned {
				return nil, nil
			}
			return DeleteLink(ctx, l, "bridge", rec.Bridge)
		},
		func() ([]string, error) { return DeleteLink(ctx, l, "", rec.Segment) },
	} {
		c, err := step()
		changes = append(changes, c...)
		if err != nil {
			return changes, fmt.Errorf("network %d: teardown: %w", rec.NetworkID, err)
		}
	}
	return changes, nil
}

// SettleBridgeMTU sets the bridge's MTU again after ports joined it. Linux
// moves a bridge's MTU to the smallest of its ports' when a port joins,
// unless the MTU was set on the bridge after it was made; an MTU given at
// creation does not count. Setting it again (when it differs) makes it
// stick. It reports nothing: the change is part of making the bridge or
// adding the port.
func SettleBridgeMTU(ctx context.Context, l BridgeMaker, c link.BridgeConfig) error {
	if c.MTU == 0 {
		return nil
	}
	st, err := l.Stat(ctx, c.Name)
	if err != nil {
		return err
	}
	if st.MTU == c.MTU {
		return nil
	}
	_, err = l.EnsureBridge(ctx, c)
	return err
}
