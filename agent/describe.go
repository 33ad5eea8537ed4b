package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/micro"

	"novanet/floating"
	"novanet/hostnet"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// ErrNoDescribe is returned when the agent's Host cannot read the host
// back (an in-memory Host of a test).
var ErrNoDescribe = errors.New("this agent's host cannot be described")

// Planned is one desired network with the record its driver plans for it.
type Planned struct {
	Record  hostnet.Record
	Network hostnet.Network
}

// Describer reads a host back: KernelHost is one.
type Describer interface {
	// Describe returns the objects the planned networks, the firewall and
	// the floating addresses want, those the host has, and with all the
	// objects on the host that are not ours.
	Describe(ctx context.Context, plans []Planned, fips []rpc.HostFloatingIP, all bool) (want, have, foreign []rpc.HostObject, err error)
}

// Describe reads the manager's desired state for the host and the host's
// actual state, and compares them. The desired firewall is the one of the
// last convergence (the agent computes it from the whole state).
func (a *Agent) Describe(ctx context.Context, req rpc.DescribeRequest) (rpc.HostDescription, error) {
	d, ok := a.host.(Describer)
	if !ok {
		return rpc.HostDescription{}, ErrNoDescribe
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.mgr.HostState(ctx, a.cfg.Host, 0)
	if err != nil {
		return rpc.HostDescription{}, fmt.Errorf("desired state of %s: %w", a.cfg.Host, err)
	}
	nets, err := hostnet.ParseNetworks(st.Networks)
	if err != nil {
		return rpc.HostDescription{}, err
	}
	var plans []Planned
	found := req.NetworkID == 0
	for _, n := range hostnet.ShareBridges(nets) {
		if req.NetworkID != 0 && n.ID != req.NetworkID {
			continue
		}
		found = true
		rec, err := a.drv.Plan(n)
		if err != nil {
			return rpc.HostDescription{}, err
		}
		plans = append(plans, Planned{Record: rec, Network: n})
	}
	if !found {
		return rpc.HostDescription{}, &rpc.Error{Code: rpc.CodeNotFound, Field: "network_id",
			Message: fmt.Sprintf("network %d is not served by host %s", req.NetworkID, a.cfg.Host)}
	}
	want, have, foreign, err := d.Describe(ctx, plans, st.FloatingIPs, req.All)
	if err != nil {
		return rpc.HostDescription{}, err
	}
	return rpc.HostDescription{Host: a.cfg.Host, Want: nonNilObjs(want), Have: nonNilObjs(have),
		Diff: nonNilDiff(hostnet.DiffObjects(want, have)), Foreign: foreign}, nil
}

func nonNilObjs(s []rpc.HostObject) []rpc.HostObject {
	if s == nil {
		return []rpc.HostObject{}
	}
	return s
}

func nonNilDiff(s []rpc.HostObjectDiff) []rpc.HostObjectDiff {
	if s == nil {
		return []rpc.HostObjectDiff{}
	}
	return s
}

var _ Describer = (*KernelHost)(nil)

// SetLinks gives the host the links of its namespace, which Describe
// reads. Without them Describe fails.
func (h *KernelHost) SetLinks(l *link.Manager) { h.links = l }

// Describe implements Describer: the links from netlink, each dnsmasq
// from its own files and process, our chains as iptables lists them, the
// floating addresses on their interfaces.
func (h *KernelHost) Describe(ctx context.Context, plans []Planned, fips []rpc.HostFloatingIP, all bool) (want, have, foreign []rpc.HostObject, err error) {
	if h.links == nil {
		return nil, nil, nil, ErrNoDescribe
	}
	for _, p := range plans {
		objs, err := hostnet.WantObjects(h.cfg, p.Record, p.Network)
		if err != nil {
			return nil, nil, nil, err
		}
		want = append(want, objs...)
	}
	ips, _ := floating.Parse(fips, h.cfg.PublicInterface)
	bound := map[string][]string{}
	for iface, ps := range floating.Prefixes(ips) {
		for _, p := range ps {
			bound[iface] = append(bound[iface], p.String())
		}
	}
	want = append(want, hostnet.FloatingObjects(bound)...)

	links, err := h.links.List(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	byName := map[string]link.Info{}
	ports := map[string][]string{}
	for _, l := range links {
		byName[l.Name] = l
		if l.Master != "" {
			ports[l.Master] = append(ports[l.Master], l.Name)
		}
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.Kind+" "+w.Name] = true
		switch w.Kind {
		case hostnet.KindBridge, hostnet.KindSegment:
			if l, ok := byName[w.Name]; ok {
				if o, ok := hostnet.LinkObject(l, ports[l.Name]); ok {
					have = append(have, o)
				}
			}
		case hostnet.KindDHCP:
			st, err := dnsmasq.Read(hostnet.DHCPDir(h.cfg, w.Name))
			if err != nil {
				return nil, nil, nil, err
			}
			if o, ok := hostnet.DHCPObject(w.Name, st); ok {
				have = append(have, o)
			}
		case hostnet.KindFloating:
			if l, ok := byName[w.Name]; ok {
				var as []string
				for _, a := range l.Addrs {
					as = append(as, "address "+a.String())
				}
				have = append(have, rpc.HostObject{Kind: hostnet.KindFloating, Name: w.Name, Attrs: as})
			}
		}
	}
	chains, err := h.fw.Describe(ctx, all)
	if err != nil {
		return nil, nil, nil, err
	}
	cw, ch, cf := hostnet.ChainObjects(chains)
	want, have = append(want, cw...), append(have, ch...)
	if all {
		for _, l := range links {
			o, ok := hostnet.LinkObject(l, ports[l.Name])
			if ok && !wanted[o.Kind+" "+o.Name] {
				foreign = append(foreign, o)
			}
		}
		foreign = append(foreign, cf...)
	}
	want, have = hostnet.MergeObjects(want), hostnet.MergeObjects(have)
	return want, have, slices.Clip(hostnet.MergeObjects(foreign)), nil
}

func (a *Agent) describeHandler(ctx context.Context) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		var body rpc.DescribeRequest
		if err := rpc.Decode(req.Data(), &body); err != nil {
			_ = rpc.RespondError(req, replyError(rpc.HostMethodDescribe, a.cfg.Host, err))
			return
		}
		if body.NetworkID < 0 {
			_ = rpc.RespondError(req, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: "network_id must be positive", Field: "network_id"})
			return
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		d, err := a.Describe(rctx, body)
		if err != nil {
			var re *rpc.Error
			if errors.As(err, &re) {
				_ = rpc.RespondError(req, re)
				return
			}
			_ = rpc.RespondError(req, replyError(rpc.HostMethodDescribe, a.cfg.Host, err))
			return
		}
		_ = req.RespondJSON(d)
	})
}
