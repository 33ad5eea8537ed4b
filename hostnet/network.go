package hostnet

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"novanet/ifname"
	"novanet/linuxnet/dnsmasq"
	"novanet/rpc"
)

// ErrInvalidNetwork is wrapped by every error about a field of an
// rpc.HostNetwork (or, in package floating, an rpc.HostFloatingIP) that
// cannot be used on the host.
var ErrInvalidNetwork = errors.New("invalid network")

// ErrInvalidConfig is wrapped by errors about the host's own Config.
var ErrInvalidConfig = errors.New("invalid host config")

// Driver names.
const (
	DriverFlat     = "flat"
	DriverFlatDHCP = "flatdhcp"
	DriverVLAN     = "vlan"
)

// Network is an rpc.HostNetwork parsed into typed values. Only ParseNetwork
// makes one, so every field has been checked.
type Network struct {
	ID    int64
	Label string
	CIDR  netip.Prefix // canonical (masked)
	// Gateway is the gateway address with the prefix length of CIDR; zero
	// when the network has no gateway.
	Gateway netip.Prefix
	// CIDRv6 is the network's IPv6 /64 (canonical) and GatewayV6 the
	// bridge's address in it with /64; both zero for an IPv4-only network.
	// The network's dnsmasq advertises CIDRv6 for SLAAC.
	CIDRv6     netip.Prefix
	GatewayV6  netip.Prefix
	DHCPStart  netip.Addr // zero when unset
	DNS        []netip.Addr
	VLAN       uint16 // 0 when unset
	Bridge     string
	BridgeIf   string // network.BridgeInterface; empty when unset
	MTU        int    // 0 when unset
	EnableDHCP bool
	VPN        *VPN // nil when the network has no VPN
	Hosts      []dnsmasq.Host
	// Layer2Only: the host only carries the network's layer 2 for its
	// instances (bridge, and segment in VLAN mode); another host serves
	// it, so no gateway address, no dnsmasq, no DHCP or VPN rules here.
	Layer2Only bool
	// Peers are the other networks the host serves on the same bridge
	// (every flat network gets br100 unless told otherwise), by ID, set
	// by ShareBridges: the bridge carries all their gateways and runs one
	// dnsmasq with a range per network. Peers have no Peers themselves.
	Peers []Network
}

// VPN is a network's cloudpipe forward: VPNPublic:VPNPort -> Private:1194.
type VPN struct {
	Public  netip.Addr
	Port    uint16
	Private netip.Addr
}

// VPNPrivatePort is the port the VPN instance listens on, as in nova.
const VPNPrivatePort = 1194

var macRe = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)

