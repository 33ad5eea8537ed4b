// Package hostnettest has in-memory fakes of the host's links and dnsmasq
// instances for unit tests of the drivers: they follow the semantics of
// linuxnet/link and hostnet.DHCPServers, and Dump renders the resulting
// "OS state" as text for cmp.Diff.
package hostnettest

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"novanet/hostnet"
	"novanet/ifname"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
)

// Link is one fake link.
type Link struct {
	Kind   string // bridge, vlan, vxlan, device
	Up     bool
	MTU    int
	Master string
	Parent string // vlan/vxlan
	ID     uint32 // vlan id or vni
	Group  netip.Addr
	Port   uint16
	Addrs  []netip.Prefix
	// MTUSet: the MTU was set on the bridge after it was made, so ports
	// joining do not move it (Linux's BROPT_MTU_SET_BY_USER).
	MTUSet bool
}

// Links is an in-memory link layer. The zero value is not usable; use
// NewLinks.
type Links struct {
	mu    sync.Mutex
	links map[string]*Link
	// NoVLAN makes EnsureVLAN fail with link.ErrUnsupported, like a kernel
	// without 802.1Q.
	NoVLAN bool
	// Calls counts mutating calls, to check that a no-op Setup changes
	// nothing.
	Calls []string
}

// NewLinks returns fake links with the given physical devices (up, MTU
// 1500, no addresses).
func NewLinks(devices ...string) *Links {
	l := &Links{links: map[string]*Link{}}
	for _, d := range devices {
		l.links[d] = &Link{Kind: "device", Up: true, MTU: 1500}
	}
	return l
}

// Add puts a link in place, e.g. an operator's bridge or a device with an
// address.
func (l *Links) Add(name string, lk Link) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := lk
	c.Addrs = slices.Clone(lk.Addrs)
	l.links[name] = &c
}

// Get returns a copy of a link.
func (l *Links) Get(name string) (Link, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lk, ok := l.links[name]
	if !ok {
		return Link{}, false
	}
	c := *lk
	c.Addrs = slices.Clone(lk.Addrs)
	return c, true
}

