package hostnet

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"novanet/linuxnet/iptables"
	"novanet/rpc"
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

// SetRules sets every chain of rs for the families fams on m (none given:
// IPv4 and IPv6; m must manage them), chains without rules included, so
// that rules of removed networks go. A family left out must have no rules
// (an IPv4-only manager cannot take IPv6 networks). Call m.Apply
// afterwards.
func (rs Ruleset) SetRules(m *iptables.Manager, fams ...iptables.Family) error {
	if fams == nil {
		fams = []iptables.Family{iptables.IPv4, iptables.IPv6}
	}
	for _, k := range rs.Keys() {
		if !slices.Contains(fams, k.Family) {
			if n := len(rs[k]) - len(baseRules(k)); n > 0 {
				return fmt.Errorf("firewall: %s: %d rules but the family is not managed", k, n)
			}
			continue
		}
		if err := m.SetRules(k.Family, k.Table, k.Chain, rs[k]); err != nil {
			return fmt.Errorf("firewall: %s: %w", k, err)
		}
	}
	return nil
}

func family(a netip.Addr) iptables.Family {
	if a.Is4() {
		return iptables.IPv4
	}
	return iptables.IPv6
}

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// Rules computes the firewall state of a host in nova-network's shape from
// cfg, the networks it serves and the floating IPs it NATs. It is pure:
// every rule is built from parsed values. Per network (sorted by ID):
//
//   - nat POSTROUTING: -s CIDR -d <each DMZ CIDR> ACCEPT, -s CIDR -d
//     metadata host ACCEPT, -s CIDR -d CIDR ACCEPT (no SNAT inside the
//     cloud);
//   - nat snat: -s CIDR SNAT to cfg.RoutingSourceIP (when set and of the
//     family), after the manager's jump to float-snat;
//   - filter INPUT, when the network runs dnsmasq (flatdhcp, vlan): DHCP
//     (udp 67) and DNS (udp/tcp 53) from the bridge;
//   - filter FORWARD: in vlan mode first, for every pair of networks,
//     -i brA -o brB DROP (in the families of both), so projects cannot
//     reach each other through the host; then -i br ACCEPT and -o br
//     ACCEPT in the network's family;
//   - vlan mode with a VPN: nat PREROUTING -d public -p udp --dport port
//     DNAT to private:1194; filter FORWARD -d private -p udp --dport 1194
//     ACCEPT.
//
// Metadata (cfg.MetadataHost set): nat PREROUTING -d 169.254.169.254/32 -p
// tcp --dport 80 DNAT to MetadataHost:MetadataPort; filter INPUT -d
// MetadataHost -p tcp --dport MetadataPort ACCEPT.
//
// Floating IPs, as nova's floating_forward_rules: nat PREROUTING and OUTPUT
// -d FLOAT DNAT to FIXED; nat float-snat -s FIXED -d FIXED SNAT to FLOAT
// and -s FIXED -o <public interface> SNAT to FLOAT.
func Rules(cfg Config, nets []rpc.HostNetwork, fips []rpc.HostFloatingIP) (Ruleset, error) {
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
	parsed := make([]Network, 0, len(nets))
	seen := map[int64]bool{}
	for _, n := range nets {
		p, err := ParseNetwork(n)
		if err != nil {
			return nil, fmt.Errorf("firewall: %w", err)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("firewall: %w: network %d listed twice", ErrInvalidNetwork, p.ID)
		}
		seen[p.ID] = true
		parsed = append(parsed, p)
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
		fam := family(n.CIDR.Addr())
		for _, d := range cfg.DMZCIDR {
			if family(d.Addr()) == fam {
				rs.add(fam, iptables.NAT, "POSTROUTING", iptables.Rule{Src: n.CIDR, Dst: d, Target: iptables.Accept})
			}
		}
		if cfg.MetadataHost.IsValid() && family(cfg.MetadataHost) == fam {
			rs.add(fam, iptables.NAT, "POSTROUTING", iptables.Rule{Src: n.CIDR, Dst: host(cfg.MetadataHost), Target: iptables.Accept})
		}
		rs.add(fam, iptables.NAT, "POSTROUTING", iptables.Rule{Src: n.CIDR, Dst: n.CIDR, Target: iptables.Accept})
		if cfg.RoutingSourceIP.IsValid() && family(cfg.RoutingSourceIP) == fam {
			rs.add(fam, iptables.NAT, "snat", iptables.Rule{Src: n.CIDR, Target: iptables.SNAT(cfg.RoutingSourceIP)})
		}
		if dhcpMode && n.EnableDHCP && fam == iptables.IPv4 { // dnsmasq serves DHCPv4 only
			rs.add(fam, iptables.Filter, "INPUT",
				iptables.Rule{InIface: n.Bridge, Proto: iptables.UDP, DstPort: 67, Target: iptables.Accept},
				iptables.Rule{InIface: n.Bridge, Proto: iptables.UDP, DstPort: 53, Target: iptables.Accept},
				iptables.Rule{InIface: n.Bridge, Proto: iptables.TCP, DstPort: 53, Target: iptables.Accept})
		}
	}
	// Isolation first: the FORWARD chain is evaluated in order.
	if vlanMode {
		for _, a := range parsed {
			for _, b := range parsed {
				if a.Bridge == b.Bridge {
					continue
				}
				// In the family of either network: each one's ACCEPT
				// rules below would let the traffic through.
				fa, fb := family(a.CIDR.Addr()), family(b.CIDR.Addr())
				drop := iptables.Rule{InIface: a.Bridge, OutIface: b.Bridge, Target: iptables.Drop}
				rs.add(fa, iptables.Filter, "FORWARD", drop)
				if fb != fa {
					rs.add(fb, iptables.Filter, "FORWARD", drop)
				}
			}
		}
	}
	for _, n := range parsed {
		rs.add(family(n.CIDR.Addr()), iptables.Filter, "FORWARD",
			iptables.Rule{InIface: n.Bridge, Target: iptables.Accept},
			iptables.Rule{OutIface: n.Bridge, Target: iptables.Accept})
		if vlanMode && n.VPN != nil {
			fam := family(n.VPN.Public)
			rs.add(fam, iptables.NAT, "PREROUTING", iptables.Rule{
				Dst: host(n.VPN.Public), Proto: iptables.UDP, DstPort: n.VPN.Port,
				Target: iptables.DNAT(n.VPN.Private, VPNPrivatePort),
			})
			rs.add(fam, iptables.Filter, "FORWARD", iptables.Rule{
				Dst: host(n.VPN.Private), Proto: iptables.UDP, DstPort: VPNPrivatePort, Target: iptables.Accept,
			})
		}
	}
	if m := cfg.MetadataHost; m.IsValid() {
		if !m.Is4() {
			return nil, fmt.Errorf("firewall: %w: metadata host %s: want IPv4 (169.254.169.254 is forwarded)", ErrInvalidConfig, m)
		}
		rs.add(iptables.IPv4, iptables.NAT, "PREROUTING", iptables.Rule{
			Dst: metadataAddr(), Proto: iptables.TCP, DstPort: 80, Target: iptables.DNAT(m, metaPort),
		})
		rs.add(iptables.IPv4, iptables.Filter, "INPUT", iptables.Rule{
			Dst: host(m), Proto: iptables.TCP, DstPort: metaPort, Target: iptables.Accept,
		})
	}
	if err := rs.floating(cfg, fips); err != nil {
		return nil, err
	}
	return rs, nil
}

