// Package link manages the host links the drivers need: bridges (with the
// network's gateway address), VLAN links vlan<ID> and VXLAN links vxlan<VNI>
// on a parent interface, and enslaving interfaces to a bridge, moving an
// interface's IPv4 addresses and routes onto the bridge as nova-network's
// LinuxBridgeInterfaceDriver.ensure_bridge did.
//
// It is the only package that speaks netlink for the host: links (bridges,
// VLAN and VXLAN segments, ports), their state (Stat), addresses and the
// routes moved with them. Every call goes through the one *netlink.Handle
// of a Manager (Open makes one per namespace, so one process can manage
// many namespaces), is idempotent, tolerates "exists" and "not found",
// re-reads what it created, and names the device in errors. Interface names
// are checked with package ifname before any kernel call.
package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"novanet/ifname"
)

var (
	// ErrMismatch is returned when a link with the wanted name exists but is
	// of another kind or has other parameters; it is never modified.
	ErrMismatch = errors.New("link exists with other settings")
	// ErrUnsupported is returned when the kernel does not support the link
	// kind (for example no 802.1Q module for VLAN links).
	ErrUnsupported = errors.New("link kind not supported by the kernel")
	// ErrNotFound is returned when a link the call needs does not exist.
	ErrNotFound = errors.New("link not found")
)

// Manager creates, reads and removes links and addresses through one
// netlink handle.
type Manager struct {
	h     *netlink.Handle
	owned bool   // made by Open; Close releases it
	netns string // Open's namespace path, for WatchAddrs
}

// New returns a Manager working through h (see netlink.NewHandleAt); the
// caller keeps h and closes it.
func New(h *netlink.Handle) *Manager { return &Manager{h: h} }

// Open returns a Manager with its own netlink handle in the network
// namespace at netnsPath (empty: the caller's). Close it when done.
func Open(netnsPath string) (*Manager, error) {
	if netnsPath == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return &Manager{h: h, owned: true}, nil
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("netns %s: open: %w", netnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink handle: %w", netnsPath, err)
	}
	return &Manager{h: h, owned: true, netns: netnsPath}, nil
}

// Close releases the handle made by Open (a handle given to New is the
// caller's).
func (m *Manager) Close() {
	if m.owned {
		m.h.Close()
	}
}

// BridgeConfig describes a bridge.
type BridgeConfig struct {
	Name string
	// MTU is set when non-zero.
	MTU int
	// Addr is the gateway address with the network's prefix length, e.g.
	// 10.0.0.1/24. Zero means no address.
	Addr netip.Prefix
}

// EnsureBridge makes sure the bridge exists, is up, has the MTU and carries
// Addr. It returns the bridge as re-read from the kernel.
func (m *Manager) EnsureBridge(ctx context.Context, cfg BridgeConfig) (State, error) {
	if err := ifname.Validate(cfg.Name); err != nil {
		return State{}, err
	}
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	br, err := m.bridge(cfg.Name)
	if errors.Is(err, ErrNotFound) {
		la := netlink.NewLinkAttrs()
		la.Name = cfg.Name
		la.MTU = cfg.MTU
		la.TxQLen = -1
		if err := m.h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return State{}, fmt.Errorf("bridge %s: add: %w", cfg.Name, err)
		}
		br, err = m.bridge(cfg.Name)
	}
	if err != nil {
		return State{}, err
	}
	if cfg.MTU != 0 && br.MTU != cfg.MTU {
		if err := m.h.LinkSetMTU(br, cfg.MTU); err != nil {
			return State{}, fmt.Errorf("bridge %s: set mtu %d: %w", cfg.Name, cfg.MTU, err)
		}
	}
	if err := m.h.LinkSetUp(br); err != nil {
		return State{}, fmt.Errorf("bridge %s: set up: %w", cfg.Name, err)
	}
	if cfg.Addr.IsValid() {
		if err := m.EnsureAddr(ctx, cfg.Name, cfg.Addr); err != nil {
			return State{}, err
		}
	}
	return m.Stat(ctx, cfg.Name)
}

