package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// sharedVM is one instance of TestSharedBridge: on its own network, all of
// them on br100.
type sharedVM struct {
	inst string
	vif  rpc.VIF
	vm   *nstest.VM
}

func (s sharedVM) addr() string    { return s.vif.FixedIPs[0].Address }
func (s sharedVM) gateway() string { return s.vif.FixedIPs[0].Gateway }

// netadm runs the real netadm binary, as an operator types it, against the
// env's bus (with a HOME of its own, so no operator seed of this machine is
// picked up), and returns its standard output.
func netadm(t *testing.T, env *testenv.Env, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(binary(t, "netadm"), append([]string{"--nats-url", env.NATSURL}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("netadm %v: %v\n%s%s", args, err, out, stderr)
	}
	return out
}

// TestSharedBridge follows the README's First steps on a flatdhcp host, with
// the real netadm binary for the operator's steps (network create, instance
// allocate and deallocate, network delete):
// three flat networks, all on br100 (netadm network create 10.0.0.0/8 3
// 16). A VM on each gets its address by DHCP from the bridge's one dnsmasq
// and pings its gateway; deleting one network leaves the others' VMs
// working (the bridge and dnsmasq stay, the others' DHCP too); and when
// br100 is deleted behind the agent's back, the next convergence makes it
// again with the VMs' ports back on it.
func TestSharedBridge(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.Start(t, "flatdhcp")
	hv := nstest.New(t)
	ag := newAgent(t, env, hv, "hv1", "flatdhcp", "--routing-source-ip", "192.0.2.10")
	ag.start()
	ag.waitRegistered()

	// The operator's steps are the README's, with the real netadm.
	var created rpc.NetworksReply
	if err := json.Unmarshal(netadm(t, env, "-o", "json", "network", "create", "10.0.0.0/8", "3", "16"), &created); err != nil {
		t.Fatalf("netadm -o json network create: %v", err)
	}
	nets := created.Networks
	if len(nets) != 3 {
		t.Fatalf("network create made %d networks, want 3", len(nets))
	}
	for _, n := range nets {
		if n.Bridge != "br100" {
			t.Fatalf("network %d on bridge %q, want the default br100", n.ID, n.Bridge)
		}
	}
	vms := make([]sharedVM, len(nets))
	for i, n := range nets {
		inst := uuid.NewString()
		var info rpc.NetworkInfo
		if err := json.Unmarshal(netadm(t, env, "-o", "json", "instance", "allocate", inst, "--project", "p1",
			"--host", "hv1", "--network", n.Label), &info); err != nil {
			t.Fatalf("netadm -o json instance allocate: %v", err)
		}
		if len(info.VIFs) != 1 || len(info.VIFs[0].FixedIPs) != 1 {
			t.Fatalf("allocate on network %d: %+v, want one interface with one address", n.ID, info)
		}
		vms[i] = sharedVM{inst: inst, vif: info.VIFs[0]}
	}
	nstest.Eventually(t, 30*time.Second, "br100 made by the agent", func() bool { return hasLink(hv, "br100") })
	for i := range vms {
		vms[i].vm = newVM(t, hv, "br100", fmt.Sprintf("tap%d", i+1), vms[i].vif.MAC)
		vms[i].vm.StartDHCP(t)
	}
	for _, s := range vms {
		nstest.Eventually(t, 30*time.Second, fmt.Sprintf("VM on network %d has address %s", s.vif.Network.ID, s.addr()),
			func() bool { return s.vm.Addr(t) == s.addr() })
		if !s.vm.Ping(s.gateway()) {
			t.Errorf("the VM on network %d cannot ping its gateway %s", s.vif.Network.ID, s.gateway())
		}
	}
	if pids, err := topProcesses(hv); err != nil || len(pids) != 1 {
		t.Errorf("dnsmasq processes %v (%v), want one for br100", pids, err)
	}

	// The last network goes: its instance, its address, then the network.
	gone := vms[2]
	netadm(t, env, "instance", "deallocate", gone.inst)
	gone.vm.StopDHCP()
	nstest.Eventually(t, 30*time.Second, gone.addr()+" free after the DHCP release", func() bool {
		f := fixedIP(t, env, gone.addr())
		return f.InstanceUUID == "" && !f.Allocated
	})
	netadm(t, env, "network", "delete", gone.vif.Network.Label)
	nstest.Eventually(t, 30*time.Second, "the deleted network's range gone from br100's dnsmasq", func() bool {
		return !slices.Contains(hostsFileMACs(ag, "br100"), gone.vif.MAC)
	})
	if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
		t.Fatal(err)
	}
	if !hasLink(hv, "br100") {
		t.Fatal("br100 deleted with the first of its three networks")
	}
	for _, s := range vms[:2] {
		if !s.vm.Ping(s.gateway()) {
			t.Errorf("after deleting network %d, the VM on network %d cannot ping its gateway %s",
				gone.vif.Network.ID, s.vif.Network.ID, s.gateway())
		}
		// And DHCP still answers it: a fresh client gets the address again.
		if ok, out := s.vm.DHCP(t, "5"); !ok {
			t.Errorf("after deleting network %d, the VM on network %d gets no lease:\n%s", gone.vif.Network.ID, s.vif.Network.ID, out)
		}
	}

	// br100 deleted behind the agent's back: converged, it comes back with
	// the VMs' ports.
	hv.Run(t, "ip", "link", "del", "br100")
	if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
		t.Fatal(err)
	}
	for _, s := range vms[:2] {
		if !s.vm.Ping(s.gateway()) {
			t.Errorf("after br100 was made again, the VM on network %d cannot ping its gateway %s", s.vif.Network.ID, s.gateway())
		}
	}
}
