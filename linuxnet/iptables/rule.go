package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"novanet/ifname"
)

// Family is an IP family: IPv4 (iptables) or IPv6 (ip6tables).
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

func (f Family) has(a netip.Addr) bool {
	return (f == IPv4 && a.Is4()) || (f == IPv6 && a.Is6() && !a.Is4In6())
}

// Table is an iptables table the manager works in.
type Table string

const (
	Filter Table = "filter"
	NAT    Table = "nat"
)

// Tables lists the tables the manager owns chains in, in render order.
var tables = []Table{Filter, NAT}

// Proto is the protocol match of a rule.
type Proto uint8

const (
	AnyProto Proto = iota
	TCP
	UDP
	ICMP // icmp for IPv4, ipv6-icmp for IPv6
)

// CTState is a set of conntrack states (-m conntrack --ctstate).
type CTState uint8

const (
	CTNew CTState = 1 << iota
	CTRelated
	CTEstablished
)

func (s CTState) String() string {
	var parts []string
	// iptables-save prints the states in this order.
	if s&CTNew != 0 {
		parts = append(parts, "NEW")
	}
	if s&CTRelated != 0 {
		parts = append(parts, "RELATED")
	}
	if s&CTEstablished != 0 {
		parts = append(parts, "ESTABLISHED")
	}
	return strings.Join(parts, ",")
}

type targetKind uint8

const (
	tNone targetKind = iota
	tAccept
	tDrop
	tReturn
	tReject
	tMasquerade
	tJump
	tDNAT
	tSNAT
)

// Target is what a rule does. Build it with Accept, Drop, Return, Reject,
// Masquerade, Jump, DNAT or SNAT.
type Target struct {
	kind  targetKind
	chain string
	addr  netip.Addr
	port  uint16
}

var (
	Accept     = Target{kind: tAccept}
	Drop       = Target{kind: tDrop}
	Return     = Target{kind: tReturn}
	Reject     = Target{kind: tReject}
	Masquerade = Target{kind: tMasquerade}
)

// Jump jumps to one of the manager's own (wrapped) chains, by short name.
func Jump(chain string) Target { return Target{kind: tJump, chain: chain} }

// DNAT rewrites the destination to addr (and port when non-zero).
func DNAT(addr netip.Addr, port uint16) Target { return Target{kind: tDNAT, addr: addr, port: port} }

// SNAT rewrites the source to addr.
func SNAT(addr netip.Addr) Target { return Target{kind: tSNAT, addr: addr} }

// Rule is one iptables rule built from typed values. Zero fields match
// anything. Ports need TCP or UDP.
type Rule struct {
	Src, Dst          netip.Prefix
	InIface, OutIface string
	Proto             Proto
	SrcPort, DstPort  uint16
	CTState           CTState
	Target            Target
}

// ErrInvalidRule is returned (wrapped) for a rule that cannot be rendered.
var ErrInvalidRule = errors.New("invalid rule")

// render returns the rule's arguments after "-A chain", in the canonical
// order iptables-save prints them, so that what we write is what we read.
func (r Rule) render(fam Family, table Table, wrap func(string) string, hasChain func(string) bool) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrInvalidRule, fmt.Sprintf(format, args...))
	}
	var a []string
	for _, p := range []struct {
		flag string
		v    netip.Prefix
	}{{"-s", r.Src}, {"-d", r.Dst}} {
		if !p.v.IsValid() {
			continue
		}
		if !fam.has(p.v.Addr()) {
			return bad("%s %s is not %s", p.flag, p.v, fam)
		}
		a = append(a, p.flag, p.v.Masked().String())
	}
	for _, p := range []struct{ flag, v string }{{"-i", r.InIface}, {"-o", r.OutIface}} {
		if p.v == "" {
			continue
		}
		if err := ifname.Validate(p.v); err != nil {
			return bad("%s: %v", p.flag, err)
		}
		a = append(a, p.flag, p.v)
	}
	switch r.Proto {
	case AnyProto:
		if r.SrcPort != 0 || r.DstPort != 0 {
			return bad("ports need tcp or udp")
		}
	case TCP, UDP:
		name := "tcp"
		if r.Proto == UDP {
			name = "udp"
		}
		a = append(a, "-p", name)
		if r.SrcPort != 0 || r.DstPort != 0 {
			a = append(a, "-m", name)
			if r.SrcPort != 0 {
				a = append(a, "--sport", strconv.Itoa(int(r.SrcPort)))
			}
			if r.DstPort != 0 {
				a = append(a, "--dport", strconv.Itoa(int(r.DstPort)))
			}
		}
	case ICMP:
		if r.SrcPort != 0 || r.DstPort != 0 {
			return bad("ports need tcp or udp")
		}
		if fam == IPv6 {
			a = append(a, "-p", "ipv6-icmp")
		} else {
			a = append(a, "-p", "icmp")
		}
	default:
		return bad("unknown protocol %d", r.Proto)
	}
	if r.CTState != 0 {
		if r.CTState&^(CTNew|CTRelated|CTEstablished) != 0 {
			return bad("unknown conntrack state %#x", uint8(r.CTState))
		}
		a = append(a, "-m", "conntrack", "--ctstate", r.CTState.String())
	}
	t := r.Target
	switch t.kind {
	case tAccept:
		a = append(a, "-j", "ACCEPT")
	case tDrop:
		a = append(a, "-j", "DROP")
	case tReturn:
		a = append(a, "-j", "RETURN")
	case tReject:
		if table != Filter {
			return bad("REJECT only in the filter table")
		}
		with := "icmp-port-unreachable"
		if fam == IPv6 {
			with = "icmp6-port-unreachable"
		}
		a = append(a, "-j", "REJECT", "--reject-with", with)
	case tMasquerade:
		if table != NAT {
			return bad("MASQUERADE only in the nat table")
		}
		a = append(a, "-j", "MASQUERADE")
	case tJump:
		if !hasChain(t.chain) {
			return bad("jump to unknown chain %q", t.chain)
		}
		a = append(a, "-j", wrap(t.chain))
	case tDNAT, tSNAT:
		if table != NAT {
			return bad("DNAT/SNAT only in the nat table")
		}
		if !t.addr.IsValid() || !fam.has(t.addr) {
			return bad("nat address %v is not %s", t.addr, fam)
		}
		to := t.addr.String()
		if t.port != 0 {
			if r.Proto != TCP && r.Proto != UDP {
				return bad("nat port needs tcp or udp")
			}
			to = netip.AddrPortFrom(t.addr, t.port).String()
		}
		if t.kind == tDNAT {
			a = append(a, "-j", "DNAT", "--to-destination", to)
		} else {
			a = append(a, "-j", "SNAT", "--to-source", to)
		}
	default:
		return bad("no target")
	}
	return strings.Join(a, " "), nil
}
