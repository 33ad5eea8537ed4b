package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	"novanet/floating"
	"novanet/hostnet"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// Binder keeps floating addresses bound.
type Binder interface {
	Ensure(ctx context.Context, want map[string][]netip.Prefix) ([]string, error)
}

// KernelHost is the Host of a real machine (or namespace): ip forwarding,
// the firewall (Firewall) and the floating addresses (floating.Binder).
type KernelHost struct {
	cfg    hostnet.Config
	fw     *iptables.Manager
	fams   []iptables.Family
	binder Binder
	anti   *hostnet.AntiSpoof // nil: no anti-spoofing rules
	links  *link.Manager      // read by Describe; nil: not described

	forwarding bool
	last       hostnet.Ruleset
}

var _ Host = (*KernelHost)(nil)

// NewKernelHost returns a Host. fams are the families fw manages (for
// tests, fw may be iptables.NewFake's).
func NewKernelHost(cfg hostnet.Config, fw *iptables.Manager, fams []iptables.Family, binder Binder) *KernelHost {
	return &KernelHost{cfg: cfg, fw: fw, fams: fams, binder: binder}
}

// SetAntiSpoof makes every Apply also set the anti-spoofing rules of the
// bridges' instance ports with a (see hostnet.AntiSpoofRules), right after
// the iptables rules of the same state.
func (h *KernelHost) SetAntiSpoof(a *hostnet.AntiSpoof) { h.anti = a }

// Firewall is the whole firewall of a host serving nets with the floating
// IPs ips: hostnet's rules of the networks and floating's NAT rules.
func Firewall(cfg hostnet.Config, nets []hostnet.Network, ips []floating.IP) (hostnet.Ruleset, error) {
	rs, err := hostnet.Rules(cfg, nets)
	if err != nil {
		return nil, err
	}
	floating.AddRules(rs, ips)
	return rs, nil
}

// Apply implements Host. A floating IP the host cannot use is an error of
// the result; the others are applied.
func (h *KernelHost) Apply(ctx context.Context, nets []hostnet.Network, fips []rpc.HostFloatingIP) ([]string, error) {
	var changes []string
	if !h.forwarding {
		if err := hostnet.EnableForwarding(h.cfg.NetNS); err != nil {
			return nil, err
		}
		h.forwarding = true
	}
	ips, badIPs := floating.Parse(fips, h.cfg.PublicInterface)
	rs, err := Firewall(h.cfg, nets, ips)
	if err != nil {
		return nil, errors.Join(badIPs, err)
	}
	// Rules of a family the host does not manage (--ipv6=false with a
	// dual-stack network) are left out and reported; the rest is applied.
	leftOut := rs.SetRules(h.fw, h.fams...)
	if leftOut != nil && !errors.Is(leftOut, hostnet.ErrFamilyNotManaged) {
		return nil, errors.Join(badIPs, leftOut)
	}
	badIPs = errors.Join(badIPs, leftOut)
	if err := h.fw.Apply(ctx); err != nil {
		h.last = nil
		return nil, errors.Join(badIPs, fmt.Errorf("firewall: %w", err))
	}
	// Drift a resynchronizing Apply found in the kernel (a flushed chain,
	// a deleted jump) is a change like any other.
	if r := h.fw.TakeRepairs(); h.last != nil {
		changes = append(changes, repairs(r)...)
	}
	if !reflect.DeepEqual(rs, h.last) {
		if h.last != nil {
			changes = append(changes, "firewall rules updated")
		} else {
			changes = append(changes, "firewall rules applied")
		}
		h.last = rs
	}
	var antiErr error
	if h.anti != nil {
		changed, err := h.anti.Apply(ctx, nets)
		if changed {
			changes = append(changes, "anti-spoofing rules applied")
		}
		antiErr = err
	}
	ch, err := h.binder.Ensure(ctx, floating.Prefixes(ips))
	return append(changes, ch...), errors.Join(badIPs, antiErr, err)
}

// Resync makes the next Apply read the firewall back from the kernel and
// repair what changed behind our back (a flushed chain, a deleted jump, a
// rule added to one of our chains); Apply reports the repair ("firewall:
// restored 73 rules").
func (h *KernelHost) Resync() { h.fw.Resync() }

// repairs describes r as changes.
func repairs(r iptables.Repairs) []string {
	var out []string
	if r.Restored > 0 {
		out = append(out, fmt.Sprintf("firewall: restored %d %s", r.Restored, plural(r.Restored, "rule", "rules")))
	}
	if r.Removed > 0 {
		out = append(out, fmt.Sprintf("firewall: removed %d %s not ours from our chains", r.Removed, plural(r.Removed, "rule", "rules")))
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

var _ Binder = (*floating.Binder)(nil)
