package hostnet

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"novanet/linuxnet/iptables"
)

// metadataAddr is the address instances reach the metadata service on.
func metadataAddr() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, 169, 254}), 32)
}

// DefaultMetadataPort is used when Config.MetadataPort is zero (nova's
// metadata_port default).
const DefaultMetadataPort = 8775

// ChainKey names one of the iptables manager's wrapped chains.
type ChainKey struct {
	Family iptables.Family
	Table  iptables.Table
	Chain  string // short name: "FORWARD", "snat", ...
}

func (k ChainKey) String() string { return fmt.Sprintf("%s %s %s", k.Family, k.Table, k.Chain) }

// Ruleset is the whole firewall state of the host: the rules of every
// chain the host rules own, for both families. Chains without rules are
// present with an empty list, so that setting them clears old rules.
type Ruleset map[ChainKey][]iptables.Rule

// ruleChains lists the chains a Ruleset sets, per table (for both
// families). The filter "local" and OUTPUT chains are left to others.
var ruleChains = []struct {
	table  iptables.Table
	chains []string
}{
	{iptables.Filter, []string{"INPUT", "FORWARD"}},
	{iptables.NAT, []string{"PREROUTING", "OUTPUT", "POSTROUTING", "snat", "float-snat"}},
}

// Keys returns the chains of rs in a stable order: family, table, chain.
func (rs Ruleset) Keys() []ChainKey {
	return slices.SortedFunc(maps.Keys(rs), func(a, b ChainKey) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.Table, b.Table), cmp.Compare(a.Chain, b.Chain))
	})
}

// ErrFamilyNotManaged is wrapped by SetRules' error for rules of a family
// the manager does not manage (an agent started with --ipv6=false serving a
// dual-stack network): those rules are left out and reported, the other
// families are still set.
var ErrFamilyNotManaged = errors.New("the family is not managed")

// SetRules sets every chain of rs for the families fams on m (none given:
// IPv4 and IPv6; m must manage them), chains without rules included, so
// that rules of removed networks go. Rules of a family left out are not
// set: the error wraps ErrFamilyNotManaged and names the chains, and every
// chain of the managed families is set all the same, so that what cannot be
// applied never blocks the rest (IPv4 isolation included). Any other error
// stops at once. Call m.Apply afterwards.
func (rs Ruleset) SetRules(m *iptables.Manager, fams ...iptables.Family) error {
	if fams == nil {
		fams = []iptables.Family{iptables.IPv4, iptables.IPv6}
	}
	var skipped []error
	for _, k := range rs.Keys() {
		if !slices.Contains(fams, k.Family) {
			if n := len(rs[k]) - len(baseRules(k)); n > 0 {
				skipped = append(skipped, fmt.Errorf("firewall: %s: %d rules left out: %w", k, n, ErrFamilyNotManaged))
			}
			continue
		}
		if err := m.SetRules(k.Family, k.Table, k.Chain, rs[k]); err != nil {
			return fmt.Errorf("firewall: %s: %w", k, err)
		}
	}
	return errors.Join(skipped...)
}

// Family is the iptables family of a.
func Family(a netip.Addr) iptables.Family {
	if a.Is4() {
		return iptables.IPv4
	}
	return iptables.IPv6
}

