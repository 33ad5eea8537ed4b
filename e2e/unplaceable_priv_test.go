package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// A floating IP the host cannot place (its range has no interface and the
// agent no --public-interface) is reported, naming the address and why,
// and left out: the isolation rules of the networks set up after it still
// apply, and a floating IP that can be placed works.
func TestUnplaceableFloatingIPBlocksNothing(t *testing.T) {
	env, hv, _ := startVLAN(t)
	pub := public(t, hv)
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.1.0.0/24", NumNetworks: 2,
		NetworkSize: 16, VLANStart: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{Pool: "nowhere", CIDR: "198.51.100.0/29"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CreateFloatingIPs(ctx, rpc.CreateFloatingIPsRequest{Pool: "public", CIDR: "203.0.113.48/29", Interface: "pub0"}); err != nil {
		t.Fatal(err)
	}
	float := func(project, pool, fixed string) string {
		t.Helper()
		fip, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: project, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Client.AssociateFloatingIP(ctx, rpc.AssociateFloatingIPRequest{FloatingAddress: fip.Address, FixedAddress: fixed}); err != nil {
			t.Fatal(err)
		}
		return fip.Address
	}

	// Project a's instance gets the floating IP that cannot be placed
	// before project b's network is set up on the host.
	vifA := allocate(t, env, uuid.NewString(), "project-a", "hv1")
	bad := float("project-a", "nowhere", vifA.FixedIPs[0].Address)
	_, err := env.Client.ConvergeHost(ctx, "hv1")
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "no interface and no public interface configured") {
		t.Fatalf("converge with %s unplaceable: %v, want an error naming it and why", bad, err)
	}
	vifB := allocate(t, env, uuid.NewString(), "project-b", "hv1")
	good := float("project-b", "public", vifB.FixedIPs[0].Address)

	vms := map[string]*nstest.VM{}
	for _, x := range []struct {
		name, port string
		vif        rpc.VIF
	}{{"a", "tapa", vifA}, {"b", "tapb", vifB}} {
		nstest.Eventually(t, 30*time.Second, x.vif.Network.Bridge+" made by the agent", func() bool { return hasLink(hv, x.vif.Network.Bridge) })
		v := newVM(t, hv, x.vif.Network.Bridge, x.port, x.vif.MAC)
		if ok, out := v.DHCP(t, "5"); !ok || v.Addr(t) != x.vif.FixedIPs[0].Address {
			t.Fatalf("VM %s has %q, want %s:\n%s", x.name, v.Addr(t), x.vif.FixedIPs[0].Address, out)
		}
		vms[x.name] = v
	}
	nstest.Eventually(t, 30*time.Second, good+" bound on pub0", func() bool { return bound(t, hv, good) })
	cfg := vlanConfig()
	wantRules(t, env, hv, cfg, true)
	if strings.Contains(hv.Run(t, "iptables-save"), bad) {
		t.Errorf("rules for the unplaceable %s applied", bad)
	}
	if vms["a"].Ping(vifB.FixedIPs[0].Address) {
		t.Errorf("project a's VM reaches project b's VM at %s", vifB.FixedIPs[0].Address)
	}
	if vms["b"].Ping(vifA.FixedIPs[0].Address) {
		t.Errorf("project b's VM reaches project a's VM at %s", vifA.FixedIPs[0].Address)
	}
	if err := ping(pub, good); err != nil {
		t.Errorf("the placeable floating IP: %v", err)
	}
	// Still reported at every convergence, naming the address once.
	_, err = env.Client.ConvergeHost(ctx, "hv1")
	if err == nil || strings.Count(err.Error(), bad) != 1 {
		t.Errorf("second converge: %v, want %s named once", err, bad)
	}
}
