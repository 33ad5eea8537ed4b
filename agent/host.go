package agent

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"

	"novanet/floating"
	"novanet/hostnet"
	"novanet/linuxnet/iptables"
	"novanet/rpc"
)

// Binder keeps floating addresses bound.
type Binder interface {
	Ensure(ctx context.Context, want map[string][]netip.Prefix) ([]string, error)
}

// KernelHost is the Host of a real machine (or namespace): ip forwarding,
// the firewall from hostnet.Rules and the floating addresses.
type KernelHost struct {
	cfg    hostnet.Config
	fw     *iptables.Manager
	fams   []iptables.Family
	binder Binder

	forwarding bool
	last       hostnet.Ruleset
}

var _ Host = (*KernelHost)(nil)

// NewKernelHost returns a Host. fams are the families fw manages (for
// tests, fw may be iptables.NewFake's).
func NewKernelHost(cfg hostnet.Config, fw *iptables.Manager, fams []iptables.Family, binder Binder) *KernelHost {
	return &KernelHost{cfg: cfg, fw: fw, fams: fams, binder: binder}
}

// Apply implements Host.
func (h *KernelHost) Apply(ctx context.Context, nets []rpc.HostNetwork, fips []rpc.HostFloatingIP) ([]string, error) {
	var changes []string
	if !h.forwarding {
		if err := hostnet.EnableForwarding(h.cfg.NetNS); err != nil {
			return nil, err
		}
		h.forwarding = true
	}
	rs, err := hostnet.Rules(h.cfg, nets, fips)
	if err != nil {
		return nil, err
	}
	if err := rs.SetRules(h.fw, h.fams...); err != nil {
		return nil, err
	}
	if err := h.fw.Apply(ctx); err != nil {
		h.last = nil
		return nil, fmt.Errorf("firewall: %w", err)
	}
	if !reflect.DeepEqual(rs, h.last) {
		if h.last != nil {
			changes = append(changes, "firewall rules updated")
		} else {
			changes = append(changes, "firewall rules applied")
		}
		h.last = rs
	}
	want, err := hostnet.FloatingAddrs(h.cfg, fips)
	if err != nil {
		return changes, err
	}
	ch, err := h.binder.Ensure(ctx, want)
	return append(changes, ch...), err
}

// Resync makes the next Apply rewrite every chain and re-check the jumps,
// repairing rules changed behind our back. (Such a repair is not reported
// as a change: the iptables manager does not read the rules back.)
func (h *KernelHost) Resync() { h.fw.Resync() }

var _ Binder = (*floating.Binder)(nil)