// Host is a as a single-address prefix (/32 or /128).
func Host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// Rules computes the firewall state of a host in nova-network's shape from
// cfg and the networks it serves. It is pure: every rule is built from
// parsed values. The floating IPs' NAT rules (nat PREROUTING, OUTPUT and
// float-snat) are added by package floating. Per network (sorted by ID):
//
//   - nat POSTROUTING: -s CIDR -d <each DMZ CIDR> ACCEPT, -s CIDR -d
//     metadata host ACCEPT, -s CIDR -d CIDR ACCEPT (no SNAT inside the
//     cloud);
//   - nat snat: -s CIDR SNAT to cfg.RoutingSourceIP (when set and of the
//     family), after the manager's jump to float-snat;
//   - filter INPUT, when the network runs dnsmasq (flatdhcp, vlan): DHCP
//     (udp 67) and DNS (udp/tcp 53) from the bridge;
//   - a network with a CIDRv6 (dual stack): ip6tables nat POSTROUTING -s
//     CIDRv6 -d CIDRv6 ACCEPT; filter INPUT, when its dnsmasq sends router
//     advertisements (flatdhcp, vlan; IPv6 gateway set): ICMPv6 (router
//     solicitations, neighbour discovery) and DNS (udp/tcp 53) from the
//     bridge;
//   - filter FORWARD: in vlan mode first, for every pair of networks,
//     -i brA -o brB DROP (in every family of either, IPv6 included for a
//     dual-stack one), so projects cannot reach each other through the
//     host; then -i br ACCEPT and -o br ACCEPT in each of the network's
//     families;
//   - vlan mode with a VPN: nat PREROUTING -d public -p udp --dport port
//     DNAT to private:1194; filter FORWARD -d private -p udp --dport 1194
//     ACCEPT.
//
// Metadata (cfg.MetadataHost set): nat PREROUTING -d 169.254.169.254/32 -p
// tcp --dport 80 DNAT to MetadataHost:MetadataPort; filter INPUT -d
// MetadataHost -p tcp --dport MetadataPort ACCEPT.
func Rules(cfg Config, nets []Network) (Ruleset, error) {
	rs := Ruleset{}
	for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
		for _, tc := range ruleChains {
			for _, c := range tc.chains {
				rs[ChainKey{fam, tc.table, c}] = []iptables.Rule{}
			}
		}
	}
	for k := range rs {
		rs[k] = append(rs[k], baseRules(k)...)
	}
	parsed := slices.Clone(nets)
	seen := map[int64]bool{}
	for _, n := range nets {
		if seen[n.ID] {
			return nil, fmt.Errorf("firewall: %w: network %d listed twice", ErrInvalidNetwork, n.ID)
		}
		seen[n.ID] = true
	}
	slices.SortFunc(parsed, func(a, b Network) int { return cmp.Compare(a.ID, b.ID) })
	for _, d := range cfg.DMZCIDR {
		if !d.IsValid() || d != d.Masked() {
			return nil, fmt.Errorf("firewall: %w: dmz cidr %s: want a canonical prefix", ErrInvalidConfig, d)
		}
	}
	metaPort := cfg.MetadataPort
	if metaPort == 0 {
		metaPort = DefaultMetadataPort
	}
	vlanMode := cfg.Driver == DriverVLAN
	dhcpMode := cfg.Driver == DriverFlatDHCP || cfg.Driver == DriverVLAN

	for _, n := range parsed {
		fam := Family(n.CIDR.Addr())
		for _, d := range cfg.DMZCIDR {
			if Family(d.Addr()) == fam {
				rs.Add(fam, iptables.NAT, "POSTROUTING", iptables.Rule{Src: n.CIDR, Dst: d, Target: iptables.Accept})
			}
		}
		if cfg.MetadataHost.IsValid() && Family(cfg.MetadataHost) == fam {
			rs.Add(fam, iptables.NAT, "POSTROUTING", iptables.Rule{Src: n.CIDR, Dst: Host(cfg.MetadataHost), Target: iptables.Accept})
		}
		rs.Add(fam, iptables.NAT, "POSTROUTING", iptables.Rule{Src: n.CIDR, Dst: n.CIDR, Target: iptables.Accept})
		if cfg.RoutingSourceIP.IsValid() && Family(cfg.RoutingSourceIP) == fam {
			rs.Add(fam, iptables.NAT, "snat", iptables.Rule{Src: n.CIDR, Target: iptables.SNAT(cfg.RoutingSourceIP)})
		}
		if dhcpMode && n.EnableDHCP && !n.Layer2Only && fam == iptables.IPv4 { // dnsmasq serves DHCPv4 only
			rs.Add(fam, iptables.Filter, "INPUT",
				iptables.Rule{InIface: n.Bridge, Proto: iptables.UDP, DstPort: 67, Target: iptables.Accept},
				iptables.Rule{InIface: n.Bridge, Proto: iptables.UDP, DstPort: 53, Target: iptables.Accept},
				iptables.Rule{InIface: n.Bridge, Proto: iptables.TCP, DstPort: 53, Target: iptables.Accept})
		}
		if v6 := n.CIDRv6; v6.IsValid() && fam == iptables.IPv4 {
			rs.Add(iptables.IPv6, iptables.NAT, "POSTROUTING", iptables.Rule{Src: v6, Dst: v6, Target: iptables.Accept})
			if dhcpMode && n.EnableDHCP && !n.Layer2Only && n.GatewayV6.IsValid() {
				// Router solicitations (and neighbour discovery) to the
				// network's dnsmasq, and DNS on its IPv6 gateway.
				rs.Add(iptables.IPv6, iptables.Filter, "INPUT",
					iptables.Rule{InIface: n.Bridge, Proto: iptables.ICMP, Target: iptables.Accept},
					iptables.Rule{InIface: n.Bridge, Proto: iptables.UDP, DstPort: 53, Target: iptables.Accept},
					iptables.Rule{InIface: n.Bridge, Proto: iptables.TCP, DstPort: 53, Target: iptables.Accept})
			}
		}
	}
	// Isolation first: the FORWARD chain is evaluated in order.
	if vlanMode {
		for _, a := range parsed {
			for _, b := range parsed {
				if a.Bridge == b.Bridge {
					continue
				}
				// In every family of either network: each one's
				// ACCEPT rules below would let the traffic through.
				drop := iptables.Rule{InIface: a.Bridge, OutIface: b.Bridge, Target: iptables.Drop}
				for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
					if slices.Contains(families(a), fam) || slices.Contains(families(b), fam) {
						rs.Add(fam, iptables.Filter, "FORWARD", drop)
					}
				}
			}
		}
	}
	for _, n := range parsed {
		for _, fam := range families(n) {
			rs.Add(fam, iptables.Filter, "FORWARD",
				iptables.Rule{InIface: n.Bridge, Target: iptables.Accept},
				iptables.Rule{OutIface: n.Bridge, Target: iptables.Accept})
		}
		if vlanMode && n.VPN != nil && !n.Layer2Only {
			fam := Family(n.VPN.Public)
			rs.Add(fam, iptables.NAT, "PREROUTING", iptables.Rule{
				Dst: Host(n.VPN.Public), Proto: iptables.UDP, DstPort: n.VPN.Port,
				Target: iptables.DNAT(n.VPN.Private, VPNPrivatePort),
			})
			rs.Add(fam, iptables.Filter, "FORWARD", iptables.Rule{
				Dst: Host(n.VPN.Private), Proto: iptables.UDP, DstPort: VPNPrivatePort, Target: iptables.Accept,
			})
		}
	}
	if m := cfg.MetadataHost; m.IsValid() {
		if !m.Is4() {
			return nil, fmt.Errorf("firewall: %w: metadata host %s: want IPv4 (169.254.169.254 is forwarded)", ErrInvalidConfig, m)
		}
		rs.Add(iptables.IPv4, iptables.NAT, "PREROUTING", iptables.Rule{
			Dst: metadataAddr(), Proto: iptables.TCP, DstPort: 80, Target: iptables.DNAT(m, metaPort),
		})
		rs.Add(iptables.IPv4, iptables.Filter, "INPUT", iptables.Rule{
			Dst: Host(m), Proto: iptables.TCP, DstPort: metaPort, Target: iptables.Accept,
		})
	}
	return rs, nil
}

// families returns the families n has addresses in: that of its CIDR, and
// IPv6 too when it has a CIDRv6.
func families(n Network) []iptables.Family {
	fams := []iptables.Family{Family(n.CIDR.Addr())}
	if n.CIDRv6.IsValid() && fams[0] != iptables.IPv6 {
		fams = append(fams, iptables.IPv6)
	}
	return fams
}

// baseRules are the rules a chain starts with: the manager's snat chain
// starts with the jump to float-snat, and SetRules replaces the whole
// chain, so the jump is part of the ruleset.
func baseRules(k ChainKey) []iptables.Rule {
	if k.Table == iptables.NAT && k.Chain == "snat" {
		return []iptables.Rule{{Target: iptables.Jump("float-snat")}}
	}
	return nil
}

// Add appends rules to the chain (fam, t, chain).
func (rs Ruleset) Add(fam iptables.Family, t iptables.Table, chain string, rules ...iptables.Rule) {
	k := ChainKey{fam, t, chain}
	rs[k] = append(rs[k], rules...)
}