func (m *Manager) bridge(name string) (*netlink.Bridge, error) {
	l, err := m.byName(name)
	if err != nil {
		return nil, err
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("bridge %s: %w: is a %s", name, ErrMismatch, l.Type())
	}
	return br, nil
}

func (m *Manager) byName(name string) (netlink.Link, error) {
	l, err := m.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("link %s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l, nil
}

// EnsureAddr makes sure dev carries the address p (address and prefix
// length). For IPv4 the broadcast address is set as nova-network did.
func (m *Manager) EnsureAddr(ctx context.Context, dev string, p netip.Prefix) error {
	if err := ifname.Validate(dev); err != nil {
		return err
	}
	if !p.IsValid() {
		return fmt.Errorf("link %s: invalid address %v", dev, p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := m.byName(dev)
	if err != nil {
		return err
	}
	has, err := m.hasAddr(l, p)
	if err != nil || has {
		return err
	}
	addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
	if p.Addr().Is4() && p.Bits() < 31 {
		addr.Broadcast = broadcast(p)
	}
	if err := m.h.AddrAdd(l, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("link %s: add address %s: %w", dev, p, err)
	}
	has, err = m.hasAddr(l, p)
	if err != nil {
		return err
	}
	if !has {
		return fmt.Errorf("link %s: address %s missing after add", dev, p)
	}
	return nil
}

func (m *Manager) hasAddr(l netlink.Link, p netip.Prefix) (bool, error) {
	addrs, err := m.h.AddrList(l, family(p.Addr()))
	if err != nil {
		return false, fmt.Errorf("link %s: list addresses: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if q, ok := ipNetToPrefix(a.IPNet); ok && q == p {
			return true, nil
		}
	}
	return false, nil
}

// EnslaveOptions control Enslave.
type EnslaveOptions struct {
	// MoveAddrs moves the interface's global IPv4 addresses, and the routes
	// through a gateway on it (the default route among them), onto the
	// bridge, as nova-network's ensure_bridge did for a physical interface.
	MoveAddrs bool
}

// Enslave sets iface up and makes it a port of bridge. With MoveAddrs the
// addresses and gateway routes of iface move to the bridge. Calling it again
// is a no-op.
func (m *Manager) Enslave(ctx context.Context, bridge, iface string, opts EnslaveOptions) error {
	if err := ifname.Validate(bridge); err != nil {
		return err
	}
	if err := ifname.Validate(iface); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	br, err := m.bridge(bridge)
	if err != nil {
		return err
	}
	l, err := m.byName(iface)
	if err != nil {
		return err
	}
	if err := m.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("link %s: set up: %w", iface, err)
	}
	if l.Attrs().MasterIndex != br.Index {
		if err := m.h.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("link %s: enslave to %s: %w", iface, bridge, err)
		}
	}
	if err := m.h.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s: set up: %w", bridge, err)
	}
	if opts.MoveAddrs {
		if err := m.moveAddrs(l, br); err != nil {
			return err
		}
	}
	l, err = m.byName(iface)
	if err != nil {
		return err
	}
	if l.Attrs().MasterIndex != br.Index {
		return fmt.Errorf("link %s: not a port of %s after enslave", iface, bridge)
	}
	return nil
}

