package hostnet

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"

	"novanet/linuxnet/ebtables"
	"novanet/linuxnet/link"
)

// instancePort is an instance's view on one bridge: its MAC and its fixed
// IPv4 addresses (from the DHCP reservations of every network on the
// bridge).
type instancePort struct {
	mac   net.HardwareAddr
	addrs []netip.Addr
}

// TapMAC is the MAC a hypervisor gives the host side of an instance's tap
// under libvirt's convention (and nova's): the instance's MAC with the
// first octet 0xfe, so that the bridge never sees its own port's address
// as a frame's source.
func TapMAC(mac net.HardwareAddr) net.HardwareAddr {
	t := slices.Clone(mac)
	if len(t) > 0 {
		t[0] = 0xfe
	}
	return t
}

// AntiSpoofRules computes the bridge-family rules that keep every
// instance port of the host's bridges to its own addresses. ports are the
// ports of each bridge (BridgePorts). A port is an instance's port when
// its MAC is the instance's MAC (a DHCP reservation of a network on the
// bridge) or TapMAC of it; other ports (uplinks, the hypervisor's own
// devices) are not filtered. For each instance port P with MAC M and
// fixed IPv4 addresses A, in order:
//
//   - -s ! M -i P DROP: frames carry only M;
//   - IPv4 from 0.0.0.0 udp 68 -> 67 RETURN (DHCP before an address);
//   - IPv4 from each of A RETURN, then any other IPv4 DROP;
//   - ARP with sender M and sender address each of A, or 0.0.0.0 (an
//     RFC 5227 probe), RETURN, then any other ARP DROP.
//
// IPv6 and other protocols are bound by the MAC rule only. Ports are
// ordered by bridge and name, so the result is stable.
func AntiSpoofRules(nets []Network, ports map[string][]link.Port) ([]ebtables.Rule, error) {
	byBridge := map[string]map[string]*instancePort{} // bridge -> MAC string -> instance
	add := func(n Network) {
		m := byBridge[n.Bridge]
		if m == nil {
			m = map[string]*instancePort{}
			byBridge[n.Bridge] = m
		}
		for _, h := range n.Hosts {
			if len(h.MAC) != 6 {
				continue
			}
			ip := m[h.MAC.String()]
			if ip == nil {
				ip = &instancePort{mac: h.MAC}
				m[h.MAC.String()] = ip
			}
			if h.IP.Is4() && !slices.Contains(ip.addrs, h.IP) {
				ip.addrs = append(ip.addrs, h.IP)
			}
		}
	}
	for _, n := range nets {
		add(n)
		for _, p := range n.Peers {
			add(p)
		}
	}
	bridges := make([]string, 0, len(byBridge))
	for b := range byBridge {
		bridges = append(bridges, b)
	}
	slices.Sort(bridges)
	var rules []ebtables.Rule
	for _, br := range bridges {
		ps := slices.Clone(ports[br])
		slices.SortFunc(ps, func(a, b link.Port) int { return cmp.Compare(a.Name, b.Name) })
		for _, p := range ps {
			inst := matchPort(byBridge[br], p.MAC)
			if inst == nil {
				continue
			}
			addrs := slices.SortedFunc(slices.Values(inst.addrs), netip.Addr.Compare)
			rules = append(rules,
				ebtables.Rule{InIface: p.Name, SrcMAC: inst.mac, NotSrcMAC: true, Target: ebtables.Drop},
				ebtables.Rule{InIface: p.Name, Proto: ebtables.IPv4, IPSrc: netip.IPv4Unspecified(),
					UDPSrcPort: 68, UDPDstPort: 67, Target: ebtables.Return})
			for _, a := range addrs {
				rules = append(rules, ebtables.Rule{InIface: p.Name, Proto: ebtables.IPv4, IPSrc: a, Target: ebtables.Return})
			}
			rules = append(rules, ebtables.Rule{InIface: p.Name, Proto: ebtables.IPv4, Target: ebtables.Drop})
			for _, a := range append(addrs, netip.IPv4Unspecified()) {
				rules = append(rules, ebtables.Rule{InIface: p.Name, Proto: ebtables.ARP, IPSrc: a, ARPMACSrc: inst.mac, Target: ebtables.Return})
			}
			rules = append(rules, ebtables.Rule{InIface: p.Name, Proto: ebtables.ARP, Target: ebtables.Drop})
		}
	}
	// Every rule is built from checked values; render once to be sure.
	if _, err := ebtables.Render(ebtables.DefaultChain, rules); err != nil {
		return nil, fmt.Errorf("anti-spoofing: %w", err)
	}
	return rules, nil
}

func matchPort(insts map[string]*instancePort, mac net.HardwareAddr) *instancePort {
	if len(mac) != 6 {
		return nil
	}
	if ip := insts[mac.String()]; ip != nil {
		return ip
	}
	if mac[0] != 0xfe {
		return nil
	}
	for _, ip := range insts {
		if bytes.Equal(TapMAC(ip.mac), mac) {
			return ip
		}
	}
	return nil
}

// portLister lists a bridge's ports; *link.Manager is the real one.
type portLister interface {
	BridgePorts(ctx context.Context, bridge string) ([]link.Port, error)
}

// ruleApplier replaces the anti-spoofing chain; *ebtables.Manager is the
// real one.
type ruleApplier interface {
	Apply(ctx context.Context, rules []ebtables.Rule) error
}

// AntiSpoof keeps the anti-spoofing rules of a host: on every Apply it
// reads the ports of the networks' bridges and replaces the whole chain in
// one transaction.
type AntiSpoof struct {
	ports portLister
	eb    ruleApplier
	last  []ebtables.Rule
	ok    bool // last was applied
}

// NewAntiSpoof returns an AntiSpoof reading ports with ports (a
// *link.Manager of the host's namespace) and applying with eb (an
// *ebtables.Manager of the same namespace).
func NewAntiSpoof(ports portLister, eb ruleApplier) *AntiSpoof {
	return &AntiSpoof{ports: ports, eb: eb}
}

// Apply sets the rules for the host serving nets (all of them). It
// reports whether the rules differ from the last applied ones.
func (a *AntiSpoof) Apply(ctx context.Context, nets []Network) (bool, error) {
	ports := map[string][]link.Port{}
	for _, n := range nets {
		for _, br := range append([]string{n.Bridge}, bridgesOf(n.Peers)...) {
			if _, done := ports[br]; done {
				continue
			}
			ps, err := a.ports.BridgePorts(ctx, br)
			if err != nil {
				return false, fmt.Errorf("anti-spoofing: %w", err)
			}
			ports[br] = ps
		}
	}
	rules, err := AntiSpoofRules(nets, ports)
	if err != nil {
		return false, err
	}
	if err := a.eb.Apply(ctx, rules); err != nil {
		a.ok = false
		return false, fmt.Errorf("anti-spoofing: %w", err)
	}
	changed := !a.ok || !reflect.DeepEqual(rules, a.last)
	a.last, a.ok = rules, true
	return changed, nil
}

func bridgesOf(nets []Network) []string {
	var out []string
	for _, n := range nets {
		out = append(out, n.Bridge)
	}
	return out
}

var (
	_ portLister  = (*link.Manager)(nil)
	_ ruleApplier = (*ebtables.Manager)(nil)
)
