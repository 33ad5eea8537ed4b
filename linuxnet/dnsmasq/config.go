// Package dnsmasq runs one dnsmasq per network for DHCP, as nova-network
// did: a config file generated from the network (static range mode, router,
// DNS servers, domain, lease time, MTU), a hosts file of reservations and an
// options file, both rewritten atomically. A change of hosts or options only
// rewrites the files and sends SIGHUP, so the running process and its leases
// stay; a change of config restarts the process. A pid file whose process is
// dead, or is not our dnsmasq, is detected through /proc/PID/cmdline.
//
// ParseEvent turns a --dhcp-script invocation (add/old/del) into an Event.
package dnsmasq

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"novanet/ifname"
)

// ErrInvalidConfig is returned (wrapped) for a config, host or option that
// cannot be written safely.
var ErrInvalidConfig = errors.New("invalid dnsmasq config")

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
	labelRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// Config describes one dnsmasq: the interface (bridge) it serves and the
// networks on it. Gateway, RangeStart, DNS and MTU are the first network's;
// Extra holds the other networks that share the bridge (nova's default puts
// every flat network on br100), each with its own range, router and options.
type Config struct {
	// Name identifies the network; it names the dnsmasq tag "net-<Name>".
	// 1-32 of [A-Za-z0-9_-].
	Name string
	// Interface is the bridge dnsmasq serves.
	Interface string
	// Gateway is the bridge's address with the network's prefix length: the
	// listen address, the router option and the netmask of the range.
	Gateway netip.Prefix
	// RangeStart is the first address of the static range (dhcp_start).
	RangeStart netip.Addr
	// GatewayV6 is the bridge's IPv6 address with /64, zero for none:
	// dnsmasq then also listens on it and sends router advertisements of
	// its /64 for SLAAC (enable-ra, an ra-only dhcp-range).
	GatewayV6 netip.Prefix
	// DNS lists the DNS servers handed out; empty for none.
	DNS []netip.Addr
	// Domain is the DNS domain handed out; empty for none.
	Domain string
	// LeaseTime is the lease duration, at least two minutes.
	LeaseTime time.Duration
	// MTU is handed out as option 26 when non-zero.
	MTU int
	// Dir is the absolute directory holding the generated files, the pid
	// file and the lease file. It must exist.
	Dir string
	// EventCommand is the command run for lease events, e.g.
	// {"/usr/bin/network-host", "dhcp-event"}; dnsmasq's --dhcp-script
	// points to a generated wrapper that execs it with the event arguments.
	// Empty for no script.
	EventCommand []string
	// DisableDNS turns dnsmasq's DNS server off (port=0).
	DisableDNS bool
	// User is the user dnsmasq drops privileges to; empty for its default.
	User string
	// Binary is the dnsmasq binary; empty means "dnsmasq" from PATH.
	Binary string
	// NetNS is the path of the network namespace to run dnsmasq in; empty
	// for the caller's.
	NetNS string
	// Extra lists the further networks served on Interface, one
	// dhcp-range each; their subnets may not overlap each other's or the
	// first network's.
	Extra []Range
}

// Range is one more network served by a dnsmasq: its gateway (the
// bridge's address in it, with its prefix length), the first address of
// its static range, and its options.
type Range struct {
	// Tag is the dnsmasq tag of the range (1-32 of [A-Za-z0-9_-]),
	// distinct from the other ranges' and from Config.Tag().
	Tag        string
	Gateway    netip.Prefix
	RangeStart netip.Addr
	GatewayV6  netip.Prefix // zero for none; see Config.GatewayV6
	DNS        []netip.Addr
	MTU        int
}

// Tag returns the dnsmasq tag of the first network's range.
func (c Config) Tag() string { return "net-" + c.Name }

// Ranges returns every range of c, the first network's first.
func (c Config) Ranges() []Range {
	first := Range{Tag: c.Tag(), Gateway: c.Gateway, RangeStart: c.RangeStart, GatewayV6: c.GatewayV6, DNS: c.DNS, MTU: c.MTU}
	return append([]Range{first}, c.Extra...)
}

// Paths are the files of one dnsmasq.
type Paths struct {
	Conf, Hosts, Opts, Pid, Leases, Script string
}

// Paths returns the file paths under c.Dir.
func (c Config) Paths() Paths {
	j := func(n string) string { return filepath.Join(c.Dir, n) }
	return Paths{Conf: j("dnsmasq.conf"), Hosts: j("hosts"), Opts: j("opts"), Pid: j("dnsmasq.pid"), Leases: j("leases"), Script: j("dhcp-event")}
}