func (rs Ruleset) floating(cfg Config, fips []rpc.HostFloatingIP) error {
	type fip struct {
		floating, fixed netip.Addr
		iface           string
	}
	var all []fip
	seen := map[netip.Addr]bool{}
	for _, f := range fips {
		floating, fixed, iface, err := ParseFloatingIP(f, cfg.PublicInterface)
		if err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
		if seen[floating] {
			return fmt.Errorf("firewall: %w: floating ip %s listed twice", ErrInvalidNetwork, floating)
		}
		seen[floating] = true
		all = append(all, fip{floating, fixed, iface})
	}
	slices.SortFunc(all, func(a, b fip) int { return a.floating.Compare(b.floating) })
	for _, f := range all {
		fam := family(f.floating)
		dnat := iptables.Rule{Dst: host(f.floating), Target: iptables.DNAT(f.fixed, 0)}
		rs.add(fam, iptables.NAT, "PREROUTING", dnat)
		rs.add(fam, iptables.NAT, "OUTPUT", dnat)
		rs.add(fam, iptables.NAT, "float-snat",
			iptables.Rule{Src: host(f.fixed), Dst: host(f.fixed), Target: iptables.SNAT(f.floating)},
			iptables.Rule{Src: host(f.fixed), OutIface: f.iface, Target: iptables.SNAT(f.floating)})
	}
	return nil
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

func (rs Ruleset) add(fam iptables.Family, t iptables.Table, chain string, rules ...iptables.Rule) {
	k := ChainKey{fam, t, chain}
	rs[k] = append(rs[k], rules...)
}
