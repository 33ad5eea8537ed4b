package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"novanet/ifname"
)

// State is what Stat reads of a link: enough for a caller to tell what an
// Ensure call changed and to check a link it did not make.
type State struct {
	Exists bool
	Kind   string // "bridge", "vlan", "vxlan", "veth", "device", ...
	Up     bool   // administratively up
	MTU    int
	Master string         // bridge the link is a port of; empty for none
	Addrs  []netip.Prefix // global addresses, sorted
}

// HasAddr reports whether the link carries p.
func (s State) HasAddr(p netip.Prefix) bool { return slices.Contains(s.Addrs, p) }

// Stat reads the link name. A missing link is State{Exists: false}, not an
// error.
func (m *Manager) Stat(ctx context.Context, name string) (State, error) {
	if err := ifname.Validate(name); err != nil {
		return State{}, err
	}
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	lk, err := m.byName(name)
	if errors.Is(err, ErrNotFound) {
		return State{}, nil
	}
	if err != nil {
		return State{}, err
	}
	a := lk.Attrs()
	st := State{Exists: true, Kind: lk.Type(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}
	if a.MasterIndex != 0 {
		master, err := m.h.LinkByIndex(a.MasterIndex)
		if err != nil {
			return State{}, fmt.Errorf("link %s: master %d: %w", name, a.MasterIndex, err)
		}
		st.Master = master.Attrs().Name
	}
	if st.Addrs, err = m.globalAddrs(lk); err != nil {
		return State{}, err
	}
	return st, nil
}

// globalAddrs returns the global addresses of l, sorted.
func (m *Manager) globalAddrs(l netlink.Link) ([]netip.Prefix, error) {
	addrs, err := m.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("link %s: list addresses: %w", l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, ad := range addrs {
		if ad.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		if p, ok := ipNetToPrefix(ad.IPNet); ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out, nil
}

// AddrEvent is one address added to or removed from a link, as the kernel
// announces it.
type AddrEvent struct {
	Dev    string
	Prefix netip.Prefix
	Added  bool
}

// WatchAddrs announces the address changes of dev in the Manager's
// namespace until ctx ends; the channel is then closed. Events are dropped
// while the reader is behind by more than buffer of them.
func (m *Manager) WatchAddrs(ctx context.Context, dev string, buffer int) (<-chan AddrEvent, error) {
	if err := ifname.Validate(dev); err != nil {
		return nil, err
	}
	l, err := m.byName(dev)
	if err != nil {
		return nil, err
	}
	opts := netlink.AddrSubscribeOptions{}
	if m.netns != "" {
		ns, err := netns.GetFromPath(m.netns)
		if err != nil {
			return nil, fmt.Errorf("netns %s: open: %w", m.netns, err)
		}
		defer ns.Close()
		opts.Namespace = &ns
	}
	updates := make(chan netlink.AddrUpdate, buffer)
	done := make(chan struct{})
	if err := netlink.AddrSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("link %s: watch addresses: %w", dev, err)
	}
	out := make(chan AddrEvent, buffer)
	index := l.Attrs().Index
	go func() {
		defer close(out)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				p, ok := ipNetToPrefix(&u.LinkAddress)
				if u.LinkIndex != index || !ok {
					continue
				}
				select {
				case out <- AddrEvent{Dev: dev, Prefix: p, Added: u.NewAddr}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// AddAddr adds p to dev as it is (no broadcast address, no re-read: for
// many host addresses, such as floating IPs, listed once with Addrs); an
// address already there is fine. EnsureAddr is the checked form.
func (m *Manager) AddAddr(ctx context.Context, dev string, p netip.Prefix) error {
	l, err := m.addrLink(ctx, dev, p)
	if err != nil {
		return err
	}
	if err := m.h.AddrAdd(l, &netlink.Addr{IPNet: prefixToIPNet(p)}); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("link %s: add address %s: %w", dev, p, err)
	}
	return nil
}

// DelAddr removes p from dev; an address or a link already gone is fine.
func (m *Manager) DelAddr(ctx context.Context, dev string, p netip.Prefix) error {
	l, err := m.addrLink(ctx, dev, p)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	err = m.h.AddrDel(l, &netlink.Addr{IPNet: prefixToIPNet(p)})
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("link %s: delete address %s: %w", dev, p, err)
	}
	return nil
}

// Addrs returns every address dev carries (any scope), in the kernel's
// order.
func (m *Manager) Addrs(ctx context.Context, dev string) ([]netip.Prefix, error) {
	if err := ifname.Validate(dev); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := m.byName(dev)
	if err != nil {
		return nil, err
	}
	as, err := m.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("link %s: list addresses: %w", dev, err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		if p, ok := ipNetToPrefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *Manager) addrLink(ctx context.Context, dev string, p netip.Prefix) (netlink.Link, error) {
	if err := ifname.Validate(dev); err != nil {
		return nil, err
	}
	if !p.IsValid() {
		return nil, fmt.Errorf("link %s: invalid address %v", dev, p)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.byName(dev)
}

// The one conversion between net/netip and the net.IPNet netlink speaks.

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

func ipNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
