package hostnet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"novanet/ifname"
	"novanet/internal/atomicfile"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
)

// This file is the common part of the drivers that make a bridge per
// network (flatdhcp, vlan): the Setup skeleton, the Teardown, and the steps
// they are made of. Each step reads the state it is about to change, makes
// the change, and says in words what differed, so that a second run that
// finds everything in place says nothing. Steps do not name the network:
// the driver's Plan, Setup and Teardown do, once.

// ErrPortInUse is returned (wrapped) when the interface to enslave is
// already a port of another bridge (for example two flatdhcp networks on
// one flat interface): it is not taken away from it.
var ErrPortInUse = errors.New("interface is a port of another bridge")

// bridged is the shared part of flatdhcp and vlan.
type bridged struct {
	cfg   Config
	k     kernel
	dhcp  dhcpServers
	ports *portMemory
}

func newBridged(driver string, cfg Config, k kernel, dhcp dhcpServers) (bridged, error) {
	if k == nil || dhcp == nil {
		return bridged{}, fmt.Errorf("%s: %w: links and dhcp are required", driver, ErrInvalidConfig)
	}
	if err := checkDHCPDir(cfg.DHCPDir); err != nil {
		return bridged{}, fmt.Errorf("%s: %w", driver, err)
	}
	ports, err := loadPortMemory(cfg.StateDir)
	if err != nil {
		return bridged{}, fmt.Errorf("%s: %w", driver, err)
	}
	return bridged{cfg: cfg, k: k, dhcp: dhcp, ports: ports}, nil
}

// portMemory is what the driver last saw plugged into each bridge besides
// its own port (the VMs' taps, which the hypervisor plugs, not us): when a
// bridge is made again — deleted behind our back, or torn down and set up
// again in one convergence — those ports that still exist and are free
// are put back on it. It is kept in <StateDir>/bridge-ports.json (when
// Config.StateDir is set), so that it outlives a restart of the agent.
type portMemory struct {
	mu   sync.Mutex
	path string              // empty: in memory only
	m    map[string][]string // bridge -> ports, sorted
}

func loadPortMemory(stateDir string) (*portMemory, error) {
	pm := &portMemory{m: map[string][]string{}}
	if stateDir == "" {
		return pm, nil
	}
	pm.path = filepath.Join(stateDir, "bridge-ports.json")
	b, err := os.ReadFile(pm.path)
	if errors.Is(err, os.ErrNotExist) {
		return pm, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bridge ports: %w", err)
	}
	if err := json.Unmarshal(b, &pm.m); err != nil {
		return nil, fmt.Errorf("bridge ports in %s: %w", pm.path, err)
	}
	for br, ps := range pm.m {
		if ifname.Validate(br) != nil || slices.ContainsFunc(ps, func(p string) bool { return ifname.Validate(p) != nil }) {
			delete(pm.m, br) // not ours to act on
		}
	}
	return pm, nil
}

func (m *portMemory) get(bridge string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.m[bridge])
}

func (m *portMemory) set(bridge string, ports []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(m.m[bridge], ports) {
		return nil
	}
	if len(ports) == 0 {
		delete(m.m, bridge)
	} else {
		m.m[bridge] = ports
	}
	if m.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(m.m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(m.path), 0o750); err != nil {
		return fmt.Errorf("bridge ports: %w", err)
	}
	if err := atomicfile.Write(m.path, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("bridge ports: %w", err)
	}
	return nil
}

// rememberPorts records the ports of bridge other than ours.
func (b bridged) rememberPorts(ctx context.Context, bridge string, ours ...string) error {
	ps, err := b.k.Ports(ctx, bridge)
	if err != nil {
		return err
	}
	ps = slices.DeleteFunc(ps, func(p string) bool { return p == b.cfg.FlatInterface || slices.Contains(ours, p) })
	slices.Sort(ps)
	return b.ports.set(bridge, ps)
}

// restorePorts puts the remembered ports of bridge back on it: those that
// exist and are a port of no bridge.
func (b bridged) restorePorts(ctx context.Context, bridge string) ([]string, error) {
	var changes []string
	for _, p := range b.ports.get(bridge) {
		st, err := b.k.Stat(ctx, p)
		if err != nil {
			return changes, err
		}
		if !st.Exists || st.Master != "" {
			continue
		}
		if err := b.k.Enslave(ctx, bridge, p, link.EnslaveOptions{}); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("put port %s back on %s", p, bridge))
	}
	return changes, nil
}

// port is the link a bridged network enslaves to its bridge: the flat
// interface (flatdhcp) or the segment (vlan).
type port struct {
	name string // empty: none
	what string // for messages: "flat interface", "vlan segment"
	opts link.EnslaveOptions
	// ensure, when set, makes the port before the bridge (the segment).
	ensure func(ctx context.Context) ([]string, error)
}

