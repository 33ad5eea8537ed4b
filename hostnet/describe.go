package hostnet

import (
	"cmp"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/link"
	"novanet/rpc"
)

// This file is describe's schema (rpc.HostObject): what a host should have
// (WantObjects, from the networks and the records the drivers plan) and
// what it has (HaveObjects, from what linuxnet reads back), as objects of
// "key value" attributes, and the comparison of the two (DiffObjects).

// Object kinds.
const (
	KindBridge   = "bridge"
	KindSegment  = "segment"
	KindDHCP     = "dhcp"
	KindChain    = "chain"
	KindFloating = "floating"
)

// Attribute keys and how DiffObjects compares them: a key in exactKeys is
// a set that must be equal; one in subsetKeys a set the host may have more
// of (a bridge's ports: the VMs' taps; a bridge's or public interface's
// own addresses); any other key is one value, compared only when the
// desired object has it (a bridge's MTU when the network sets none).
var (
	exactKeys  = map[string]bool{"rule": true, "conf": true, "host": true}
	subsetKeys = map[string]bool{"port": true, "address": true}
)

// WantObjects returns the objects a network needs on the host, given the
// record its driver plans for it (Driver.Plan). The network's peers on
// its bridge contribute their gateways and DHCP ranges; the caller merges
// the objects of every network (MergeObjects).
func WantObjects(cfg Config, rec Record, n Network) ([]rpc.HostObject, error) {
	var out []rpc.HostObject
	br := rpc.HostObject{Kind: KindBridge, Name: rec.Bridge, Attrs: []string{"kind bridge"}}
	if rec.BridgeOwned {
		br.Attrs = append(br.Attrs, "up yes")
		if n.MTU > 0 {
			br.Attrs = append(br.Attrs, "mtu "+strconv.Itoa(n.MTU))
		}
		for _, m := range n.onBridge() {
			if m.Gateway.IsValid() {
				br.Attrs = append(br.Attrs, "address "+m.Gateway.String())
			}
			if gw := m.servedGatewayV6(); gw.IsValid() {
				br.Attrs = append(br.Attrs, "address "+gw.String())
			}
		}
	}
	switch {
	case rec.Segment != "":
		br.Attrs = append(br.Attrs, "port "+rec.Segment)
		parent := n.BridgeIf
		if parent == "" {
			parent = cfg.VLANInterface
		}
		seg := rpc.HostObject{Kind: KindSegment, Name: rec.Segment, Attrs: []string{"parent " + parent}}
		if strings.HasPrefix(rec.Segment, "vxlan") {
			port := cfg.VXLANPort
			if port == 0 {
				port = 4789
			}
			seg.Attrs = append(seg.Attrs, "kind vxlan", "id "+strconv.Itoa(int(n.VLAN)), "port "+strconv.Itoa(int(port)))
			if cfg.VXLANGroup.IsValid() {
				seg.Attrs = append(seg.Attrs, "group "+cfg.VXLANGroup.String())
			}
		} else {
			seg.Attrs = append(seg.Attrs, "kind vlan", "id "+strconv.Itoa(int(n.VLAN)))
		}
		seg.Attrs = append(seg.Attrs, "up yes")
		if n.MTU > 0 {
			seg.Attrs = append(seg.Attrs, "mtu "+strconv.Itoa(n.MTU))
		}
		out = append(out, seg)
	case rec.Driver == DriverFlatDHCP:
		iface := n.BridgeIf
		if iface == "" {
			iface = cfg.FlatInterface
		}
		if iface != "" {
			br.Attrs = append(br.Attrs, "port "+iface)
		}
	}
	out = append(out, br)
	if rec.DHCP == "" {
		return out, nil
	}
	dc, wantDHCP, err := DHCPConfig(cfg, rec.DHCP, n)
	if err != nil {
		return nil, err
	}
	if !wantDHCP {
		return out, nil
	}
	conf, err := dnsmasq.RenderConfig(dc)
	if err != nil {
		return nil, err
	}
	hosts, err := dnsmasq.RenderHosts(DHCPHosts(n))
	if err != nil {
		return nil, err
	}
	d := rpc.HostObject{Kind: KindDHCP, Name: rec.DHCP, Attrs: []string{"interface " + n.Bridge, "running yes"}}
	d.Attrs = append(d.Attrs, prefixed("conf ", dnsmasq.Lines(conf))...)
	d.Attrs = append(d.Attrs, prefixed("host ", dnsmasq.Lines(hosts))...)
	return append(out, d), nil
}

func prefixed(p string, lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = p + l
	}
	return out
}

// FloatingObjects are the floating addresses bound per interface.
func FloatingObjects(bound map[string][]string) []rpc.HostObject {
	var out []rpc.HostObject
	for iface, addrs := range bound {
		out = append(out, rpc.HostObject{Kind: KindFloating, Name: iface, Attrs: prefixed("address ", addrs)})
	}
	return out
}

// ChainObjects turn the firewall's chains into objects: the chains of
// ours as wanted and as the kernel has them (a chain the kernel lacks is
// not in have), and the foreign chains, which are only read.
func ChainObjects(chains []iptables.ChainState) (want, have, foreign []rpc.HostObject) {
	for _, c := range chains {
		name := c.Family.String() + " " + string(c.Table) + " " + c.Name
		h := rpc.HostObject{Kind: KindChain, Name: name, Attrs: prefixed("rule ", c.Have)}
		if !c.Ours {
			foreign = append(foreign, h)
			continue
		}
		want = append(want, rpc.HostObject{Kind: KindChain, Name: name, Attrs: prefixed("rule ", c.Want)})
		if c.Exists {
			have = append(have, h)
		}
	}
	return want, have, foreign
}

