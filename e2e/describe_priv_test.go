package e2e_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/hostnet"
	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

func describe(t *testing.T, env *testenv.Env, host string) rpc.HostDescription {
	t.Helper()
	d, err := env.Client.DescribeHost(ctx, host, rpc.DescribeRequest{All: true})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func diffNames(d rpc.HostDescription) []string {
	var out []string
	for _, df := range d.Diff {
		out = append(out, df.Kind+" "+df.Name)
	}
	return out
}

// TestDescribe: a converged VLAN host (VXLAN segments) describes itself
// with an empty diff; after its bridge is deleted, its dnsmasq killed and
// a chain of ours flushed behind the agent's back, describe shows exactly
// those three objects as different, and after a convergence, which names
// what it repaired, the diff is empty again.
func TestDescribe(t *testing.T) {
	env, hv, ag := startVLAN(t)
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.1.0.0/24", NumNetworks: 1,
		NetworkSize: 16, VLANStart: 100}); err != nil {
		t.Fatal(err)
	}
	vif := allocate(t, env, uuid.NewString(), "project-a", "hv1")
	br := vif.Network.Bridge
	nstest.Eventually(t, 30*time.Second, "converged", func() bool { return converged(t, env, ag) == "" })
	hv.Run(t, "ip", "link", "add", "operator0", "type", "bridge") // not ours

	d := describe(t, env, "hv1")
	if len(d.Diff) != 0 {
		t.Fatalf("describe of a converged host: diff %+v, want none", d.Diff)
	}
	var dhcpName, pid, chain string
	var segment bool
	for _, o := range d.Have {
		switch {
		case o.Kind == hostnet.KindDHCP:
			dhcpName = o.Name
			for _, in := range o.Info {
				if p, ok := strings.CutPrefix(in, "pid "); ok {
					pid = p
				}
			}
		case o.Kind == hostnet.KindChain && strings.HasSuffix(o.Name, "filter "+chainPrefix+"-FORWARD") && len(o.Attrs) > 0:
			chain = o.Name
		case o.Kind == hostnet.KindSegment && o.Name == "vxlan100":
			segment = strings.Contains(strings.Join(o.Attrs, ","), "group 192.168.50.2")
		}
	}
	if dhcpName == "" || pid == "" || chain == "" || !segment {
		t.Fatalf("describe lacks the dnsmasq (%q, pid %q), the FORWARD chain with rules (%q) or vxlan100 with its group (%v): %+v",
			dhcpName, pid, chain, segment, d.Have)
	}
	foreign := false
	for _, o := range d.Foreign {
		foreign = foreign || o.Kind == hostnet.KindBridge && o.Name == "operator0"
	}
	if !foreign {
		t.Errorf("describe --all does not show the operator's bridge operator0: %+v", d.Foreign)
	}

	// Behind the agent's back; dnsmasq last, just before describe.
	hv.Run(t, "ip", "link", "del", br)
	hv.Run(t, "iptables", "-F", strings.Fields(chain)[2])
	n, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 10*time.Second, "dnsmasq "+pid+" gone", func() bool {
		return syscall.Kill(n, 0) != nil
	})

	d = describe(t, env, "hv1")
	want := []string{"bridge " + br, "dhcp " + dhcpName, "chain " + chain}
	if got := diffNames(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("describe after the damage: differences %q, want %q: %+v", got, want, d.Diff)
	}
	if !d.Diff[0].Missing || len(d.Diff[1].Want) != 1 || d.Diff[1].Want[0] != "running yes" {
		t.Errorf("want the bridge missing and the dnsmasq not running: %+v", d.Diff)
	}

	changes, err := env.Client.ConvergeHost(ctx, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(changes, "\n")
	for _, w := range []string{br, "dnsmasq"} {
		if !strings.Contains(all, w) {
			t.Errorf("the convergence's changes do not name %s: %q", w, changes)
		}
	}
	if d := describe(t, env, "hv1"); len(d.Diff) != 0 {
		t.Errorf("describe after the convergence: diff %+v, want none", d.Diff)
	}
	// The agent reported the convergence before it replied.
	if c := hostConvergence(t, env, "hv1"); c == nil || c.InSync || !strings.Contains(strings.Join(c.Changes, "\n"), br) {
		t.Errorf("the manager's summary of the repair: %+v, want what was repaired on %s", c, br)
	}
	if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
		t.Fatal(err)
	}
	if c := hostConvergence(t, env, "hv1"); c == nil || !c.InSync || c.Summary() != "in sync" {
		t.Errorf("the manager's summary of a convergence with nothing to do: %+v, want in sync", c)
	}
}

func hostConvergence(t *testing.T, env *testenv.Env, host string) *rpc.Convergence {
	t.Helper()
	hs, err := env.Client.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Name == host {
			return h.Convergence
		}
	}
	t.Fatalf("host %s not listed", host)
	return nil
}