// moveAddrs follows nova's ensure_bridge: remove the routes via a gateway
// on iface, move its global IPv4 addresses to the bridge, and add the
// removed routes back on the bridge.
func (m *Manager) moveAddrs(from netlink.Link, to *netlink.Bridge) error {
	name := from.Attrs().Name
	routes, err := m.h.RouteList(from, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("link %s: list routes: %w", name, err)
	}
	var moved []netlink.Route
	for _, r := range routes {
		if r.Gw == nil {
			continue // connected routes follow the addresses
		}
		r := r
		if err := m.h.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("link %s: delete route %s: %w", name, routeString(r), err)
		}
		moved = append(moved, r)
	}
	addrs, err := m.h.AddrList(from, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("link %s: list addresses: %w", name, err)
	}
	for _, a := range addrs {
		if a.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		a := a
		if err := m.h.AddrDel(from, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("link %s: delete address %s: %w", name, a.IPNet, err)
		}
		na := &netlink.Addr{IPNet: a.IPNet, Broadcast: a.Broadcast, Scope: a.Scope}
		if err := m.h.AddrAdd(to, na); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("bridge %s: add address %s: %w", to.Name, a.IPNet, err)
		}
	}
	for _, r := range moved {
		r.LinkIndex = to.Index
		r.ILinkIndex = 0
		if err := m.h.RouteReplace(&r); err != nil {
			return fmt.Errorf("bridge %s: add route %s: %w", to.Name, routeString(r), err)
		}
	}
	return nil
}

func routeString(r netlink.Route) string {
	dst := "default"
	if r.Dst != nil {
		dst = r.Dst.String()
	}
	return dst + " via " + r.Gw.String()
}

// VLANName is the name of the VLAN link for id: vlan<ID>.
func VLANName(id uint16) string { return "vlan" + strconv.Itoa(int(id)) }

// EnsureVLAN makes sure the 802.1Q link vlan<id> exists on parent and is up
// (and the parent too). It returns the link name. When the kernel lacks
// 802.1Q support the error wraps ErrUnsupported.
func (m *Manager) EnsureVLAN(ctx context.Context, parent string, id uint16, mtu int) (string, error) {
	if id == 0 || id > 4094 {
		return "", fmt.Errorf("vlan on %s: id %d out of range 1-4094", parent, id)
	}
	name := VLANName(id)
	mk := func(p netlink.Link) netlink.Link {
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.ParentIndex = p.Attrs().Index
		la.MTU = mtu
		return &netlink.Vlan{LinkAttrs: la, VlanId: int(id)}
	}
	check := func(l netlink.Link, p netlink.Link) error {
		v, ok := l.(*netlink.Vlan)
		if !ok {
			return fmt.Errorf("vlan %s: %w: is a %s", name, ErrMismatch, l.Type())
		}
		if v.VlanId != int(id) || v.ParentIndex != p.Attrs().Index {
			return fmt.Errorf("vlan %s: %w: id %d parent index %d", name, ErrMismatch, v.VlanId, v.ParentIndex)
		}
		return nil
	}
	return name, m.ensureSegment(ctx, "vlan", name, parent, mtu, mk, check)
}

// VXLANName is the name of the VXLAN link for vni: vxlan<VNI>.
func VXLANName(vni uint32) string { return "vxlan" + strconv.FormatUint(uint64(vni), 10) }

// VXLANConfig describes a VXLAN segment on a parent interface.
type VXLANConfig struct {
	Parent string
	VNI    uint32 // 1 to 2^24-1
	// Group is a multicast group or a unicast remote VTEP; zero for none
	// (forwarding entries are then managed elsewhere).
	Group netip.Addr
	// Port is the UDP destination port; zero means 4789.
	Port uint16
	MTU  int
}

