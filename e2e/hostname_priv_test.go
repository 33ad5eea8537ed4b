package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"novanet/internal/testenv"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

func (a *agent) logHas(s string) bool {
	b, err := os.ReadFile(filepath.Join(a.dir, "agent.log"))
	return err == nil && strings.Contains(string(b), s)
}

// Two agents started with one host name on two machines: the second is
// refused while the first is alive, builds nothing and answers nothing;
// once the first is gone (its heartbeat stale) the second takes over.
func TestSecondAgentWithOneHostNameRefused(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.Start(t, "flatdhcp")
	hv1, hv2 := nstest.New(t), nstest.New(t)
	first := newAgent(t, env, hv1, "hv1", "flatdhcp")
	first.start()
	first.waitRegistered()
	if _, err := env.Client.CreateNetworks(ctx, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/28", NumNetworks: 1,
		NetworkSize: 16, Bridge: "br100"}); err != nil {
		t.Fatal(err)
	}
	allocate(t, env, uuid.NewString(), "p1", "hv1")
	nstest.Eventually(t, 30*time.Second, "br100 on the first machine", func() bool { return hasLink(hv1, "br100") })

	second := newAgent(t, env, hv2, "hv1", "flatdhcp")
	second.start()
	nstest.Eventually(t, 30*time.Second, "the second agent refused", func() bool {
		return second.logHas("registration refused")
	})
	var instance string
	if err := env.Pool.QueryRow(ctx, `SELECT instance FROM hosts WHERE name = 'hv1'`).Scan(&instance); err != nil {
		t.Fatal(err)
	}
	if !second.logHas("is registered by agent instance " + instance) {
		t.Errorf("the refusal does not name the live agent's instance %s", instance)
	}
	// Every request for hv1 reaches the first agent: the second one
	// serves nothing, so neither the notice of a new instance nor any of
	// these convergences builds br100 on its machine.
	allocate(t, env, uuid.NewString(), "p1", "hv1")
	for range 6 {
		if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
			t.Fatal(err)
		}
	}
	if ls := links(t, hv2); len(ls) != 0 {
		t.Fatalf("the refused agent made %v", ls)
	}

	// The first machine dies; once its heartbeat is stale the name is
	// free and the second agent serves hv1.
	first.kill()
	if _, err := env.Pool.Exec(ctx, `UPDATE hosts SET last_seen = now() - interval '1 hour' WHERE name = 'hv1'`); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 30*time.Second, "br100 on the second machine", func() bool { return hasLink(hv2, "br100") })
	if _, err := env.Client.ConvergeHost(ctx, "hv1"); err != nil {
		t.Errorf("converge hv1 after the takeover: %v", err)
	}
}

// Two agents on one state directory would tear down each other's
// networks: the second exits, naming the first.
func TestStateDirectoryLocked(t *testing.T) {
	nstest.RequireRoot(t)
	env := testenv.Start(t, "flatdhcp")
	hv := nstest.New(t)
	first := newAgent(t, env, hv, "hv1", "flatdhcp")
	first.start()
	first.waitRegistered()
	out, err := exec.Command(networkHost(t), first.args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is in use by another network-host (pid "+strconv.Itoa(first.cmd.Process.Pid)) {
		t.Errorf("a second agent on the first one's state directory: %v\n%s", err, out)
	}
}