// Validate checks every field before anything is written.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: network %q: %s", ErrInvalidConfig, c.Name, fmt.Sprintf(format, args...))
	}
	if !nameRe.MatchString(c.Name) {
		return bad("name: want 1-32 of [A-Za-z0-9_-]")
	}
	if err := ifname.Validate(c.Interface); err != nil {
		return bad("interface: %v", err)
	}
	tags := map[string]bool{}
	var subnets []netip.Prefix
	for i, r := range c.Ranges() {
		if i > 0 && !nameRe.MatchString(r.Tag) {
			return bad("range %d: tag %q: want 1-32 of [A-Za-z0-9_-]", i, r.Tag)
		}
		if tags[r.Tag] {
			return bad("range %d: duplicate tag %q", i, r.Tag)
		}
		tags[r.Tag] = true
		if !r.Gateway.IsValid() || !r.Gateway.Addr().Is4() || r.Gateway.Bits() > 30 {
			return bad("gateway %v: want an IPv4 address with a prefix of at most /30", r.Gateway)
		}
		for _, s := range subnets {
			if s.Overlaps(r.Gateway.Masked()) {
				return bad("gateway %v: its subnet overlaps %v", r.Gateway, s)
			}
		}
		subnets = append(subnets, r.Gateway.Masked())
		if g := r.GatewayV6; g.IsValid() {
			if !g.Addr().Is6() || g.Addr().Is4In6() || g.Bits() != 64 || g.Addr() == g.Masked().Addr() || g.Addr().IsLinkLocalUnicast() || g.Addr().IsMulticast() {
				return bad("ipv6 gateway %v: want a global or unique-local IPv6 host address with /64 (SLAAC)", g)
			}
			for _, s := range subnets {
				if s.Overlaps(g.Masked()) {
					return bad("ipv6 gateway %v: its subnet overlaps %v", g, s)
				}
			}
			subnets = append(subnets, g.Masked())
		}
		if !r.RangeStart.Is4() || !r.Gateway.Masked().Contains(r.RangeStart) {
			return bad("range start %v not in %v", r.RangeStart, r.Gateway.Masked())
		}
		for _, d := range r.DNS {
			if !d.Is4() {
				return bad("dns server %v: want IPv4", d)
			}
		}
		if r.MTU != 0 && (r.MTU < 576 || r.MTU > 65535) {
			return bad("mtu %d out of range 576-65535", r.MTU)
		}
	}
	if c.Domain != "" {
		if err := validateDomain(c.Domain); err != nil {
			return bad("domain: %v", err)
		}
	}
	if c.LeaseTime < 2*time.Minute || c.LeaseTime%time.Second != 0 {
		return bad("lease time %v: want whole seconds, at least 2m", c.LeaseTime)
	}
	if !filepath.IsAbs(c.Dir) || filepath.Clean(c.Dir) != c.Dir || strings.ContainsAny(c.Dir, "\n,") {
		return bad("dir %q: want a clean absolute path", c.Dir)
	}
	for _, a := range c.EventCommand {
		if strings.ContainsAny(a, "\x00\n") {
			return bad("event command %q", c.EventCommand)
		}
	}
	if len(c.EventCommand) > 0 && !filepath.IsAbs(c.EventCommand[0]) {
		return bad("event command %q: want an absolute path", c.EventCommand[0])
	}
	if c.User != "" && !nameRe.MatchString(c.User) {
		return bad("user %q", c.User)
	}
	return nil
}

func validateDomain(d string) error {
	if len(d) > 253 {
		return fmt.Errorf("%q longer than 253", d)
	}
	for _, l := range strings.Split(d, ".") {
		if !labelRe.MatchString(l) {
			return fmt.Errorf("%q: bad label %q", d, l)
		}
	}
	return nil
}

// RenderConfig returns the dnsmasq config file for c.
func RenderConfig(c Config) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	p := c.Paths()
	ranges := c.Ranges()
	gws := make([]netip.Addr, 0, len(ranges))
	leaseMax := 0
	ra := false
	for _, r := range ranges {
		gws = append(gws, r.Gateway.Addr())
		leaseMax += 1 << (32 - r.Gateway.Bits())
	}
	for _, r := range ranges {
		if r.GatewayV6.IsValid() {
			gws = append(gws, r.GatewayV6.Addr())
			ra = true
		}
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Generated by novanet for network %s; do not edit.", c.Name)
	w("interface=%s", c.Interface)
	w("bind-interfaces")
	w("except-interface=lo")
	w("listen-address=%s", joinAddrs(gws))
	if c.DisableDNS {
		w("port=0")
	}
	w("strict-order")
	w("no-hosts")
	if c.User != "" {
		w("user=%s", c.User)
	}
	if c.Domain != "" {
		w("domain=%s", c.Domain)
	}
	for _, r := range ranges {
		mask := net.IP(net.CIDRMask(r.Gateway.Bits(), 32)).String()
		w("dhcp-range=set:%s,%s,static,%s,%ds", r.Tag, r.RangeStart, mask, int64(c.LeaseTime/time.Second))
	}
	if ra {
		// Router advertisements of each IPv6 /64 for SLAAC: the
		// instances make their addresses from their MACs (EUI-64).
		w("enable-ra")
		for _, r := range ranges {
			if r.GatewayV6.IsValid() {
				w("dhcp-range=set:%s,%s,ra-only,64,%ds", r.Tag, r.GatewayV6.Masked().Addr(), int64(c.LeaseTime/time.Second))
			}
		}
	}
	w("dhcp-lease-max=%d", leaseMax)
	// Only the reserved clients: a VM reserved on another host (a
	// multi-host network's hosts share its segment and its server
	// address) gets no answer here, not a DHCPNAK. DHCPRELEASE is still
	// heard (dnsmasq does not ignore releases).
	w("dhcp-ignore=tag:!known")
	for _, r := range ranges {
		w("dhcp-option=tag:%s,option:router,%s", r.Tag, r.Gateway.Addr())
		if len(r.DNS) > 0 {
			w("dhcp-option=tag:%s,option:dns-server,%s", r.Tag, joinAddrs(r.DNS))
		}
		if r.MTU != 0 {
			w("dhcp-option=tag:%s,option:mtu,%d", r.Tag, r.MTU)
		}
	}
	w("dhcp-hostsfile=%s", p.Hosts)
	w("dhcp-optsfile=%s", p.Opts)
	w("dhcp-leasefile=%s", p.Leases)
	w("pid-file=%s", p.Pid)
	if len(c.EventCommand) > 0 {
		w("dhcp-script=%s", p.Script)
	}
	return b.String(), nil
}

