// Package netcalc splits a fixed range into networks the way nova-manage's
// `network create` did: NUM networks of SIZE addresses taken from the start
// of the range, with gateway, broadcast, DHCP start, reserved addresses and,
// in VLAN mode, consecutive VLANs, bridges and VPN ports. It is pure logic:
// no database, no kernel.
package netcalc

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"

	"novanet/ifname"
)

// Limits on what one request may create. They keep a single create within
// a bulk insert of well under a few seconds.
const (
	MinNetworkSize     = 4       // network, gateway, broadcast and one host
	MinVLANNetworkSize = 8       // plus the VPN address
	MaxNetworkSize     = 1 << 16 // a /16
	MaxAddresses       = 1 << 18 // NUM_NETWORKS × NETWORK_SIZE per request
	MaxNumNetworks     = 4094
	DefaultVLANStart   = 100
	// DefaultVPNPortBase: without --vpn-start a VLAN network's VPN port is
	// DefaultVPNPortBase + its VLAN, unique because the VLAN is.
	DefaultVPNPortBase = 900
	DefaultLabel       = "private"
	DefaultFlatBridge  = "br100"
	IPv6SubnetPrefix   = 64
)

// ErrInvalid is wrapped by every validation error Split returns.
var ErrInvalid = errors.New("invalid argument")

// FieldError says which argument was bad and why.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func bad(field, value, format string, args ...any) error {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Request is what an operator asks for. Zero values mean "default".
type Request struct {
	Label           string
	CIDR            string // FIXED_RANGE, e.g. 10.0.0.0/8
	NumNetworks     int
	NetworkSize     int
	VLAN            bool // VLAN mode: one VLAN, bridge and VPN port per network
	VLANStart       int  // first VLAN in VLAN mode (default 100)
	VPNStart        int  // first VPN public port in VLAN mode (default 900+VLAN)
	Bridge          string
	BridgeInterface string
	Gateway         string // only with one network
	CIDRv6          string
	GatewayV6       string // only with one network
	DNS1, DNS2      string
	DHCPServer      string // default: the gateway
	MTU             int
}

// Network is one network to create. Reserved holds every address of CIDR
// that must never be handed to an instance.
type Network struct {
	Label             string
	CIDR              netip.Prefix
	Netmask           netip.Addr
	Gateway           netip.Addr
	Broadcast         netip.Addr
	DHCPStart         netip.Addr
	DHCPServer        netip.Addr
	CIDRv6            netip.Prefix // zero when none
	GatewayV6         netip.Addr   // zero when none
	VLAN              int          // 0 outside VLAN mode
	Bridge            string
	VPNPrivateAddress netip.Addr // zero outside VLAN mode
	VPNPublicPort     int        // 0 outside VLAN mode
	Reserved          []netip.Addr
}

// Size is the number of addresses in the network.
func (n Network) Size() int { return 1 << (32 - n.CIDR.Bits()) }

// ParsePrefix parses a CIDR that must name a network: no host bits set.
func ParsePrefix(field, s string, v6 bool) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, bad(field, s, "not a CIDR (want e.g. %s)", map[bool]string{false: "10.0.0.0/8", true: "fd00::/48"}[v6])
	}
	if p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return netip.Prefix{}, bad(field, s, "not a plain CIDR")
	}
	if p.Addr().Is6() != v6 {
		want := "IPv4"
		if v6 {
			want = "IPv6"
		}
		return netip.Prefix{}, bad(field, s, "not an %s CIDR", want)
	}
	if p.Masked() != p {
		return netip.Prefix{}, bad(field, s, "host bits set (the network is %s)", p.Masked())
	}
	return p, nil
}

// ParseAddr parses an IP address of the wanted family (either when
// family is 0).
func ParseAddr(field, s string, family int) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, bad(field, s, "not an IP address")
	}
	if (family == 4 && !a.Is4()) || (family == 6 && !a.Is6()) {
		return netip.Addr{}, bad(field, s, "not an IPv%d address", family)
	}
	return a, nil
}

