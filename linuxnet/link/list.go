package link

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// Info is one link as List reads it: its State, and for a segment its
// parameters.
type Info struct {
	Name string
	State
	Parent string     // the lower link of a VLAN, the VTEP device of a VXLAN
	ID     int        // VLAN id or VNI; 0 for other kinds
	Group  netip.Addr // VXLAN group or remote; zero when none
	Port   int        // VXLAN UDP port
}

// List reads every link of the namespace, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ls, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Info
	for _, l := range ls {
		a := l.Attrs()
		in := Info{Name: a.Name, State: State{Exists: true, Kind: l.Type(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU,
			Master: names[a.MasterIndex]}}
		switch v := l.(type) {
		case *netlink.Vlan:
			in.ID, in.Parent = v.VlanId, names[a.ParentIndex]
		case *netlink.Vxlan:
			in.ID, in.Parent, in.Port = v.VxlanId, names[v.VtepDevIndex], v.Port
			if g, ok := netip.AddrFromSlice(v.Group); ok && !g.IsUnspecified() {
				in.Group = g.Unmap()
			}
		}
		if in.Addrs, err = m.globalAddrs(l); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