// setup is the Setup of flatdhcp and vlan: the dnsmasq config of the
// bridge (every network on it, n.Peers included) is checked before
// anything is made; then the port (when it is ours to make), the bridge
// (up, MTU, the gateway address of n and of its peers, but not of a
// network the host only carries the layer 2 of), the port
// enslaved, the bridge's MTU settled, the ports it had before it was made
// again put back, and the bridge's one dnsmasq run with a range per
// network, or stopped when no network on the bridge wants DHCP.
func (b bridged) setup(ctx context.Context, n Network, rec Record, p port) ([]string, error) {
	dc, wantDHCP, err := DHCPConfig(b.cfg, rec.DHCP, n)
	if err != nil {
		return nil, err
	}
	var changes []string
	add := func(c []string, err error) error {
		changes = append(changes, c...)
		return err
	}
	if p.ensure != nil {
		if err := add(p.ensure(ctx)); err != nil {
			return changes, err
		}
	}
	before, err := b.k.Stat(ctx, n.Bridge)
	if err != nil {
		return changes, err
	}
	bc := link.BridgeConfig{Name: n.Bridge, MTU: n.MTU, Addr: n.servedGateway()}
	if err := add(b.ensureBridge(ctx, bc)); err != nil {
		return changes, err
	}
	for _, m := range n.onBridge() {
		for _, gw := range []netip.Prefix{m.servedGateway(), m.servedGatewayV6()} {
			if !gw.IsValid() || (m.ID == n.ID && gw == bc.Addr) {
				continue
			}
			if err := add(b.ensureBridge(ctx, link.BridgeConfig{Name: n.Bridge, Addr: gw})); err != nil {
				return changes, err
			}
		}
	}
	if p.name != "" {
		if err := add(b.enslavePort(ctx, n.Bridge, p)); err != nil {
			return changes, err
		}
		if err := b.settleBridgeMTU(ctx, bc); err != nil {
			return changes, err
		}
	}
	if !before.Exists {
		if err := add(b.restorePorts(ctx, n.Bridge)); err != nil {
			return changes, err
		}
	}
	if err := b.rememberPorts(ctx, n.Bridge, p.name); err != nil {
		return changes, err
	}
	switch {
	case wantDHCP:
		err = add(b.ensureDHCP(ctx, dc, DHCPHosts(n)))
	case n.Layer2Only && len(n.Peers) == 0:
		err = add(b.stopDHCP(ctx, rec.DHCP, "layer 2 only: served by another host"))
	default:
		err = add(b.stopDHCP(ctx, rec.DHCP, "dhcp disabled"))
	}
	return changes, err
}