// ParseNetwork checks n and returns its typed form. Errors wrap
// ErrInvalidNetwork and name the network and the bad value.
func ParseNetwork(n rpc.HostNetwork) (Network, error) {
	bad := func(format string, args ...any) (Network, error) {
		return Network{}, fmt.Errorf("%w: network %d: %s", ErrInvalidNetwork, n.ID, fmt.Sprintf(format, args...))
	}
	out := Network{ID: n.ID, Label: n.Label, Bridge: n.Bridge, BridgeIf: n.BridgeInterface, EnableDHCP: n.EnableDHCP,
		Layer2Only: n.Layer2Only}
	if n.ID <= 0 {
		return bad("id %d: want a positive id", n.ID)
	}
	if err := ifname.Validate(n.Bridge); err != nil {
		return bad("bridge: %v", err)
	}
	if n.BridgeInterface != "" {
		if err := ifname.Validate(n.BridgeInterface); err != nil {
			return bad("bridge interface: %v", err)
		}
	}
	cidr, err := netip.ParsePrefix(n.CIDR)
	if err != nil {
		return bad("cidr %q: %v", n.CIDR, err)
	}
	if cidr != cidr.Masked() {
		return bad("cidr %q: host bits set (want %s)", n.CIDR, cidr.Masked())
	}
	out.CIDR = cidr
	if n.Gateway != "" {
		gw, err := ParseAddr("gateway", n.Gateway)
		if err != nil {
			return bad("%v", err)
		}
		if !cidr.Contains(gw) || gw == cidr.Addr() {
			return bad("gateway %s: not a host address of %s", gw, cidr)
		}
		out.Gateway = netip.PrefixFrom(gw, cidr.Bits())
	}
	if n.CIDRv6 != "" {
		v6, err := netip.ParsePrefix(n.CIDRv6)
		if err != nil {
			return bad("cidr_v6 %q: %v", n.CIDRv6, err)
		}
		if !v6.Addr().Is6() || v6.Addr().Is4In6() || v6.Bits() != 64 || v6 != v6.Masked() {
			return bad("cidr_v6 %q: want a canonical IPv6 /64 (SLAAC)", n.CIDRv6)
		}
		out.CIDRv6 = v6
		if n.GatewayV6 != "" {
			gw, err := ParseAddr("gateway_v6", n.GatewayV6)
			if err != nil {
				return bad("%v", err)
			}
			if !v6.Contains(gw) || gw == v6.Addr() {
				return bad("gateway_v6 %s: not a host address of %s", gw, v6)
			}
			out.GatewayV6 = netip.PrefixFrom(gw, 64)
		}
	} else if n.GatewayV6 != "" {
		return bad("gateway_v6 %q: given without cidr_v6", n.GatewayV6)
	}
	if n.DHCPStart != "" {
		s, err := ParseAddr("dhcp start", n.DHCPStart)
		if err != nil {
			return bad("%v", err)
		}
		if !cidr.Contains(s) {
			return bad("dhcp start %s: not in %s", s, cidr)
		}
		out.DHCPStart = s
	}
	for _, d := range n.DNS {
		a, err := ParseAddr("dns server", d)
		if err != nil {
			return bad("%v", err)
		}
		out.DNS = append(out.DNS, a)
	}
	if n.VLAN != 0 {
		if n.VLAN < 1 || n.VLAN > 4094 {
			return bad("vlan %d: out of range 1-4094", n.VLAN)
		}
		out.VLAN = uint16(n.VLAN)
	}
	if n.MTU != 0 {
		if n.MTU < 576 || n.MTU > 65535 {
			return bad("mtu %d: out of range 576-65535", n.MTU)
		}
		out.MTU = n.MTU
	}
	if vpn, err := parseVPN(n); err != nil {
		return bad("%v", err)
	} else {
		out.VPN = vpn
	}
	seenMAC := map[string]bool{}
	seenIP := map[netip.Addr]bool{}
	for _, h := range n.DHCPHosts {
		host, err := parseDHCPHost(h)
		if err != nil {
			return bad("%v", err)
		}
		if !cidr.Contains(host.IP) {
			return bad("dhcp host %s: address %s not in %s", host.MAC, host.IP, cidr)
		}
		if out.Gateway.IsValid() && host.IP == out.Gateway.Addr() {
			return bad("dhcp host %s: address %s is the gateway", host.MAC, host.IP)
		}
		if seenMAC[host.MAC.String()] {
			return bad("dhcp host %s: duplicate mac", host.MAC)
		}
		if seenIP[host.IP] {
			return bad("dhcp host %s: duplicate address %s", host.MAC, host.IP)
		}
		seenMAC[host.MAC.String()], seenIP[host.IP] = true, true
		out.Hosts = append(out.Hosts, host)
	}
	return out, nil
}

