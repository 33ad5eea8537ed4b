package link_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"novanet/linuxnet/link"
	"novanet/linuxnet/nstest"
)

func addrs(t *testing.T, h *netlink.Handle, name string) []netip.Prefix {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("addrs %s: %v", name, err)
	}
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

func vethPair(t *testing.T, h *netlink.Handle, a, b string) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = a
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: b}); err != nil {
		t.Fatalf("veth %s/%s: %v", a, b, err)
	}
	for _, n := range []string{a, b} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := h.LinkByName(a)
	return l
}

func TestEnsureBridgeWithAddress(t *testing.T) {
	ns := nstest.New(t)
	m := link.New(ns.Handle)
	ctx := context.Background()
	gw := netip.MustParsePrefix("10.20.0.1/24")
	for i := 0; i < 2; i++ { // second call must be a no-op
		br, err := m.EnsureBridge(ctx, link.BridgeConfig{Name: "br100", MTU: 1400, Addr: gw})
		if err != nil {
			t.Fatalf("EnsureBridge #%d: %v", i, err)
		}
		if br.MTU != 1400 || !br.Up {
			t.Errorf("bridge mtu %d up %v, want 1400 and up", br.MTU, br.Up)
		}
	}
	got := addrs(t, ns.Handle, "br100")
	if len(got) != 1 || got[0] != gw {
		t.Fatalf("br100 addresses = %v, want [%v]", got, gw)
	}
	out := ns.Run(t, "ip", "-4", "addr", "show", "dev", "br100")
	if want := "brd 10.20.0.255"; !contains(out, want) {
		t.Errorf("ip addr show br100 = %q, want %q", out, want)
	}

	// A link with the bridge's name but another kind is never modified.
	vethPair(t, ns.Handle, "notbr", "notbr-p")
	if _, err := m.EnsureBridge(ctx, link.BridgeConfig{Name: "notbr"}); !errors.Is(err, link.ErrMismatch) {
		t.Errorf("EnsureBridge on a veth: err = %v, want ErrMismatch", err)
	}

	if err := m.Delete(ctx, "br100"); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "br100"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := ns.Handle.LinkByName("br100"); err == nil {
		t.Fatal("br100 still exists after Delete")
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || (len(s) >= len(sub) && index(s, sub) >= 0) }

func index(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// An interface's address and routes through a gateway move onto the bridge,
// as nova-network's ensure_bridge did for the physical interface.
func TestEnslaveMovesAddressAndRoutes(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	m := link.New(h)
	ctx := context.Background()

	phys := vethPair(t, h, "phys0", "phys0-peer")
	ns.Run(t, "ip", "addr", "add", "192.0.2.10/24", "brd", "192.0.2.255", "dev", "phys0")
	ns.Run(t, "ip", "route", "add", "default", "via", "192.0.2.1", "dev", "phys0")
	ns.Run(t, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254", "dev", "phys0")

	if _, err := m.EnsureBridge(ctx, link.BridgeConfig{Name: "br0"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := m.Enslave(ctx, "br0", "phys0", link.EnslaveOptions{MoveAddrs: true}); err != nil {
			t.Fatalf("Enslave #%d: %v", i, err)
		}
	}
	br, _ := h.LinkByName("br0")
	l, _ := h.LinkByName("phys0")
	if l.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("phys0 master = %d, want br0 (%d)", l.Attrs().MasterIndex, br.Attrs().Index)
	}
	if got := addrs(t, h, "phys0"); len(got) != 0 {
		t.Errorf("phys0 still has %v", got)
	}
	if got := addrs(t, h, "br0"); len(got) != 1 || got[0] != netip.MustParsePrefix("192.0.2.10/24") {
		t.Errorf("br0 addresses = %v, want [192.0.2.10/24]", got)
	}
	routes, err := h.RouteList(br, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"default": "192.0.2.1", "198.51.100.0/24": "192.0.2.254"}
	for _, r := range routes {
		if r.Gw == nil {
			continue
		}
		dst := "default"
		if r.Dst != nil && r.Dst.IP.To4() != nil && !r.Dst.IP.Equal(net.IPv4zero) {
			dst = r.Dst.String()
		}
		if want[dst] == r.Gw.String() {
			delete(want, dst)
		}
	}
	if len(want) != 0 {
		t.Errorf("routes not moved to br0: %v\n%s", want, ns.Run(t, "ip", "route"))
	}
	if rs, _ := h.RouteList(phys, netlink.FAMILY_V4); len(rs) != 0 {
		t.Errorf("routes left on phys0: %v", rs)
	}
}

// A VXLAN segment on the same parent interface is created and enslaved to
// the bridge, exactly like a VLAN segment would be.
func TestVXLANSegmentEnslaved(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	m := link.New(h)
	ctx := context.Background()
	vethPair(t, h, "phys0", "phys0-peer")
	ns.Run(t, "ip", "addr", "add", "192.0.2.10/24", "dev", "phys0")

	cfg := link.VXLANConfig{Parent: "phys0", VNI: 4242, Group: netip.MustParseAddr("192.0.2.20"), Port: 4789, MTU: 1450}
	for i := 0; i < 2; i++ {
		name, err := m.EnsureVXLAN(ctx, cfg)
		if err != nil {
			t.Fatalf("EnsureVXLAN #%d: %v", i, err)
		}
		if name != "vxlan4242" {
			t.Fatalf("name = %q", name)
		}
		if _, err := m.EnsureBridge(ctx, link.BridgeConfig{Name: "br4242", Addr: netip.MustParsePrefix("10.42.0.1/24")}); err != nil {
			t.Fatal(err)
		}
		if err := m.Enslave(ctx, "br4242", name, link.EnslaveOptions{MoveAddrs: true}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := h.LinkByName("vxlan4242")
	if err != nil {
		t.Fatal(err)
	}
	v := l.(*netlink.Vxlan)
	br, _ := h.LinkByName("br4242")
	phys, _ := h.LinkByName("phys0")
	if v.VxlanId != 4242 || v.VtepDevIndex != phys.Attrs().Index || v.Port != 4789 || v.MTU != 1450 ||
		!v.Group.Equal(net.ParseIP("192.0.2.20")) || v.MasterIndex != br.Attrs().Index || v.Flags&net.FlagUp == 0 {
		t.Errorf("vxlan4242 = %+v", v)
	}
	// The parent keeps its address: only the segment is enslaved.
	if got := addrs(t, h, "phys0"); len(got) != 1 {
		t.Errorf("phys0 addresses = %v", got)
	}

	other := cfg
	other.Port = 8472
	if _, err := m.EnsureVXLAN(ctx, other); !errors.Is(err, link.ErrMismatch) {
		t.Errorf("EnsureVXLAN with another port: err = %v, want ErrMismatch", err)
	}
	for _, n := range []string{"vxlan4242", "br4242"} {
		if err := m.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
		if _, err := h.LinkByName(n); err == nil {
			t.Errorf("%s exists after Delete", n)
		}
	}
}

func TestVLANSegmentEnslaved(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	m := link.New(h)
	ctx := context.Background()
	vethPair(t, h, "phys0", "phys0-peer")

	name, err := m.EnsureVLAN(ctx, "phys0", 100, 0)
	if errors.Is(err, link.ErrUnsupported) {
		t.Skipf("kernel lacks 802.1Q VLAN support (vlan link creation failed: %v); VXLAN segment test covers the enslave logic", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.EnsureVLAN(ctx, "phys0", 100, 0); err != nil {
		t.Fatalf("second EnsureVLAN: %v", err)
	}
	if _, err := m.EnsureBridge(ctx, link.BridgeConfig{Name: "br100"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Enslave(ctx, "br100", name, link.EnslaveOptions{MoveAddrs: true}); err != nil {
		t.Fatal(err)
	}
	l, _ := h.LinkByName(name)
	v := l.(*netlink.Vlan)
	br, _ := h.LinkByName("br100")
	if v.VlanId != 100 || v.MasterIndex != br.Attrs().Index {
		t.Errorf("vlan100 = %+v", v)
	}
	if err := m.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func TestNotFoundNamesDevice(t *testing.T) {
	ns := nstest.New(t)
	m := link.New(ns.Handle)
	err := m.Enslave(context.Background(), "nobr", "noif", link.EnslaveOptions{})
	if !errors.Is(err, link.ErrNotFound) || !contains(err.Error(), "nobr") {
		t.Errorf("err = %v, want ErrNotFound naming nobr", err)
	}
	_, err = m.EnsureVXLAN(context.Background(), link.VXLANConfig{Parent: "noparent", VNI: 7})
	if !errors.Is(err, link.ErrNotFound) || !contains(err.Error(), "noparent") {
		t.Errorf("err = %v, want ErrNotFound naming noparent", err)
	}
}

func TestStatInNamespace(t *testing.T) {
	ns := nstest.New(t)
	ctx := context.Background()
	l, err := link.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, err := l.Stat(ctx, "br0"); err != nil || st.Exists {
		t.Fatalf("Stat of a missing link = %+v, %v", st, err)
	}
	if _, err := l.Stat(ctx, "bad/name"); err == nil {
		t.Error("Stat of a bad name succeeded")
	}
	ns.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	ns.Run(t, "ip", "addr", "add", "192.0.2.5/24", "dev", "eth1")
	gw := netip.MustParsePrefix("10.0.0.1/24")
	if _, err := l.EnsureBridge(ctx, link.BridgeConfig{Name: "br0", MTU: 1400, Addr: gw}); err != nil {
		t.Fatal(err)
	}
	if err := l.Enslave(ctx, "br0", "eth1", link.EnslaveOptions{MoveAddrs: true}); err != nil {
		t.Fatal(err)
	}
	br, err := l.Stat(ctx, "br0")
	if err != nil {
		t.Fatal(err)
	}
	if br.Kind != "bridge" || !br.Up || !br.HasAddr(gw) || !br.HasAddr(netip.MustParsePrefix("192.0.2.5/24")) {
		t.Errorf("br0 = %+v", br)
	}
	eth1, err := l.Stat(ctx, "eth1")
	if err != nil || eth1.Kind != "veth" || eth1.Master != "br0" || len(eth1.Addrs) != 0 {
		t.Errorf("eth1 = %+v, %v", eth1, err)
	}
	if err := l.Delete(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	if eth1, err := l.Stat(ctx, "eth1"); err != nil || eth1.Master != "" {
		t.Errorf("eth1 after bridge delete = %+v, %v", eth1, err)
	}
}

// The plain address verbs (floating IPs) and the address watch, through a
// Manager of Open.
func TestAddrsInNamespace(t *testing.T) {
	ns := nstest.New(t)
	ctx := t.Context()
	m, err := link.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ns.Run(t, "ip", "link", "add", "pub0", "type", "veth", "peer", "name", "pub0p")
	events, err := m.WatchAddrs(ctx, "pub0", 16)
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("203.0.113.7/32")
	for range 2 { // the second add finds it there
		if err := m.AddAddr(ctx, "pub0", p); err != nil {
			t.Fatal(err)
		}
	}
	if as, err := m.Addrs(ctx, "pub0"); err != nil || !slices.Contains(as, p) {
		t.Errorf("Addrs after AddAddr = %v, %v; want %s", as, err, p)
	}
	// Only p's events count (the kernel may add others of its own).
	next := func() link.AddrEvent {
		for ev := range events {
			if ev.Prefix == p {
				return ev
			}
		}
		t.Fatal("address watch ended")
		return link.AddrEvent{}
	}
	if ev := next(); ev != (link.AddrEvent{Dev: "pub0", Prefix: p, Added: true}) {
		t.Errorf("first event %+v, want %s added", ev, p)
	}
	for range 2 { // the second delete finds it gone
		if err := m.DelAddr(ctx, "pub0", p); err != nil {
			t.Fatal(err)
		}
	}
	if ev := next(); ev != (link.AddrEvent{Dev: "pub0", Prefix: p, Added: false}) {
		t.Errorf("second event %+v, want %s removed", ev, p)
	}
	if as, err := m.Addrs(ctx, "pub0"); err != nil || slices.Contains(as, p) {
		t.Errorf("Addrs after DelAddr = %v, %v", as, err)
	}
	if err := m.DelAddr(ctx, "gone0", p); err != nil {
		t.Errorf("DelAddr on a missing link = %v, want nil", err)
	}
	if err := m.AddAddr(ctx, "gone0", p); !errors.Is(err, link.ErrNotFound) {
		t.Errorf("AddAddr on a missing link = %v, want ErrNotFound", err)
	}
}