// LinkObject is a link as describe shows it: a bridge (with its ports) or
// a segment; ok is false for other kinds.
func LinkObject(l link.Info, ports []string) (rpc.HostObject, bool) {
	var o rpc.HostObject
	switch l.Kind {
	case "bridge":
		o = rpc.HostObject{Kind: KindBridge, Name: l.Name, Attrs: []string{"kind bridge"}}
	case "vlan", "vxlan":
		o = rpc.HostObject{Kind: KindSegment, Name: l.Name, Attrs: []string{"parent " + l.Parent, "kind " + l.Kind, "id " + strconv.Itoa(l.ID)}}
		if l.Kind == "vxlan" {
			o.Attrs = append(o.Attrs, "port "+strconv.Itoa(l.Port))
			if l.Group.IsValid() {
				o.Attrs = append(o.Attrs, "group "+l.Group.String())
			}
		}
	default:
		return o, false
	}
	o.Attrs = append(o.Attrs, "up "+yesNo(l.Up), "mtu "+strconv.Itoa(l.MTU))
	if o.Kind == KindBridge {
		for _, a := range l.Addrs {
			o.Attrs = append(o.Attrs, "address "+a.String())
		}
		o.Attrs = append(o.Attrs, prefixed("port ", ports)...)
	}
	return o, true
}

// DHCPObject is a dnsmasq instance as describe shows it; its leases and
// pid are information, not compared.
func DHCPObject(name string, st dnsmasq.State) (rpc.HostObject, bool) {
	if !st.Exists {
		return rpc.HostObject{}, false
	}
	o := rpc.HostObject{Kind: KindDHCP, Name: name, Attrs: []string{"running " + yesNo(st.Running)}}
	for _, l := range st.Conf {
		if v, ok := strings.CutPrefix(l, "interface="); ok {
			o.Attrs = append(o.Attrs, "interface "+v)
		}
	}
	o.Attrs = append(o.Attrs, prefixed("conf ", st.Conf)...)
	o.Attrs = append(o.Attrs, prefixed("host ", st.Hosts)...)
	if st.Running {
		o.Info = append(o.Info, "pid "+strconv.Itoa(st.Pid))
	}
	o.Info = append(o.Info, prefixed("lease ", st.Leases)...)
	return o, true
}

// DHCPDir is the directory of the dnsmasq instance name.
func DHCPDir(cfg Config, name string) string { return filepath.Join(cfg.DHCPDir, name) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// MergeObjects merges objects of the same kind and name (the bridge every
// network on it wants), keeping each attribute once, and sorts them by
// kind, then name.
func MergeObjects(objs []rpc.HostObject) []rpc.HostObject {
	type key struct{ kind, name string }
	idx := map[key]int{}
	var out []rpc.HostObject
	for _, o := range objs {
		k := key{o.Kind, o.Name}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			o.Attrs = slices.Clone(o.Attrs)
			out = append(out, o)
			continue
		}
		for _, a := range o.Attrs {
			if !slices.Contains(out[i].Attrs, a) {
				out[i].Attrs = append(out[i].Attrs, a)
			}
		}
		out[i].Info = append(out[i].Info, o.Info...)
	}
	slices.SortStableFunc(out, func(a, b rpc.HostObject) int {
		return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), strings.Compare(a.Name, b.Name))
	})
	return out
}

func kindOrder(k string) int {
	return slices.Index([]string{KindBridge, KindSegment, KindDHCP, KindChain, KindFloating}, k)
}

// DiffObjects compares what the host has with what it should: one entry
// per wanted object that is missing or differs, naming the attributes
// wanted but not had (Want, "+") and had but not wanted (Have, "-"), by
// the rules of exactKeys and subsetKeys. Objects the host has that are
// not wanted are not compared (describe reads only what it wants, and
// what is not ours it shows apart).
func DiffObjects(want, have []rpc.HostObject) []rpc.HostObjectDiff {
	type key struct{ kind, name string }
	hv := map[key]rpc.HostObject{}
	for _, h := range have {
		hv[key{h.Kind, h.Name}] = h
	}
	var out []rpc.HostObjectDiff
	for _, w := range want {
		h, ok := hv[key{w.Kind, w.Name}]
		if !ok {
			out = append(out, rpc.HostObjectDiff{Kind: w.Kind, Name: w.Name, Missing: true, Want: w.Attrs})
			continue
		}
		d := rpc.HostObjectDiff{Kind: w.Kind, Name: w.Name}
		wantKeys := map[string]bool{}
		for _, a := range w.Attrs {
			wantKeys[attrKey(a)] = true
			if !slices.Contains(h.Attrs, a) {
				d.Want = append(d.Want, a)
			}
		}
		for _, a := range h.Attrs {
			k := attrKey(a)
			if slices.Contains(w.Attrs, a) || subsetKeys[k] || (!exactKeys[k] && !wantKeys[k]) {
				continue
			}
			d.Have = append(d.Have, a)
		}
		if len(d.Want)+len(d.Have) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func attrKey(a string) string {
	k, _, _ := strings.Cut(a, " ")
	return k
}