// RenderScript returns the --dhcp-script wrapper that execs EventCommand
// with dnsmasq's arguments appended, or "" when there is none.
func RenderScript(c Config) string {
	if len(c.EventCommand) == 0 {
		return ""
	}
	q := make([]string, len(c.EventCommand))
	for i, a := range c.EventCommand {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return "#!/bin/sh\n# Generated by novanet; do not edit.\nexec " + strings.Join(q, " ") + ` "$@"` + "\n"
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Host is one DHCP reservation.
type Host struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string // optional single DNS label
	// Tag, when set, is attached to the host ("set:<tag>") so that
	// per-host options can select it.
	Tag string
}

// Option is a per-tag DHCP option for the options file, e.g. an empty
// router option (code 3) for hosts whose default route is elsewhere.
type Option struct {
	Tag   string
	Code  uint8
	Addrs []netip.Addr // empty sends the option empty
}

// RenderHosts returns the dhcp-hostsfile content: one "MAC,hostname,IP"
// line per host (hostname left out when empty, ",set:TAG" appended when
// tagged), sorted by IP then MAC.
func RenderHosts(hosts []Host) (string, error) {
	hs := slices.Clone(hosts)
	slices.SortFunc(hs, func(a, b Host) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return strings.Compare(a.MAC.String(), b.MAC.String())
	})
	var b strings.Builder
	seenIP := map[netip.Addr]bool{}
	seenMAC := map[string]bool{}
	for _, h := range hs {
		if len(h.MAC) != 6 {
			return "", fmt.Errorf("%w: host %v: MAC %q is not a 6-byte Ethernet address", ErrInvalidConfig, h.IP, h.MAC)
		}
		if !h.IP.Is4() {
			return "", fmt.Errorf("%w: host %s: IP %v is not IPv4", ErrInvalidConfig, h.MAC, h.IP)
		}
		if seenIP[h.IP] || seenMAC[h.MAC.String()] {
			return "", fmt.Errorf("%w: host %s %v: duplicate MAC or IP", ErrInvalidConfig, h.MAC, h.IP)
		}
		seenIP[h.IP], seenMAC[h.MAC.String()] = true, true
		fields := []string{h.MAC.String()}
		if h.Hostname != "" {
			if !labelRe.MatchString(h.Hostname) {
				return "", fmt.Errorf("%w: host %s: hostname %q", ErrInvalidConfig, h.MAC, h.Hostname)
			}
			fields = append(fields, h.Hostname)
		}
		fields = append(fields, h.IP.String())
		if h.Tag != "" {
			if !nameRe.MatchString(h.Tag) {
				return "", fmt.Errorf("%w: host %s: tag %q", ErrInvalidConfig, h.MAC, h.Tag)
			}
			fields = append(fields, "set:"+h.Tag)
		}
		b.WriteString(strings.Join(fields, ",") + "\n")
	}
	return b.String(), nil
}

// RenderOpts returns the dhcp-optsfile content, one "tag:TAG,CODE[,addr...]"
// line per option, sorted.
func RenderOpts(opts []Option) (string, error) {
	lines := make([]string, 0, len(opts))
	for _, o := range opts {
		if !nameRe.MatchString(o.Tag) {
			return "", fmt.Errorf("%w: option %d: tag %q", ErrInvalidConfig, o.Code, o.Tag)
		}
		if o.Code == 0 || o.Code == 255 {
			return "", fmt.Errorf("%w: option code %d", ErrInvalidConfig, o.Code)
		}
		l := "tag:" + o.Tag + "," + strconv.Itoa(int(o.Code))
		for _, a := range o.Addrs {
			if !a.Is4() {
				return "", fmt.Errorf("%w: option %d: %v is not IPv4", ErrInvalidConfig, o.Code, a)
			}
		}
		if len(o.Addrs) > 0 {
			l += "," + joinAddrs(o.Addrs)
		}
		lines = append(lines, l)
	}
	slices.Sort(lines)
	if len(lines) == 0 {
		return "", nil
	}
	return strings.Join(lines, "\n") + "\n", nil
}