// teardown is the Teardown of flatdhcp and vlan: stop the dnsmasq
// (removing its files), delete the bridge when owned (else only remove
// the network's gateway address from it), then the segment.
// What is already gone is fine. rec must be of driver.
func (b bridged) teardown(ctx context.Context, driver string, rec Record) ([]string, error) {
	bad := func(format string, args ...any) ([]string, error) {
		return nil, fmt.Errorf("%w: record: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
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
		func() ([]string, error) { return b.stopDHCP(ctx, rec.DHCP, "") },
		func() ([]string, error) {
			if !rec.BridgeOwned {
				return b.delGateway(ctx, rec)
			}
			// Remembered, so that the bridge made again (a plan
			// changed) gets its VMs back.
			if st, err := b.k.Stat(ctx, rec.Bridge); err != nil {
				return nil, err
			} else if st.Exists && st.Kind == "bridge" {
				if err := b.rememberPorts(ctx, rec.Bridge, rec.Segment); err != nil {
					return nil, err
				}
			}
			return b.deleteLink(ctx, "bridge", rec.Bridge)
		},
		func() ([]string, error) { return b.deleteLink(ctx, "", rec.Segment) },
	} {
		c, err := step()
		changes = append(changes, c...)
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}

// delGateway removes the gateway address of rec's network from its
// bridge (which other networks keep).
func (b bridged) delGateway(ctx context.Context, rec Record) ([]string, error) {
	var changes []string
	for _, gw := range []netip.Prefix{rec.Gateway, rec.GatewayV6} {
		if !gw.IsValid() {
			continue
		}
		st, err := b.k.Stat(ctx, rec.Bridge)
		if err != nil {
			return changes, err
		}
		if !st.HasAddr(gw) {
			continue
		}
		if err := b.k.DelAddr(ctx, rec.Bridge, gw); err != nil {
			return changes, err
		}
		changes = append(changes, fmt.Sprintf("removed address %s from %s", gw, rec.Bridge))
	}
	return changes, nil
}

// ensureBridge makes the bridge c.Name exist, up, with c.MTU (when set)
// and c.Addr (when set), and describes what it changed.
func (b bridged) ensureBridge(ctx context.Context, c link.BridgeConfig) ([]string, error) {
	before, err := b.k.Stat(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	if before.Exists && before.Kind != "bridge" {
		return nil, fmt.Errorf("bridge %s: %w: is a %s", c.Name, link.ErrMismatch, before.Kind)
	}
	if _, err := b.k.EnsureBridge(ctx, c); err != nil {
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

// enslavePort makes p (which must exist) an up port of bridge; with
// p.opts.MoveAddrs its global IPv4 addresses move to the bridge.
func (b bridged) enslavePort(ctx context.Context, bridge string, p port) ([]string, error) {
	iface := p.name
	before, err := b.k.Stat(ctx, iface)
	if err != nil {
		return nil, err
	}
	if !before.Exists {
		return nil, fmt.Errorf("%s %s: %w", p.what, iface, link.ErrNotFound)
	}
	if before.Master != "" && before.Master != bridge {
		return nil, fmt.Errorf("%s %s: %w: a port of %s, wanted on %s", p.what, iface, ErrPortInUse, before.Master, bridge)
	}
	if err := b.k.Enslave(ctx, bridge, iface, p.opts); err != nil {
		return nil, err
	}
	var changes []string
	if before.Master != bridge {
		changes = append(changes, fmt.Sprintf("enslaved %s to %s", iface, bridge))
	} else if !before.Up {
		changes = append(changes, "set "+iface+" up")
	}
	if p.opts.MoveAddrs {
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

// settleBridgeMTU sets the bridge's MTU again after ports joined it. Linux
// moves a bridge's MTU to the smallest of its ports' when a port joins,
// unless the MTU was set on the bridge after it was made; an MTU given at
// creation does not count. Setting it again (when it differs) makes it
// stick. It reports nothing: the change is part of making the bridge or
// adding the port.
func (b bridged) settleBridgeMTU(ctx context.Context, c link.BridgeConfig) error {
	if c.MTU == 0 {
		return nil
	}
	st, err := b.k.Stat(ctx, c.Name)
	if err != nil {
		return err
	}
	if st.MTU == c.MTU {
		return nil
	}
	_, err = b.k.EnsureBridge(ctx, c)
	return err
}

// deleteLink removes the link name (kind is for the message, e.g.
// "bridge"; empty: the link's own kind); a missing link says nothing.
func (b bridged) deleteLink(ctx context.Context, kind, name string) ([]string, error) {
	if name == "" {
		return nil, nil
	}
	st, err := b.k.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		return nil, nil
	}
	if err := b.k.Delete(ctx, name); err != nil {
		return nil, err
	}
	if kind == "" {
		kind = st.Kind
	}
	return []string{"deleted " + kind + " " + name}, nil
}

// ensureDHCP makes the dnsmasq c run with hosts and describes what it did.
func (b bridged) ensureDHCP(ctx context.Context, c dnsmasq.Config, hosts []dnsmasq.Host) ([]string, error) {
	act, err := b.dhcp.Ensure(ctx, c, hosts)
	if err != nil {
		return nil, err
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

// stopDHCP stops the dnsmasq instance name and removes its files; why is
// appended to the message ("dhcp disabled"), if any.
func (b bridged) stopDHCP(ctx context.Context, name, why string) ([]string, error) {
	if name == "" {
		return nil, nil
	}
	did, err := b.dhcp.Stop(ctx, name)
	if err != nil || !did {
		return nil, err
	}
	msg := "dnsmasq " + name + " stopped"
	if why != "" {
		msg += " (" + why + ")"
	}
	return []string{msg}, nil
}

// named adds the network to a driver's error, once.
func named(what fmt.Stringer, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// TeardownAmong tears rec down on a host that keeps serving keep (every
// network it still serves, parsed; rec's own network, if among them, is
// ignored). When some of them are on rec's bridge, the bridge and its one
// dnsmasq stay, so that their VMs keep working: only what is rec's alone
// goes (its segment), and the first of them is set up again, which
// rewrites the bridge's dnsmasq without rec's range. Otherwise it is
// d.Teardown(rec).
func TeardownAmong(ctx context.Context, d Driver, rec Record, keep []Network) ([]string, error) {
	var peers []Network
	for _, n := range keep {
		if n.Bridge == rec.Bridge && n.ID != rec.NetworkID {
			peers = append(peers, n)
		}
	}
	if len(peers) == 0 || !rec.BridgeOwned {
		return d.Teardown(ctx, rec)
	}
	alone := rec
	alone.BridgeOwned, alone.DHCP = false, ""
	changes, err := d.Teardown(ctx, alone)
	if err != nil {
		return changes, err
	}

	first := slices.MinFunc(ShareBridges(peers), func(a, b Network) int { return cmp.Compare(a.ID, b.ID) })
	ch, err := d.Setup(ctx, first)
	return append(changes, ch...), err
}
