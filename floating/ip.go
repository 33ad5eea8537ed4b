package floating

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"novanet/hostnet"
	"novanet/ifname"
	"novanet/linuxnet/iptables"
	"novanet/rpc"
)

// IP is one floating IP associated with an instance on this host, parsed
// from the manager's rpc.HostFloatingIP.
type IP struct {
	Addr      netip.Addr // the floating address
	Fixed     netip.Addr // the instance's fixed address
	Interface string     // where Addr is bound: the IP's own, else the public interface
}

// Parse checks the floating IPs of a host state: both addresses of one
// family, the interface (f.Interface, else publicIface) a valid name, no
// floating address twice. It returns the good ones, sorted by address, and
// the bad ones' errors joined; each wraps hostnet.ErrInvalidNetwork and
// names the address.
func Parse(fips []rpc.HostFloatingIP, publicIface string) ([]IP, error) {
	var (
		out  []IP
		errs []error
	)
	seen := make(map[netip.Addr]bool, len(fips))
	for _, f := range fips {
		ip, err := parseOne(f, publicIface)
		if err == nil && seen[ip.Addr] {
			err = fmt.Errorf("%w: floating ip %s listed twice", hostnet.ErrInvalidNetwork, ip.Addr)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[ip.Addr] = true
		out = append(out, ip)
	}
	slices.SortFunc(out, func(a, b IP) int { return a.Addr.Compare(b.Addr) })
	return out, errors.Join(errs...)
}

func parseOne(f rpc.HostFloatingIP, publicIface string) (IP, error) {
	bad := func(format string, args ...any) (IP, error) {
		return IP{}, fmt.Errorf("%w: floating ip %q: %s", hostnet.ErrInvalidNetwork, f.Address, fmt.Sprintf(format, args...))
	}
	addr, err := hostnet.ParseAddr("address", f.Address)
	if err != nil {
		return bad("%v", err)
	}
	fixed, err := hostnet.ParseAddr("fixed address", f.FixedAddress)
	if err != nil {
		return bad("%v", err)
	}
	if addr.Is4() != fixed.Is4() {
		return bad("fixed address %s: other address family", fixed)
	}
	iface := f.Interface
	if iface == "" {
		iface = publicIface
	}
	if iface == "" {
		return bad("no interface and no public interface configured")
	}
	if err := ifname.Validate(iface); err != nil {
		return bad("interface: %v", err)
	}
	return IP{Addr: addr, Fixed: fixed, Interface: iface}, nil
}

// AddRules adds the NAT rules of ips to rs, as nova's
// floating_forward_rules: nat PREROUTING and OUTPUT -d FLOAT DNAT to FIXED;
// nat float-snat -s FIXED -d FIXED SNAT to FLOAT and -s FIXED -o
// <interface> SNAT to FLOAT. ips come from Parse (sorted, no duplicates).
func AddRules(rs hostnet.Ruleset, ips []IP) {
	for _, f := range ips {
		fam := hostnet.Family(f.Addr)
		dnat := iptables.Rule{Dst: hostnet.Host(f.Addr), Target: iptables.DNAT(f.Fixed, 0)}
		rs.Add(fam, iptables.NAT, "PREROUTING", dnat)
		rs.Add(fam, iptables.NAT, "OUTPUT", dnat)
		rs.Add(fam, iptables.NAT, "float-snat",
			iptables.Rule{Src: hostnet.Host(f.Fixed), Dst: hostnet.Host(f.Fixed), Target: iptables.SNAT(f.Addr)},
			iptables.Rule{Src: hostnet.Host(f.Fixed), OutIface: f.Interface, Target: iptables.SNAT(f.Addr)})
	}
}

// Prefixes returns, per interface, the /32 (or /128) addresses to bind for
// ips (what Binder.Ensure takes). The lists are sorted and free of
// duplicates.
func Prefixes(ips []IP) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	type key struct {
		iface string
		p     netip.Prefix
	}
	seen := make(map[key]bool, len(ips))
	for _, f := range ips {
		p := hostnet.Host(f.Addr)
		if k := (key{f.Interface, p}); !seen[k] {
			seen[k] = true
			out[f.Interface] = append(out[f.Interface], p)
		}
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
	return out
}