// ParseNetworks parses the networks of one host state: the ones that
// parse, in order, and the errors of the others, joined.
func ParseNetworks(nets []rpc.HostNetwork) ([]Network, error) {
	out := make([]Network, 0, len(nets))
	var errs []error
	for _, n := range nets {
		p, err := ParseNetwork(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// parseVPN returns the network's VPN forward. A VLAN network always has a
// VPN port and private address, but a public address only when the
// operator gave one (netadm network create --vpn-public-address): without
// it there is nothing to forward, so no VPN rule.
func parseVPN(n rpc.HostNetwork) (*VPN, error) {
	if n.VPNPublicAddress == "" {
		return nil, nil
	}
	if n.VPNPublicAddress == "" || n.VPNPrivateAddress == "" || n.VPNPublicPort == 0 {
		return nil, fmt.Errorf("vpn %q:%d -> %q: want public address, port and private address together",
			n.VPNPublicAddress, n.VPNPublicPort, n.VPNPrivateAddress)
	}
	pub, err := ParseAddr("vpn public address", n.VPNPublicAddress)
	if err != nil {
		return nil, err
	}
	priv, err := ParseAddr("vpn private address", n.VPNPrivateAddress)
	if err != nil {
		return nil, err
	}
	if pub.Is4() != priv.Is4() {
		return nil, fmt.Errorf("vpn %s -> %s: mixed address families", pub, priv)
	}
	if n.VPNPublicPort < 1 || n.VPNPublicPort > 65535 {
		return nil, fmt.Errorf("vpn public port %d: out of range 1-65535", n.VPNPublicPort)
	}
	return &VPN{Public: pub, Port: uint16(n.VPNPublicPort), Private: priv}, nil
}

// ParseAddr parses an address of the manager's strictly: no zone, no
// IPv4-mapped IPv6. what names the field in the error.
func ParseAddr(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q: %w", what, s, err)
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%s %q: want a plain IPv4 or IPv6 address", what, s)
	}
	return a, nil
}

// parseDHCPHost checks one reservation: the MAC in colon form
// (aa:bb:cc:dd:ee:ff, 6 bytes), an IPv4 address, and an optional hostname
// (one DNS label). Errors name the value.
func parseDHCPHost(h rpc.DHCPHost) (dnsmasq.Host, error) {
	if !macRe.MatchString(h.MAC) {
		return dnsmasq.Host{}, fmt.Errorf("dhcp host %q: mac: want six colon-separated hex bytes", h.MAC)
	}
	mac, err := net.ParseMAC(h.MAC)
	if err != nil || len(mac) != 6 {
		return dnsmasq.Host{}, fmt.Errorf("dhcp host %q: mac: %v", h.MAC, err)
	}
	ip, err := ParseAddr("address", h.Address)
	if err != nil {
		return dnsmasq.Host{}, fmt.Errorf("dhcp host %s: %w", mac, err)
	}
	if !ip.Is4() {
		return dnsmasq.Host{}, fmt.Errorf("dhcp host %s: address %s: want IPv4", mac, ip)
	}
	if h.Hostname != "" && !labelRe.MatchString(h.Hostname) {
		return dnsmasq.Host{}, fmt.Errorf("dhcp host %s: hostname %q: want one DNS label", mac, h.Hostname)
	}
	return dnsmasq.Host{MAC: mac, IP: ip, Hostname: h.Hostname}, nil
}

var (
	labelRe    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	dhcpNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
)

// DHCPName is the name of a bridge's dnsmasq instance (and of its
// directory under Config.DHCPDir), shared by every network on the bridge:
// the bridge name when it is usable as a dnsmasq name (1-32 of
// [A-Za-z0-9_-]), else "x" and the name in hex.
func DHCPName(bridge string) string {
	if dhcpNameRe.MatchString(bridge) {
		return bridge
	}
	return "x" + hex.EncodeToString([]byte(bridge))
}

// ShareBridges returns nets (in their order) with Peers set: each
// network's Peers are the other networks of nets on its bridge, by ID.
func ShareBridges(nets []Network) []Network {
	byBridge := map[string][]Network{}
	for _, n := range nets {
		n.Peers = nil
		byBridge[n.Bridge] = append(byBridge[n.Bridge], n)
	}
	out := make([]Network, len(nets))
	for i, n := range nets {
		out[i] = n
		out[i].Peers = nil
		for _, p := range byBridge[n.Bridge] {
			if p.ID != n.ID {
				out[i].Peers = append(out[i].Peers, p)
			}
		}
		slices.SortFunc(out[i].Peers, func(a, b Network) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out
}

// servedGateway is the address n puts on its bridge: its gateway, unless
// the host only carries n's layer 2.
func (n Network) servedGateway() netip.Prefix {
	if n.Layer2Only {
		return netip.Prefix{}
	}
	return n.Gateway
}

// servedGatewayV6 is the IPv6 gateway address the host puts on the bridge
// for n: none for a Layer2Only network.
func (n Network) servedGatewayV6() netip.Prefix {
	if n.Layer2Only {
		return netip.Prefix{}
	}
	return n.GatewayV6
}

// onBridge returns n and its peers, by ID: every network on n's bridge.
func (n Network) onBridge() []Network {
	all := append([]Network{n}, n.Peers...)
	for i := range all {
		all[i].Peers = nil
	}
	slices.SortFunc(all, func(a, b Network) int { return cmp.Compare(a.ID, b.ID) })
	return all
}

// ValidDHCPName reports whether name can name a dnsmasq instance (and a
// directory: it cannot contain a path separator or be "." or "..").
func ValidDHCPName(name string) bool { return dhcpNameRe.MatchString(name) }

// String returns "network ID (bridge)" for messages.
func (n Network) String() string {
	var b strings.Builder
	b.WriteString("network " + strconv.FormatInt(n.ID, 10))
	if n.Bridge != "" {
		b.WriteString(" (" + n.Bridge + ")")
	}
	return b.String()
}
