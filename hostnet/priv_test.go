package hostnet_test

import (
	"os/exec"
	"strings"
	"testing"

	"novanet/hostnet"
	"novanet/linuxnet/nstest"
)

func TestEnableForwardingInNamespace(t *testing.T) {
	ns := nstest.New(t)
	read := func(cmd *exec.Cmd) string {
		t.Helper()
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	const path = "/proc/sys/net/ipv4/ip_forward"
	machine := read(exec.Command("cat", path))
	if got := read(ns.Command(t.Context(), "cat", path)); got != "0" {
		t.Fatalf("new namespace ip_forward = %s", got)
	}
	for range 2 { // the second call finds it set
		if err := hostnet.EnableForwarding(ns.Path); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(ns.Command(t.Context(), "cat", path)); got != "1" {
		t.Errorf("ip_forward read by a fresh ip netns exec = %s, want 1", got)
	}
	if got := read(exec.Command("cat", path)); got != machine {
		t.Errorf("the machine's own ip_forward changed: %s -> %s", machine, got)
	}
	if err := hostnet.EnableForwarding("/nonexistent/netns"); err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Errorf("EnableForwarding of a missing namespace = %v", err)
	}
}
