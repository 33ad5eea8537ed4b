package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"novanet/linuxnet/link"
)

// LinkState is what the drivers read about a link to tell what Setup
// changed and to check the operator's bridge in flat mode.
type LinkState struct {
	Exists bool
	Kind   string // "bridge", "vlan", "vxlan", "veth", "device", ...
	Up     bool   // administratively up
	MTU    int
	Master string         // bridge the link is a port of; empty for none
	Addrs  []netip.Prefix // global addresses, sorted
}

// HasAddr reports whether the link carries p.
func (s LinkState) HasAddr(p netip.Prefix) bool { return slices.Contains(s.Addrs, p) }

// Links is the real link layer of a namespace: linuxnet/link plus Stat,
// through one netlink handle. Close it when done.
type Links struct {
	h *netlink.Handle
	m *link.Manager
}

// NewLinks opens a netlink handle in the namespace at netnsPath (empty: the
// caller's namespace).
func NewLinks(netnsPath string) (*Links, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if netnsPath == "" {
		h, err = netlink.NewHandle()
	} else {
		ns, nerr := netns.GetFromPath(netnsPath)
		if nerr != nil {
			return nil, fmt.Errorf("netns %s: open: %w", netnsPath, nerr)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return nil, fmt.Errorf("netns %q: netlink handle: %w", netnsPath, err)
	}
	return &Links{h: h, m: link.New(h)}, nil
}

// Close releases the netlink handle.
func (l *Links) Close() { l.h.Close() }

// EnsureBridge makes the bridge exist, up, with MTU and address (see
// link.Manager.EnsureBridge).
func (l *Links) EnsureBridge(ctx context.Context, c link.BridgeConfig) error {
	_, err := l.m.EnsureBridge(ctx, c)
	return err
}

// EnsureAddr puts p on dev.
func (l *Links) EnsureAddr(ctx context.Context, dev string, p netip.Prefix) error {
	return l.m.EnsureAddr(ctx, dev, p)
}

// Enslave makes iface a port of bridge.
func (l *Links) Enslave(ctx context.Context, bridge, iface string, o link.EnslaveOptions) error {
	return l.m.Enslave(ctx, bridge, iface, o)
}

// EnsureVLAN makes the 802.1Q link vlan<id> on parent.
func (l *Links) EnsureVLAN(ctx context.Context, parent string, id uint16, mtu int) (string, error) {
	return l.m.EnsureVLAN(ctx, parent, id, mtu)
}

// EnsureVXLAN makes the VXLAN link vxlan<VNI>.
func (l *Links) EnsureVXLAN(ctx context.Context, c link.VXLANConfig) (string, error) {
	return l.m.EnsureVXLAN(ctx, c)
}

// Delete removes a link; a missing link is fine.
func (l *Links) Delete(ctx context.Context, name string) error { return l.m.Delete(ctx, name) }

// Stat reads a link. A missing link is LinkState{Exists: false}, not an
// error.
func (l *Links) Stat(ctx context.Context, name string) (LinkState, error) {
	if err := link.ValidateName(name); err != nil {
		return LinkState{}, err
	}
	if err := ctx.Err(); err != nil {
		return LinkState{}, err
	}
	lk, err := l.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return LinkState{}, nil
		}
		return LinkState{}, fmt.Errorf("link %s: %w", name, err)
	}
	a := lk.Attrs()
	st := LinkState{Exists: true, Kind: lk.Type(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}
	if a.MasterIndex != 0 {
		m, err := l.h.LinkByIndex(a.MasterIndex)
		if err != nil {
			return LinkState{}, fmt.Errorf("link %s: master %d: %w", name, a.MasterIndex, err)
		}
		st.Master = m.Attrs().Name
	}
	addrs, err := l.h.AddrList(lk, netlink.FAMILY_ALL)
	if err != nil {
		return LinkState{}, fmt.Errorf("link %s: list addresses: %w", name, err)
	}
	for _, ad := range addrs {
		if ad.Scope != int(netlink.SCOPE_UNIVERSE) || ad.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(ad.IPNet.IP)
		if !ok {
			continue
		}
		ones, _ := ad.IPNet.Mask.Size()
		st.Addrs = append(st.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	slices.SortFunc(st.Addrs, comparePrefix)
	return st, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
