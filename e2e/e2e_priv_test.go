// Package e2e_test runs the whole service end to end: PostgreSQL, an
// embedded NATS server, the manager, and the network-host binary
// programming a "hypervisor" network namespace, with "VM" namespaces
// getting their addresses by DHCP. Needs root; every link, address, rule
// and process lives in namespaces the tests create.
package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	hostagent "novanet/agent"
	"novanet/floating"
	"novanet/hostnet"
	"novanet/internal/pgtest"
	"novanet/internal/testenv"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/nstest"
	"novanet/natsauth"
	"novanet/rpc"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var ctx = context.Background()

const chainPrefix = "nn-e2e"

// binaries are the commands built for this test binary, by name.
var (
	binMu    sync.Mutex
	binPaths = map[string]string{}
	binDir   string
)

// binary builds novanet/cmd/<name> once per test binary and returns its
// path.
func binary(t *testing.T, name string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binPaths[name]; ok {
		return p
	}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "novanet-e2e-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = dir
	}
	p := filepath.Join(binDir, name)
	if out, err := exec.Command("go", "build", "-o", p, "novanet/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	binPaths[name] = p
	return p
}

// networkHost builds cmd/network-host once per test binary.
func networkHost(t *testing.T) string { return binary(t, "network-host") }

// agent is a network-host process programming the namespace hv.
type agent struct {
	t    *testing.T
	env  *testenv.Env
	hv   *nstest.NS
	host string
	dir  string
	args []string
	cmd  *exec.Cmd
	log  *os.File
}

func newAgent(t *testing.T, env *testenv.Env, hv *nstest.NS, host, driver string, extra ...string) *agent {
	t.Helper()
	dir := t.TempDir()
	a := &agent{t: t, env: env, hv: hv, host: host, dir: dir}
	a.args = append([]string{"serve", "--host", host, "--driver", driver, "--nats-url", env.NATSURL,
		"--nats-nkey", env.NKey(t, natsauth.KindHost, host),
		"--netns", hv.Path, "--dhcp-dir", filepath.Join(dir, "dhcp"), "--state-dir", filepath.Join(dir, "state"),
		"--event-socket", filepath.Join(dir, "host.sock"), "--iptables-chain-prefix", chainPrefix, "--ipv6=false", "--dnsmasq-user", "root",
		"--heartbeat-interval", "1s", "--converge-interval", "1h", "--log-format", "console", "--log-level", "debug"},
		extra...)
	// Registered before the namespace's own cleanup runs (cleanups run
	// last-in first-out): stop the agent and the dnsmasq it left running.
	t.Cleanup(a.stopAll)
	return a
}

