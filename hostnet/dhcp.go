package hostnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"novanet/linuxnet/dnsmasq"
)

// DefaultDHCPLeaseTime is used when Config.DHCPLeaseTime is zero (nova's
// dhcp_lease_time default).
const DefaultDHCPLeaseTime = 24 * time.Hour

// DHCPConfig returns the config of the dnsmasq instance name serving the
// bridge of n: one range for each network on it (n and n.Peers) with DHCP
// enabled that the host serves (not Layer2Only), by ID, the first one's being the Config's own fields. Files are
// in cfg.DHCPDir/<name>; each range is static from the network's DHCPStart
// (else the first address after the gateway), router = gateway, with its
// DNS and MTU, and router advertisements of the network's IPv6 /64 for
// SLAAC when it has an IPv6 gateway; cfg.DHCPDomain, cfg.DHCPLeaseTime, EventCommand =
// cfg.DHCPCommand. A peer that cannot be served (no IPv4 gateway) is left
// out: its own Setup reports it. It is pure; the result has been
// validated. Errors do not name n: the driver that asks does. The second
// result says whether any network on the bridge wants DHCP; when none
// does, the Config is zero and the instance should be stopped.
func DHCPConfig(cfg Config, name string, n Network) (dnsmasq.Config, bool, error) {
	if !ValidDHCPName(name) {
		return dnsmasq.Config{}, false, fmt.Errorf("%w: dnsmasq name %q: want 1-32 of [A-Za-z0-9_-]", ErrInvalidNetwork, name)
	}
	if err := checkDHCPDir(cfg.DHCPDir); err != nil {
		return dnsmasq.Config{}, false, err
	}
	var ranges []dnsmasq.Range
	for _, m := range n.onBridge() {
		if !m.EnableDHCP || m.Layer2Only {
			continue
		}
		if !m.Gateway.IsValid() || !m.Gateway.Addr().Is4() {
			if m.ID == n.ID {
				return dnsmasq.Config{}, false, fmt.Errorf("%w: dhcp needs an IPv4 gateway", ErrInvalidNetwork)
			}
			continue
		}
		start := m.DHCPStart
		if !start.IsValid() {
			start = m.Gateway.Addr().Next()
		}
		ranges = append(ranges, dnsmasq.Range{Tag: "network-" + strconv.FormatInt(m.ID, 10),
			Gateway: m.Gateway, RangeStart: start, GatewayV6: m.GatewayV6, DNS: m.DNS, MTU: m.MTU})
	}
	if len(ranges) == 0 {
		return dnsmasq.Config{}, false, nil
	}
	lease := cfg.DHCPLeaseTime
	if lease == 0 {
		lease = DefaultDHCPLeaseTime
	}
	first := ranges[0]
	c := dnsmasq.Config{
		Name:         name,
		Interface:    n.Bridge,
		Gateway:      first.Gateway,
		RangeStart:   first.RangeStart,
		GatewayV6:    first.GatewayV6,
		DNS:          first.DNS,
		Domain:       cfg.DHCPDomain,
		LeaseTime:    lease,
		MTU:          first.MTU,
		Dir:          filepath.Join(cfg.DHCPDir, name),
		EventCommand: cfg.DHCPCommand,
		DisableDNS:   cfg.DHCPDisableDNS,
		User:         cfg.DnsmasqUser,
		Binary:       cfg.DnsmasqBinary,
		NetNS:        cfg.NetNS,
		Extra:        ranges[1:],
	}
	if len(c.Extra) == 0 {
		c.Extra = nil
	}
	if err := c.Validate(); err != nil {
		return dnsmasq.Config{}, false, err
	}
	return c, true, nil
}

// DHCPHosts returns the reservations of every network with DHCP on the
// bridge of n (n and n.Peers).
func DHCPHosts(n Network) []dnsmasq.Host {
	var out []dnsmasq.Host
	for _, m := range n.onBridge() {
		if m.EnableDHCP && !m.Layer2Only {
			out = append(out, m.Hosts...)
		}
	}
	return out
}

func checkDHCPDir(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("%w: dhcp dir %q: want a clean absolute path", ErrInvalidConfig, dir)
	}
	return nil
}

// DHCPServers runs the networks' dnsmasq instances, one directory per
// instance under dir.
type DHCPServers struct {
	dir string
}

// NewDHCPServers returns the dnsmasq helper for instances under dir
// (Config.DHCPDir), which must be a clean absolute path.
func NewDHCPServers(dir string) (*DHCPServers, error) {
	if err := checkDHCPDir(dir); err != nil {
		return nil, err
	}
	return &DHCPServers{dir: dir}, nil
}

// Ensure creates c.Dir if needed and brings the dnsmasq of c to the wanted
// state with hosts (see dnsmasq.Server.Ensure).
func (d *DHCPServers) Ensure(ctx context.Context, c dnsmasq.Config, hosts []dnsmasq.Host) (dnsmasq.Action, error) {
	if filepath.Dir(c.Dir) != d.dir {
		return dnsmasq.Unchanged, fmt.Errorf("dnsmasq %s: dir %s: not under %s", c.Name, c.Dir, d.dir)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return dnsmasq.Unchanged, fmt.Errorf("dnsmasq %s: %w", c.Name, err)
	}
	s, err := dnsmasq.New(c)
	if err != nil {
		return dnsmasq.Unchanged, err
	}
	return s.Ensure(ctx, hosts, nil)
}

// Stop stops the instance name if it runs and removes its directory. It
// reports whether there was anything to stop or remove.
func (d *DHCPServers) Stop(ctx context.Context, name string) (bool, error) {
	if !ValidDHCPName(name) {
		return false, fmt.Errorf("dnsmasq %q: invalid name", name)
	}
	dir := filepath.Join(d.dir, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("dnsmasq %s: %w", name, err)
	}
	// Stop and Pid only use the files under Dir; the other fields just
	// have to pass validation.
	s, err := dnsmasq.New(dnsmasq.Config{
		Name: name, Interface: "lo", Dir: dir, LeaseTime: DefaultDHCPLeaseTime,
		Gateway: netip.MustParsePrefix("192.0.2.1/24"), RangeStart: netip.MustParseAddr("192.0.2.2"),
	})
	if err != nil {
		return false, err
	}
	if err := s.Stop(ctx); err != nil {
		return false, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("dnsmasq %s: %w", name, err)
	}
	return true, nil
}