// EnsureVXLAN makes sure the link vxlan<VNI> exists on the parent with the
// given group/remote and port, and is up. It returns the link name.
func (m *Manager) EnsureVXLAN(ctx context.Context, cfg VXLANConfig) (string, error) {
	if cfg.VNI == 0 || cfg.VNI >= 1<<24 {
		return "", fmt.Errorf("vxlan on %s: vni %d out of range", cfg.Parent, cfg.VNI)
	}
	port := cfg.Port
	if port == 0 {
		port = 4789
	}
	name := VXLANName(cfg.VNI)
	var group net.IP
	if cfg.Group.IsValid() {
		group = net.IP(cfg.Group.AsSlice())
	}
	mk := func(p netlink.Link) netlink.Link {
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.MTU = cfg.MTU
		return &netlink.Vxlan{
			LinkAttrs:    la,
			VxlanId:      int(cfg.VNI),
			VtepDevIndex: p.Attrs().Index,
			Group:        group,
			Port:         int(port),
			Learning:     true,
		}
	}
	check := func(l netlink.Link, p netlink.Link) error {
		v, ok := l.(*netlink.Vxlan)
		if !ok {
			return fmt.Errorf("vxlan %s: %w: is a %s", name, ErrMismatch, l.Type())
		}
		if v.VxlanId != int(cfg.VNI) || v.VtepDevIndex != p.Attrs().Index || v.Port != int(port) ||
			(group != nil && !v.Group.Equal(group)) {
			return fmt.Errorf("vxlan %s: %w: vni %d dev index %d port %d group %v",
				name, ErrMismatch, v.VxlanId, v.VtepDevIndex, v.Port, v.Group)
		}
		return nil
	}
	return name, m.ensureSegment(ctx, "vxlan", name, cfg.Parent, cfg.MTU, mk, check)
}

// ensureSegment is the shared shape of EnsureVLAN and EnsureVXLAN.
func (m *Manager) ensureSegment(ctx context.Context, kind, name, parent string, mtu int,
	mk func(parent netlink.Link) netlink.Link, check func(l, parent netlink.Link) error) error {
	if err := ifname.Validate(parent); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := m.byName(parent)
	if err != nil {
		return fmt.Errorf("%s %s: parent: %w", kind, name, err)
	}
	if err := m.h.LinkSetUp(p); err != nil {
		return fmt.Errorf("link %s: set up: %w", parent, err)
	}
	l, err := m.byName(name)
	if errors.Is(err, ErrNotFound) {
		if err := m.h.LinkAdd(mk(p)); err != nil && !errors.Is(err, syscall.EEXIST) {
			if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EAFNOSUPPORT) {
				return fmt.Errorf("%s %s on %s: add: %w: %w", kind, name, parent, ErrUnsupported, err)
			}
			return fmt.Errorf("%s %s on %s: add: %w", kind, name, parent, err)
		}
		l, err = m.byName(name)
	}
	if err != nil {
		return err
	}
	if err := check(l, p); err != nil {
		return err
	}
	if mtu != 0 && l.Attrs().MTU != mtu {
		if err := m.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("%s %s: set mtu %d: %w", kind, name, mtu, err)
		}
	}
	if err := m.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s %s: set up: %w", kind, name, err)
	}
	return nil
}

// Delete removes the link name. A missing link is not an error.
func (m *Manager) Delete(ctx context.Context, name string) error {
	if err := ifname.Validate(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := m.byName(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := m.h.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("link %s: delete: %w", name, err)
	}
	return nil
}

// Ports returns the names of the links whose master is bridge, sorted; a
// missing bridge has none.
func (m *Manager) Ports(ctx context.Context, bridge string) ([]string, error) {
	ps, err := m.BridgePorts(ctx, bridge)
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out, err
}

// Port is a bridge port: its name and its own MAC.
type Port struct {
	Name string
	MAC  net.HardwareAddr
}

// BridgePorts returns the links whose master is bridge with their MACs,
// sorted by name; a missing bridge has none.
func (m *Manager) BridgePorts(ctx context.Context, bridge string) ([]Port, error) {
	if err := ifname.Validate(bridge); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	br, err := m.byName(bridge)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ls, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("bridge %s: list links: %w", bridge, err)
	}
	var out []Port
	for _, l := range ls {
		if a := l.Attrs(); a.MasterIndex == br.Attrs().Index {
			out = append(out, Port{Name: a.Name, MAC: slices.Clone(a.HardwareAddr)})
		}
	}
	slices.SortFunc(out, func(a, b Port) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func broadcast(p netip.Prefix) net.IP {
	b := p.Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << hostBits) - 1
	return net.IP{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