func (a *agent) start() {
	a.t.Helper()
	f, err := os.OpenFile(filepath.Join(a.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		a.t.Fatal(err)
	}
	a.log = f
	a.cmd = exec.Command(networkHost(a.t), a.args...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
}

// kill stops the agent with SIGKILL: no chance to tidy up.
func (a *agent) kill() { a.signal(syscall.SIGKILL) }

// stop stops the agent as systemd would, with SIGTERM.
func (a *agent) stop() { a.signal(syscall.SIGTERM) }

func (a *agent) signal(sig syscall.Signal) {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	_ = a.cmd.Wait()
	a.cmd = nil
	a.log.Close()
}

func (a *agent) stopAll() {
	if a.t.Failed() {
		a.t.Logf("sockets in %s before stopping:\n%s", a.hv.Name, a.hv.Run(a.t, "ss", "-uapn"))
	}
	a.stop()
	// The agent ran as its host's NATS identity: nothing it did may have
	// needed more.
	if b, err := os.ReadFile(filepath.Join(a.dir, "agent.log")); err == nil && strings.Contains(strings.ToLower(string(b)), "permissions violation") {
		a.t.Errorf("the agent on %s was refused something by NATS (see its log)", a.host)
	}
	pids, _ := filepath.Glob(filepath.Join(a.dir, "dhcp", "*", "*.pid"))
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	nstest.Eventually(a.t, 10*time.Second, "dnsmasq gone from "+a.hv.Name, func() bool {
		ps, err := a.hv.Pids()
		return err == nil && len(ps) == 0
	})
	if a.t.Failed() {
		a.t.Logf("iptables-save in %s:\n%s", a.hv.Name, a.hv.Run(a.t, "iptables-save"))
		a.t.Logf("sockets in %s:\n%s", a.hv.Name, a.hv.Run(a.t, "ss", "-uapn"))
		files, _ := filepath.Glob(filepath.Join(a.dir, "dhcp", "*", "*"))
		for _, f := range append([]string{filepath.Join(a.dir, "agent.log")}, files...) {
			if b, err := os.ReadFile(f); err == nil {
				a.t.Logf("%s:\n%s", f, b)
			}
		}
	}
}

func (a *agent) waitRegistered() {
	a.t.Helper()
	nstest.Eventually(a.t, 30*time.Second, a.host+" registered and alive", func() bool {
		hs, err := a.env.Client.ListHosts(ctx)
		return err == nil && slices.ContainsFunc(hs, func(h rpc.HostInfo) bool { return h.Name == a.host && h.Alive })
	})
}

// links returns the names of the links in ns other than lo and test veths.
func links(t *testing.T, ns *nstest.NS) []string {
	t.Helper()
	ls, err := ns.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		name := l.Attrs().Name
		if name == "lo" || strings.HasPrefix(name, "tap") || strings.HasPrefix(name, "uplink") {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func hasLink(ns *nstest.NS, name string) bool {
	_, err := ns.Handle.LinkByName(name)
	return err == nil
}

// newVM plugs a VM with the given MAC into bridge of hv, through tap port.
func newVM(t *testing.T, hv *nstest.NS, bridge, port, mac string) *nstest.VM {
	t.Helper()
	v := nstest.NewVM(t, hv, port)
	v.SetMAC(t, mac)
	v.Plug(t, hv, bridge) // as the hypervisor plugs a VIF
	return v
}

func allocate(t *testing.T, env *testenv.Env, inst, project, host string) rpc.VIF {
	t.Helper()
	var info rpc.NetworkInfo
	if err := env.Client.Call(ctx, rpc.MethodAllocateForInstance, rpc.AllocateForInstanceRequest{
		InstanceUUID: inst, ProjectID: project, Host: host}, &info); err != nil {
		t.Fatalf("allocate %s: %v", inst, err)
	}
	if len(info.VIFs) != 1 || len(info.VIFs[0].FixedIPs) != 1 {
		t.Fatalf("allocate %s: %+v, want one interface with one address", inst, info)
	}
	return info.VIFs[0]
}

func fixedIP(t *testing.T, env *testenv.Env, addr string) rpc.FixedIP {
	t.Helper()
	var f rpc.FixedIP
	if err := env.Client.Call(ctx, rpc.MethodGetFixedIPByAddress, rpc.AddressRequest{Address: addr}, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// wantFirewall waits until the namespace's iptables equal what
// hostagent.Firewall makes of the manager's desired state for the host (the
// agent applies it after the links), and reports the difference if they
// never do.
func wantFirewall(t *testing.T, env *testenv.Env, hv *nstest.NS, cfg hostnet.Config) {
	t.Helper()
	wantRules(t, env, hv, cfg, false)
}

// wantRules is wantFirewall; with badFloating, floating IPs the host cannot
// use are left out of the desired state (as the agent leaves them out)
// instead of failing the test.
func wantRules(t *testing.T, env *testenv.Env, hv *nstest.NS, cfg hostnet.Config, badFloating bool) {
	t.Helper()
	st, err := env.Client.HostState(ctx, cfg.Host, 0)
	if err != nil {
		t.Fatal(err)
	}
	nets, err := hostnet.ParseNetworks(st.Networks)
	if err != nil {
		t.Fatal(err)
	}
	ips, err := floating.Parse(st.FloatingIPs, cfg.PublicInterface)
	if err != nil && !badFloating {
		t.Fatal(err)
	}
	rs, err := hostagent.Firewall(cfg, nets, ips)
	if err != nil {
		t.Fatal(err)
	}
	m, fake, err := iptables.NewFake(iptables.Config{Binary: chainPrefix, Families: []iptables.Family{iptables.IPv4}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.SetRules(m, iptables.IPv4); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx); err != nil {
		t.Fatal(err)
	}
	want := iptables.CanonicalSave(fake.Save(iptables.IPv4))
	var got string
	deadline := time.Now().Add(15 * time.Second)
	for {
		got = iptables.CanonicalSave(hv.Run(t, "iptables-save"))
		if got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("iptables-save of %s differs from the desired state (-want +got):\n%s", hv.Name, d)
	}
}

func TestFlatDHCPEndToEnd(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.StartSecure(t, "flatdhcp")
	hv := nstest.New(t)
	ag := newAgent(t, env, hv, "hv1", "flatdhcp", "--routing-source-ip", "192.0.2.10", "--metadata-host", "192.0.2.20")
	ag.start()
	ag.waitRegistered()

	nets, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100", DNS1: "10.0.0.1", Label: "private"})
	if err != nil {
		t.Fatal(err)
	}
	inst := uuid.NewString()
	vif := allocate(t, env, inst, "p1", "hv1")
	addr := vif.FixedIPs[0].Address
	nstest.Eventually(t, 30*time.Second, "br100 made by the agent", func() bool { return hasLink(hv, "br100") })

	v := newVM(t, hv, "br100", "tap1", vif.MAC)
	v.StartDHCP(t)
	nstest.Eventually(t, 30*time.Second, "VM has address "+addr, func() bool { return v.Addr(t) == addr })
	if !v.Ping("10.0.0.1") {
		t.Error("the VM cannot ping its gateway 10.0.0.1")
	}
	nstest.Eventually(t, 30*time.Second, addr+" marked leased through dhcp-event", func() bool {
		return fixedIP(t, env, addr).Leased
	})
	cfg := hostnet.Config{Host: "hv1", Driver: "flatdhcp", RoutingSourceIP: netip.MustParseAddr("192.0.2.10"),
		MetadataHost: netip.MustParseAddr("192.0.2.20")}
	wantFirewall(t, env, hv, cfg)

	// Deallocate: the reservation goes; the release frees the address.
	if err := env.Client.Call(ctx, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
		t.Fatal(err)
	}
	if f := fixedIP(t, env, addr); f.Allocated || f.InstanceUUID != inst {
		t.Errorf("after deallocate %s should be held for %s until released: %+v", addr, inst, f)
	}
	v.StopDHCP() // udhcpc -R sends DHCPRELEASE
	nstest.Eventually(t, 30*time.Second, addr+" free after the DHCP release", func() bool {
		f := fixedIP(t, env, addr)
		return f.InstanceUUID == "" && !f.Leased && !f.Allocated
	})

	// Delete the network: the agent tears it down.
	if _, err := env.Client.DeleteNetwork(ctx, fmt.Sprint(nets[0].ID)); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 30*time.Second, "br100 removed", func() bool { return !hasLink(hv, "br100") })
	nstest.Eventually(t, 30*time.Second, "dnsmasq stopped", func() bool {
		ps, err := hv.Pids()
		return err == nil && len(ps) == 0
	})
	wantFirewall(t, env, hv, cfg)
}

// uplink gives the hypervisor a veth pair, uplink0 (192.168.50.1/24) and
// uplink1: the parent of the VXLAN segments that stand in for 802.1Q VLAN
// links, which this kernel may lack.
func uplink(t *testing.T, hv *nstest.NS) {
	t.Helper()
	hv.Run(t, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
	hv.Run(t, "ip", "addr", "add", "192.168.50.1/24", "dev", "uplink0")
	hv.Run(t, "ip", "link", "set", "uplink0", "up")
	hv.Run(t, "ip", "link", "set", "uplink1", "up")
}

var vlanArgs = []string{"--vlan-interface", "uplink0", "--vlan-segment", "vxlan", "--vxlan-group", "192.168.50.2",
	"--routing-source-ip", "192.0.2.10"}

// startVLAN starts the service in VLAN mode and a registered vlan agent
// programming a hypervisor namespace with an uplink.
func startVLAN(t *testing.T, extra ...string) (*testenv.Env, *nstest.NS, *agent) {
	t.Helper()
	nstest.RequireRoot(t)
	env := testenv.StartSecure(t, "vlan")
	hv := nstest.New(t)
	uplink(t, hv)
	ag := newAgent(t, env, hv, "hv1", "vlan", append(slices.Clone(vlanArgs), extra...)...)
	ag.start()
	ag.waitRegistered()
	return env, hv, ag
}

func vlanConfig() hostnet.Config {
	return hostnet.Config{Host: "hv1", Driver: "vlan", RoutingSourceIP: netip.MustParseAddr("192.0.2.10")}
}

func TestVLANProjectsIsolated(t *testing.T) {
	env, hv, _ := startVLAN(t)
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.1.0.0/24", NumNetworks: 2,
		NetworkSize: 16, VLANStart: 100}); err != nil {
		t.Fatal(err)
	}
	vifA := allocate(t, env, uuid.NewString(), "project-a", "hv1")
	vifB := allocate(t, env, uuid.NewString(), "project-b", "hv1")
	if vifA.Network.Bridge == vifB.Network.Bridge {
		t.Fatalf("both projects on bridge %s", vifA.Network.Bridge)
	}
	for _, br := range []string{vifA.Network.Bridge, vifB.Network.Bridge} {
		nstest.Eventually(t, 30*time.Second, br+" made by the agent", func() bool { return hasLink(hv, br) })
	}
	vmA := newVM(t, hv, vifA.Network.Bridge, "tapa", vifA.MAC)
	vmB := newVM(t, hv, vifB.Network.Bridge, "tapb", vifB.MAC)
	for _, x := range []struct {
		v   *nstest.VM
		vif rpc.VIF
	}{{vmA, vifA}, {vmB, vifB}} {
		x.v.StartDHCP(t)
		ip := x.vif.FixedIPs[0]
		nstest.Eventually(t, 30*time.Second, "VM has address "+ip.Address, func() bool { return x.v.Addr(t) == ip.Address })
		if !x.v.Ping(ip.Gateway) {
			t.Errorf("VM on %s cannot reach its gateway %s", x.vif.Network.Bridge, ip.Gateway)
		}
	}
	if vmA.Ping(vifB.FixedIPs[0].Address) {
		t.Errorf("project a's VM reaches project b's VM at %s", vifB.FixedIPs[0].Address)
	}
	if vmB.Ping(vifA.FixedIPs[0].Address) {
		t.Errorf("project b's VM reaches project a's VM at %s", vifA.FixedIPs[0].Address)
	}
	want := []string{vifA.Network.Bridge, vifB.Network.Bridge,
		fmt.Sprintf("vxlan%d", vifA.Network.VLAN), fmt.Sprintf("vxlan%d", vifB.Network.VLAN)}
	sort.Strings(want)
	if got := links(t, hv); !slices.Equal(got, want) {
		t.Errorf("links %v, want %v", got, want)
	}
	wantFirewall(t, env, hv, vlanConfig())
}

// hostsFileMACs returns the MACs in a network's dnsmasq hosts file.
func hostsFileMACs(a *agent, bridge string) []string {
	b, err := os.ReadFile(filepath.Join(a.dir, "dhcp", bridge, "hosts"))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if mac, _, ok := strings.Cut(l, ","); ok {
			out = append(out, mac)
		}
	}
	sort.Strings(out)
	return out
}

// topProcesses returns the processes of ns whose parent is not in ns:
// one per dnsmasq, leaving out the helper each forks for its dhcp-script.
func topProcesses(ns *nstest.NS) ([]int, error) {
	pids, err := ns.Pids()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if !slices.Contains(pids, ppid) {
			out = append(out, p)
		}
	}
	return out, nil
}

// converged reports how the namespace differs from the manager's desired
// state for the host: links, dnsmasq processes and reservations ("" when
// it matches).
func converged(t *testing.T, env *testenv.Env, a *agent) string {
	st, err := env.Client.HostState(ctx, a.host, 0)
	if err != nil {
		return err.Error()
	}
	var want []string
	for _, n := range st.Networks {
		want = append(want, n.Bridge, fmt.Sprintf("vxlan%d", n.VLAN))
	}
	sort.Strings(want)
	if got := links(t, a.hv); !slices.Equal(got, want) {
		return fmt.Sprintf("links %v, want %v", got, want)
	}
	pids, err := topProcesses(a.hv)
	if err != nil || len(pids) != len(st.Networks) {
		return fmt.Sprintf("%d processes (%v) in the namespace, want one dnsmasq per network (%d)", len(pids), err, len(st.Networks))
	}
	for _, n := range st.Networks {
		var macs []string
		for _, h := range n.DHCPHosts {
			macs = append(macs, h.MAC)
		}
		sort.Strings(macs)
		if got := hostsFileMACs(a, n.Bridge); !slices.Equal(got, macs) {
			return fmt.Sprintf("%s reservations %v, want %v", n.Bridge, got, macs)
		}
	}
	return ""
}

func TestAgentKilledMidSetupConverges(t *testing.T) {
	env, hv, ag := startVLAN(t)
	ag.kill()

	// While the agent is down, seven projects get a network each.
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.2.0.0/24", NumNetworks: 8,
		NetworkSize: 16, VLANStart: 200}); err != nil {
		t.Fatal(err)
	}
	insts := map[string]rpc.VIF{}
	for i := range 7 {
		inst := uuid.NewString()
		insts[inst] = allocate(t, env, inst, fmt.Sprintf("project-%d", i), "hv1")
	}

	// Start it and kill it as soon as the first bridge appears: in the
	// middle of setting up seven networks.
	ag.start()
	nstest.Eventually(t, 30*time.Second, "a first bridge", func() bool { return len(links(t, hv)) > 0 })
	ag.kill()
	t.Logf("killed with %v made", links(t, hv))

	// Change the allocations behind its back: one project's instance goes
	// and its network is deleted; another's instance goes but its address
	// is not released yet; an eighth project arrives.
	var gone, held rpc.VIF
	var goneInst, heldInst string
	for inst, vif := range insts {
		switch {
		case goneInst == "":
			goneInst, gone = inst, vif
		case heldInst == "":
			heldInst, held = inst, vif
		}
	}
	for _, inst := range []string{goneInst, heldInst} {
		if err := env.Client.Call(ctx, rpc.MethodDeallocateForInstance, rpc.InstanceRequest{InstanceUUID: inst}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Client.Call(ctx, rpc.MethodReleaseFixedIP, rpc.AddressRequest{Address: gone.FixedIPs[0].Address}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.DeleteNetwork(ctx, fmt.Sprint(gone.Network.ID)); err != nil {
		t.Fatal(err)
	}
	allocate(t, env, uuid.NewString(), "project-7", "hv1")

	ag.start()
	var diff string
	deadline := time.Now().Add(60 * time.Second)
	for diff = converged(t, env, ag); diff != "" && time.Now().Before(deadline); diff = converged(t, env, ag) {
		time.Sleep(100 * time.Millisecond)
	}
	if diff != "" {
		t.Fatalf("not converged in 60s: %s", diff)
	}
	if hasLink(hv, gone.Network.Bridge) {
		t.Errorf("bridge %s of the deleted network is left over", gone.Network.Bridge)
	}
	if macs := hostsFileMACs(ag, held.Network.Bridge); len(macs) != 0 {
		t.Errorf("deallocated instance still reserved on %s: %v", held.Network.Bridge, macs)
	}
	wantFirewall(t, env, hv, vlanConfig())
	// Records name exactly the networks set up.
	recs, _ := filepath.Glob(filepath.Join(ag.dir, "state", "networks", "*.json"))
	st, _ := env.Client.HostState(ctx, "hv1", 0)
	if len(recs) != len(st.Networks) {
		t.Errorf("%d records for %d networks: %v", len(recs), len(st.Networks), recs)
	}
}

func TestFlatUsesOperatorBridge(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.StartSecure(t, "flat")
	hv := nstest.New(t)
	ag := newAgent(t, env, hv, "hv1", "flat", "--routing-source-ip", "192.0.2.10")
	ag.start()
	ag.waitRegistered()
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.3.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100"}); err != nil {
		t.Fatal(err)
	}
	allocate(t, env, uuid.NewString(), "p1", "hv1")

	// No bridge yet: the host cannot serve the network, and says why.
	_, err := env.Client.ConvergeHost(ctx, "hv1")
	if err == nil || !strings.Contains(err.Error(), "bridge br100 does not exist") {
		t.Fatalf("converge without the operator's bridge: %v, want an error naming br100", err)
	}
	// With the manager's code for a clash with the host's state.
	if !errors.Is(err, rpc.ErrConflict) || strings.Count(err.Error(), "network 1 (br100)") != 1 {
		t.Errorf("converge without the operator's bridge: %v, want conflict naming network 1 (br100) once", err)
	}
	if got := links(t, hv); len(got) != 0 {
		t.Errorf("flat driver made links %v", got)
	}

	// The operator makes the bridge: the host converges, making nothing.
	hv.Run(t, "ip", "link", "add", "br100", "type", "bridge")
	if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
		t.Fatal(err)
	}
	if got := links(t, hv); !slices.Equal(got, []string{"br100"}) {
		t.Errorf("links %v, want only the operator's br100", got)
	}
	wantFirewall(t, env, hv, hostnet.Config{Host: "hv1", Driver: "flat", RoutingSourceIP: netip.MustParseAddr("192.0.2.10")})
	if pids, _ := hv.Pids(); len(pids) != 0 {
		t.Errorf("flat mode runs no dnsmasq, found processes %v", pids)
	}
	changes, err := env.Client.ConvergeHost(ctx, "hv1")
	if err != nil || len(changes) != 0 {
		t.Errorf("second converge: %v, %v; want nothing to change", changes, err)
	}
}