// Stat follows link.Manager.Stat.
func (l *Links) Stat(ctx context.Context, name string) (link.State, error) {
	if err := ifname.Validate(name); err != nil {
		return link.State{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lk, ok := l.links[name]
	if !ok {
		return link.State{}, nil
	}
	return l.state(lk), nil
}

func (l *Links) state(lk *Link) link.State {
	return link.State{Exists: true, Kind: lk.Kind, Up: lk.Up, MTU: lk.MTU, Master: lk.Master, Addrs: slices.Clone(lk.Addrs)}
}

// EnsureBridge follows link.Manager.EnsureBridge.
func (l *Links) EnsureBridge(ctx context.Context, c link.BridgeConfig) (link.State, error) {
	if err := ifname.Validate(c.Name); err != nil {
		return link.State{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "EnsureBridge "+c.Name)
	br, ok := l.links[c.Name]
	if !ok {
		br = &Link{Kind: "bridge", MTU: 1500}
		if c.MTU != 0 {
			br.MTU = c.MTU // at creation: not "set by user"
		}
		l.links[c.Name] = br
	}
	if br.Kind != "bridge" {
		return link.State{}, fmt.Errorf("bridge %s: %w: is a %s", c.Name, link.ErrMismatch, br.Kind)
	}
	if c.MTU != 0 && br.MTU != c.MTU {
		br.MTU, br.MTUSet = c.MTU, true
	}
	br.Up = true
	if c.Addr.IsValid() {
		addAddr(br, c.Addr)
	}
	return l.state(br), nil
}

func addAddr(lk *Link, p netip.Prefix) {
	if !slices.Contains(lk.Addrs, p) {
		lk.Addrs = append(lk.Addrs, p)
		slices.SortFunc(lk.Addrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
}

// Enslave follows link.Manager.Enslave, moving IPv4 addresses with
// MoveAddrs.
func (l *Links) Enslave(ctx context.Context, bridge, iface string, o link.EnslaveOptions) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "Enslave "+bridge+" "+iface)
	br, ok := l.links[bridge]
	if !ok {
		return fmt.Errorf("link %s: %w", bridge, link.ErrNotFound)
	}
	if br.Kind != "bridge" {
		return fmt.Errorf("bridge %s: %w: is a %s", bridge, link.ErrMismatch, br.Kind)
	}
	lk, ok := l.links[iface]
	if !ok {
		return fmt.Errorf("link %s: %w", iface, link.ErrNotFound)
	}
	lk.Up, lk.Master, br.Up = true, bridge, true
	if !br.MTUSet {
		// Linux: the bridge takes the smallest MTU of its ports.
		br.MTU = 0
		for _, p := range l.links {
			if p.Master == bridge && (br.MTU == 0 || p.MTU < br.MTU) {
				br.MTU = p.MTU
			}
		}
	}
	if o.MoveAddrs {
		var keep []netip.Prefix
		for _, a := range lk.Addrs {
			if a.Addr().Is4() {
				addAddr(br, a)
			} else {
				keep = append(keep, a)
			}
		}
		lk.Addrs = keep
	}
	return nil
}

// EnsureVLAN follows link.Manager.EnsureVLAN.
func (l *Links) EnsureVLAN(ctx context.Context, parent string, id uint16, mtu int) (string, error) {
	name := link.VLANName(id)
	if l.NoVLAN {
		return name, fmt.Errorf("vlan %s on %s: add: %w", name, parent, link.ErrUnsupported)
	}
	return name, l.segment("vlan", name, parent, uint32(id), netip.Addr{}, 0, mtu)
}

// EnsureVXLAN follows link.Manager.EnsureVXLAN.
func (l *Links) EnsureVXLAN(ctx context.Context, c link.VXLANConfig) (string, error) {
	name := link.VXLANName(c.VNI)
	port := c.Port
	if port == 0 {
		port = 4789
	}
	return name, l.segment("vxlan", name, c.Parent, c.VNI, c.Group, port, c.MTU)
}

func (l *Links) segment(kind, name, parent string, id uint32, group netip.Addr, port uint16, mtu int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "Ensure"+strings.ToUpper(kind)+" "+name)
	p, ok := l.links[parent]
	if !ok {
		return fmt.Errorf("%s %s: parent: link %s: %w", kind, name, parent, link.ErrNotFound)
	}
	p.Up = true
	lk, ok := l.links[name]
	if !ok {
		lk = &Link{Kind: kind, MTU: 1500, Parent: parent, ID: id, Group: group, Port: port}
		l.links[name] = lk
	}
	if lk.Kind != kind || lk.Parent != parent || lk.ID != id || lk.Port != port || (group.IsValid() && lk.Group != group) {
		return fmt.Errorf("%s %s: %w", kind, name, link.ErrMismatch)
	}
	if mtu != 0 {
		lk.MTU = mtu
	}
	lk.Up = true
	return nil
}

// Delete follows link.Manager.Delete: ports of a deleted bridge are
// released, links on a deleted parent go with it.
func (l *Links) Delete(ctx context.Context, name string) error {
	if err := ifname.Validate(name); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "Delete "+name)
	l.del(name)
	return nil
}

// DelAddr follows link.Manager.DelAddr.
func (l *Links) DelAddr(ctx context.Context, dev string, p netip.Prefix) error {
	if err := ifname.Validate(dev); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Calls = append(l.Calls, "DelAddr "+dev+" "+p.String())
	if lk, ok := l.links[dev]; ok {
		lk.Addrs = slices.DeleteFunc(lk.Addrs, func(a netip.Prefix) bool { return a == p })
	}
	return nil
}

// Ports follows link.Manager.Ports.
func (l *Links) Ports(ctx context.Context, bridge string) ([]string, error) {
	if err := ifname.Validate(bridge); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for n, lk := range l.links {
		if lk.Master == bridge {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (l *Links) del(name string) {
	if _, ok := l.links[name]; !ok {
		return
	}
	delete(l.links, name)
	for n, lk := range l.links {
		if lk.Master == name {
			lk.Master = ""
		}
		if lk.Parent == name {
			l.del(n)
		}
	}
}

// Dump renders the links, one per line, sorted by name.
func (l *Links) Dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(l.links)) {
		lk := l.links[name]
		fmt.Fprintf(&b, "link %s %s", name, lk.Kind)
		if lk.Parent != "" {
			fmt.Fprintf(&b, " parent=%s id=%d", lk.Parent, lk.ID)
		}
		if lk.Group.IsValid() {
			fmt.Fprintf(&b, " group=%s", lk.Group)
		}
		if lk.Port != 0 {
			fmt.Fprintf(&b, " port=%d", lk.Port)
		}
		state := "down"
		if lk.Up {
			state = "up"
		}
		fmt.Fprintf(&b, " %s mtu=%d", state, lk.MTU)
		if lk.Master != "" {
			fmt.Fprintf(&b, " master=%s", lk.Master)
		}
		for _, a := range lk.Addrs {
			fmt.Fprintf(&b, " %s", a)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// DHCP is an in-memory set of dnsmasq instances.
type DHCP struct {
	mu   sync.Mutex
	runs map[string]dhcpRun
	// Fail, when set, makes Ensure fail with it.
	Fail error
}

type dhcpRun struct {
	conf  string
	hosts string
}

// NewDHCP returns an empty fake.
func NewDHCP() *DHCP { return &DHCP{runs: map[string]dhcpRun{}} }

// Ensure follows hostnet.DHCPServers.Ensure: Started when not running,
// Restarted when the config differs, Reloaded when only the hosts differ.
func (d *DHCP) Ensure(ctx context.Context, c dnsmasq.Config, hosts []dnsmasq.Host) (dnsmasq.Action, error) {
	if d.Fail != nil {
		return dnsmasq.Unchanged, d.Fail
	}
	conf, err := dnsmasq.RenderConfig(c)
	if err != nil {
		return dnsmasq.Unchanged, err
	}
	h, err := dnsmasq.RenderHosts(hosts)
	if err != nil {
		return dnsmasq.Unchanged, fmt.Errorf("network %s: %w", c.Name, err)
	}
	// The config text is compact enough to show as one line in Dump.
	conf = strings.Join(strings.Split(strings.TrimSpace(conf), "\n")[1:], " ")
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.runs[c.Name]
	d.runs[c.Name] = dhcpRun{conf: conf, hosts: h}
	switch {
	case !ok:
		return dnsmasq.Started, nil
	case old.conf != conf:
		return dnsmasq.Restarted, nil
	case old.hosts != h:
		return dnsmasq.Reloaded, nil
	}
	return dnsmasq.Unchanged, nil
}

// Stop follows hostnet.DHCPServers.Stop.
func (d *DHCP) Stop(ctx context.Context, name string) (bool, error) {
	if !hostnet.ValidDHCPName(name) {
		return false, fmt.Errorf("dnsmasq %q: invalid name", name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.runs[name]
	delete(d.runs, name)
	return ok, nil
}

// Kill makes the instance disappear, as a crashed dnsmasq whose files were
// lost would.
func (d *DHCP) Kill(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.runs, name)
}

// Running lists the running instances, sorted.
func (d *DHCP) Running() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.runs))
}

// Dump renders the instances: config (one line) and hosts.
func (d *DHCP) Dump() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(d.runs)) {
		r := d.runs[name]
		fmt.Fprintf(&b, "dnsmasq %s: %s\n", name, r.conf)
		for _, h := range strings.Split(strings.TrimSpace(r.hosts), "\n") {
			if h != "" {
				fmt.Fprintf(&b, "dnsmasq %s host %s\n", name, h)
			}
		}
	}
	return b.String()
}