// Blocks no network may overlap: they are not for hosts, so a bridge
// given an address from one of them breaks the host (loopback) or does
// nothing useful.
var unusable = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (RFC 1122), not for hosts`},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (RFC 1112)"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// CheckUsable refuses a range that overlaps a block no network may use:
// 0.0.0.0/8, loopback, link-local, multicast, 240.0.0.0/4 and the
// broadcast address, and their IPv6 counterparts (0.0.0.0/0 overlaps them
// all). The error names the block.
func CheckUsable(field string, p netip.Prefix) error {
	for _, u := range unusable {
		if u.p.Addr().Is4() == p.Addr().Is4() && u.p.Overlaps(p) {
			return bad(field, p.String(), "overlaps %s: %s", u.p, u.why)
		}
	}
	return nil
}

// CheckHostAddr refuses an address that cannot be one host's: the
// unspecified address, a multicast address or the limited broadcast
// address (for DNS servers, the DHCP server, the VPN public address).
func CheckHostAddr(field string, a netip.Addr) error {
	switch {
	case a.IsUnspecified():
		return bad(field, a.String(), "the unspecified address, not a host's")
	case a.IsMulticast():
		return bad(field, a.String(), "a multicast address, not a host's")
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return bad(field, a.String(), "the limited broadcast address, not a host's")
	}
	return nil
}

func log2(n int) (int, bool) {
	if n <= 0 || n&(n-1) != 0 {
		return 0, false
	}
	return bits.TrailingZeros(uint(n)), true
}

// Nth returns the address n places after a (n may be 0).
func Nth(a netip.Addr, n uint64) netip.Addr {
	b := a.As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func nth6(p netip.Prefix, n uint64) netip.Addr {
	b := p.Addr().As16()
	for i := 15; i >= 0 && n > 0; i-- {
		s := uint64(b[i]) + n&0xff
		b[i] = byte(s)
		n = n>>8 + s>>8
	}
	return netip.AddrFrom16(b)
}

func mask4(bitsOn int) netip.Addr {
	m := ^uint32(0) << (32 - bitsOn)
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)})
}

// Split validates req and returns the networks it describes, in order. It
// checks only the request itself; overlap with existing networks, used VLANs
// and bridges are for the caller, who knows what exists.
func Split(req Request) ([]Network, error) {
	if req.Label == "" {
		req.Label = DefaultLabel
	}
	if len(req.Label) > 200 {
		return nil, bad("label", req.Label[:20]+"…", "longer than 200 bytes")
	}
	fixed, err := ParsePrefix("fixed range", req.CIDR, false)
	if err != nil {
		return nil, err
	}
	if err := CheckUsable("fixed range", fixed); err != nil {
		return nil, err
	}
	if req.NumNetworks < 1 || req.NumNetworks > MaxNumNetworks {
		return nil, bad("number of networks", strconv.Itoa(req.NumNetworks), "must be between 1 and %d", MaxNumNetworks)
	}
	minSize := MinNetworkSize
	if req.VLAN {
		minSize = MinVLANNetworkSize
	}
	sizeBits, pow2 := log2(req.NetworkSize)
	switch {
	case !pow2:
		return nil, bad("network size", strconv.Itoa(req.NetworkSize), "not a power of two")
	case req.NetworkSize < minSize:
		return nil, bad("network size", strconv.Itoa(req.NetworkSize), "smaller than %d, the least that leaves an address for an instance", minSize)
	case req.NetworkSize > MaxNetworkSize:
		return nil, bad("network size", strconv.Itoa(req.NetworkSize), "larger than %d (a /16), the largest accepted", MaxNetworkSize)
	}
	total := req.NumNetworks * req.NetworkSize
	if total > MaxAddresses {
		return nil, bad("number of networks", strconv.Itoa(req.NumNetworks),
			"%d networks of %d make %d addresses, more than %d in one request", req.NumNetworks, req.NetworkSize, total, MaxAddresses)
	}
	rangeSize := uint64(1) << (32 - fixed.Bits())
	if uint64(total) > rangeSize {
		return nil, bad("fixed range", req.CIDR, "%d networks of %d addresses do not fit in its %d addresses", req.NumNetworks, req.NetworkSize, rangeSize)
	}
	prefixLen := 32 - sizeBits

	var gateway, gatewayV6, dhcpServer netip.Addr
	if req.NumNetworks > 1 {
		for field, v := range map[string]string{"gateway": req.Gateway, "IPv6 gateway": req.GatewayV6, "dhcp server": req.DHCPServer} {
			if v != "" {
				return nil, bad(field, v, "only for a single network, not %d", req.NumNetworks)
			}
		}
	}
	if req.Gateway != "" {
		if gateway, err = ParseAddr("gateway", req.Gateway, 4); err != nil {
			return nil, err
		}
	}
	if req.DHCPServer != "" {
		if dhcpServer, err = ParseAddr("dhcp server", req.DHCPServer, 4); err != nil {
			return nil, err
		}
		if err := CheckHostAddr("dhcp server", dhcpServer); err != nil {
			return nil, err
		}
	}
	for field, v := range map[string]string{"dns1": req.DNS1, "dns2": req.DNS2} {
		if v != "" {
			a, err := ParseAddr(field, v, 0)
			if err != nil {
				return nil, err
			}
			if err := CheckHostAddr(field, a); err != nil {
				return nil, err
			}
		}
	}
	if req.MTU != 0 && (req.MTU < 68 || req.MTU > 65535) {
		return nil, bad("mtu", strconv.Itoa(req.MTU), "must be between 68 and 65535")
	}
	if req.BridgeInterface != "" {
		if err := ifname.Validate(req.BridgeInterface); err != nil {
			return nil, bad("bridge interface", req.BridgeInterface, "%v", err)
		}
	}
	if req.Bridge != "" {
		if err := ifname.Validate(req.Bridge); err != nil {
			return nil, bad("bridge", req.Bridge, "%v", err)
		}
	}

	var v6 netip.Prefix
	if req.CIDRv6 != "" {
		if v6, err = ParsePrefix("IPv6 range", req.CIDRv6, true); err != nil {
			return nil, err
		}
		if err := CheckUsable("IPv6 range", v6); err != nil {
			return nil, err
		}
		if v6.Bits() > IPv6SubnetPrefix {
			return nil, bad("IPv6 range", req.CIDRv6, "longer than /%d; each network gets a /%d", IPv6SubnetPrefix, IPv6SubnetPrefix)
		}
		if room := IPv6SubnetPrefix - v6.Bits(); room < 63 && uint64(req.NumNetworks) > uint64(1)<<room {
			return nil, bad("IPv6 range", req.CIDRv6, "holds %d /%d subnets, fewer than %d networks", uint64(1)<<room, IPv6SubnetPrefix, req.NumNetworks)
		}
		if req.GatewayV6 != "" {
			if gatewayV6, err = ParseAddr("IPv6 gateway", req.GatewayV6, 6); err != nil {
				return nil, err
			}
		}
	} else if req.GatewayV6 != "" {
		return nil, bad("IPv6 gateway", req.GatewayV6, "given without an IPv6 range")
	}

	if req.VLAN {
		if req.VLANStart == 0 {
			req.VLANStart = DefaultVLANStart
		}
		if req.VLANStart < 1 || req.VLANStart > 4094 {
			return nil, bad("vlan start", strconv.Itoa(req.VLANStart), "outside 1-4094")
		}
		if last := req.VLANStart + req.NumNetworks - 1; last > 4094 {
			return nil, bad("vlan start", strconv.Itoa(req.VLANStart), "%d networks would need VLANs up to %d, past 4094", req.NumNetworks, last)
		}
		if req.VPNStart != 0 && (req.VPNStart < 1 || req.VPNStart+req.NumNetworks-1 > 65535) {
			return nil, bad("vpn start", strconv.Itoa(req.VPNStart), "ports must stay within 1-65535")
		}
		if req.Bridge != "" && req.NumNetworks > 1 {
			return nil, bad("bridge", req.Bridge, "one bridge cannot serve %d VLAN networks; leave it out to get br<VLAN>", req.NumNetworks)
		}
	} else {
		if req.VLANStart != 0 {
			return nil, bad("vlan start", strconv.Itoa(req.VLANStart), "only for VLAN mode")
		}
		if req.VPNStart != 0 {
			return nil, bad("vpn start", strconv.Itoa(req.VPNStart), "only for VLAN mode")
		}
		if req.Bridge == "" {
			req.Bridge = DefaultFlatBridge
		}
	}

	nets := make([]Network, 0, req.NumNetworks)
	for i := 0; i < req.NumNetworks; i++ {
		base := Nth(fixed.Addr(), uint64(i)*uint64(req.NetworkSize))
		p := netip.PrefixFrom(base, prefixLen)
		n := Network{
			Label:     req.Label,
			CIDR:      p,
			Netmask:   mask4(prefixLen),
			Gateway:   Nth(base, 1),
			Broadcast: Nth(base, uint64(req.NetworkSize-1)),
			DHCPStart: Nth(base, 2),
			Bridge:    req.Bridge,
		}
		if req.NumNetworks > 1 {
			n.Label = fmt.Sprintf("%s_%d", req.Label, i)
		}
		reserved := []netip.Addr{base, n.Gateway}
		if gateway.IsValid() {
			if !p.Contains(gateway) || gateway == base || gateway == n.Broadcast {
				return nil, bad("gateway", req.Gateway, "not a host address of %s", p)
			}
			n.Gateway = gateway
			reserved = append(reserved, gateway)
		}
		n.DHCPServer = n.Gateway
		if dhcpServer.IsValid() {
			n.DHCPServer = dhcpServer
			if p.Contains(dhcpServer) {
				reserved = append(reserved, dhcpServer)
			}
		}
		if req.VLAN {
			n.VLAN = req.VLANStart + i
			if n.Bridge == "" {
				n.Bridge = "br" + strconv.Itoa(n.VLAN)
			}
			n.VPNPrivateAddress = Nth(base, 2)
			n.DHCPStart = Nth(base, 3)
			reserved = append(reserved, n.VPNPrivateAddress)
			if req.VPNStart != 0 {
				n.VPNPublicPort = req.VPNStart + i
			} else {
				n.VPNPublicPort = DefaultVPNPortBase + n.VLAN
			}
		}
		reserved = append(reserved, n.Broadcast)
		n.Reserved = dedupe(reserved)
		if v6.IsValid() {
			sub := shift6(v6.Addr(), uint64(i))
			n.CIDRv6 = sub
			n.GatewayV6 = nth6(sub, 1)
			if gatewayV6.IsValid() {
				if !sub.Contains(gatewayV6) {
					return nil, bad("IPv6 gateway", req.GatewayV6, "not in %s", sub)
				}
				n.GatewayV6 = gatewayV6
			}
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// shift6 returns the i-th /64 after the one a starts.
func shift6(a netip.Addr, i uint64) netip.Prefix {
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	hi += i
	for k := 0; k < 8; k++ {
		b[k] = byte(hi >> (56 - 8*k))
	}
	for k := 8; k < 16; k++ {
		b[k] = 0
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), IPv6SubnetPrefix)
}

func dedupe(as []netip.Addr) []netip.Addr {
	out := as[:0]
	seen := make(map[netip.Addr]bool, len(as))
	for _, a := range as {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare) // stable output
	return out
}
