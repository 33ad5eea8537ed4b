package e2e_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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

// flatDHCPHost starts a flatdhcp agent on a new hypervisor with one
// network on br100 and a VM on it that got its address and reaches its
// gateway.
func flatDHCPHost(t *testing.T, extra ...string) (*testenv.Env, *nstest.NS, *agent, *nstest.VM) {
	t.Helper()
	nstest.RequireRoot(t)
	env := testenv.Start(t, "flatdhcp")
	hv := nstest.New(t)
	ag := newAgent(t, env, hv, "hv1", "flatdhcp", append([]string{"--routing-source-ip", "192.0.2.10"}, extra...)...)
	ag.start()
	ag.waitRegistered()
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100"}); err != nil {
		t.Fatal(err)
	}
	vif := allocate(t, env, uuid.NewString(), "p1", "hv1")
	addr := vif.FixedIPs[0].Address
	nstest.Eventually(t, 30*time.Second, "br100 made by the agent", func() bool { return hasLink(hv, "br100") })
	v := newVM(t, hv, "br100", "tap1", vif.MAC)
	if ok, out := v.DHCP(t, "5"); !ok || v.Addr(t) != addr {
		t.Fatalf("VM has %q, want %s:\n%s", v.Addr(t), addr, out)
	}
	if !v.Ping("10.0.0.1") {
		t.Fatal("the VM cannot ping its gateway 10.0.0.1")
	}
	wantFirewall(t, env, hv, hostnet.Config{Host: "hv1", Driver: "flatdhcp", RoutingSourceIP: netip.MustParseAddr("192.0.2.10")})
	return env, hv, ag, v
}

// rulesIn counts the rules of chain in table of ns.
func rulesIn(t *testing.T, ns *nstest.NS, table, chain string) int {
	n := 0
	for _, l := range strings.Split(ns.Run(t, "iptables-save", "-t", table), "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			n++
		}
	}
	return n
}

// tamper flushes the agent's FORWARD chain, deletes the jump to its INPUT
// chain and adds a rule of someone else's to its INPUT chain; it returns
// how many of the agent's rules went.
func tamper(t *testing.T, hv *nstest.NS) int {
	t.Helper()
	n := rulesIn(t, hv, "filter", chainPrefix+"-FORWARD")
	if n == 0 {
		t.Fatalf("no rules in %s-FORWARD to flush", chainPrefix)
	}
	hv.Run(t, "iptables", "-F", chainPrefix+"-FORWARD")
	hv.Run(t, "iptables", "-D", "INPUT", "-j", chainPrefix+"-INPUT")
	hv.Run(t, "iptables", "-A", chainPrefix+"-INPUT", "-s", "198.51.100.7/32", "-j", "ACCEPT")
	return n + 1
}

func TestFirewallDriftRepairedAndReported(t *testing.T) {
	env, hv, ag, v := flatDHCPHost(t)
	cfg := hostnet.Config{Host: "hv1", Driver: "flatdhcp", RoutingSourceIP: netip.MustParseAddr("192.0.2.10")}
	if changes, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil || len(changes) != 0 {
		t.Fatalf("converge of a host that matches: %v, %v; want nothing to change", changes, err)
	}

	// netadm host converge (the converge RPC) reports the repair.
	lost := tamper(t, hv)
	changes, err := env.Client.ConvergeHost(ctx, "hv1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("firewall: restored %d rules", lost), "firewall: removed 1 rule not ours from our chains"}
	if !slices.Equal(changes, want) {
		t.Errorf("converge after tampering reported %q, want %q", changes, want)
	}
	wantFirewall(t, env, hv, cfg)
	if !v.Ping("10.0.0.1") {
		t.Error("the VM cannot ping its gateway after the repair")
	}
	if changes, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil || len(changes) != 0 {
		t.Errorf("converge after the repair: %v, %v; want nothing to change", changes, err)
	}

	// The periodic convergence repairs it too, and says so in the log.
	ag.stop()
	ag.args = append(ag.args, "--converge-interval", "1s")
	ag.start()
	nstest.Eventually(t, 30*time.Second, "the restarted agent converged, nothing left to change", func() bool {
		changes, err := env.Client.ConvergeHost(ctx, "hv1")
		return err == nil && len(changes) == 0
	})
	lost = tamper(t, hv)
	line := fmt.Sprintf("firewall: restored %d rules", lost)
	nstest.Eventually(t, 30*time.Second, "the periodic convergence logs "+line, func() bool {
		return ag.logHas(`"trigger": "periodic", "changes": ["` + line + `", "firewall: removed 1 rule not ours from our chains"]`)
	})
	wantFirewall(t, env, hv, cfg)
}

// dnsmasqPid returns the pid in br100's dnsmasq pid file if that process
// is alive (0 otherwise).
func dnsmasqPid(ag *agent) int {
	b, err := os.ReadFile(filepath.Join(ag.dir, "dhcp", "br100", "dnsmasq.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil || zombie(pid) {
		return 0
	}
	return pid
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// A dnsmasq that dies is started again within seconds (the agent's
// converge interval is an hour here), and the restart is reported.
func TestDeadDnsmasqRestartedAtOnce(t *testing.T) {
	_, _, ag, v := flatDHCPHost(t)
	old := dnsmasqPid(ag)
	if old == 0 {
		t.Fatal("no dnsmasq running for br100")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 10*time.Second, "dnsmasq for br100 running again", func() bool {
		pid := dnsmasqPid(ag)
		return pid != 0 && pid != old
	})
	nstest.Eventually(t, 10*time.Second, "the restart reported", func() bool {
		return ag.logHas(`"trigger": "dnsmasq died", "network": 1, "changes": ["dnsmasq br100 restarted (it had died)"]`)
	})
	if ok, out := v.DHCP(t, "5"); !ok {
		t.Errorf("the VM gets no lease from the restarted dnsmasq:\n%s", out)
	}
	if !v.Ping("10.0.0.1") {
		t.Error("the VM cannot ping its gateway after dnsmasq's restart")
	}
}
