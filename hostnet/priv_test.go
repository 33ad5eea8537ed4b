package hostnet_test

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"novanet/hostnet"
	"novanet/linuxnet/link"
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

func TestLinksStatInNamespace(t *testing.T) {
	ns := nstest.New(t)
	ctx := context.Background()
	l, err := hostnet.NewLinks(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, err := l.Stat(ctx, "br0"); err != nil || st.Exists {
		t.Fatalf("Stat of a missing link = %+v, %v", st, err)
	}
	if _, err := l.Stat(ctx, "bad/name"); err == nil {
		t.Error("Stat of a bad name succeeded")
	}
	ns.Run(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	ns.Run(t, "ip", "addr", "add", "192.0.2.5/24", "dev", "eth1")
	gw := netip.MustParsePrefix("10.0.0.1/24")
	if err := l.EnsureBridge(ctx, link.BridgeConfig{Name: "br0", MTU: 1400, Addr: gw}); err != nil {
		t.Fatal(err)
	}
	if err := l.Enslave(ctx, "br0", "eth1", link.EnslaveOptions{MoveAddrs: true}); err != nil {
		t.Fatal(err)
	}
	br, err := l.Stat(ctx, "br0")
	if err != nil {
		t.Fatal(err)
	}
	if br.Kind != "bridge" || !br.Up || !br.HasAddr(gw) || !br.HasAddr(netip.MustParsePrefix("192.0.2.5/24")) {
		t.Errorf("br0 = %+v", br)
	}
	eth1, err := l.Stat(ctx, "eth1")
	if err != nil || eth1.Kind != "veth" || eth1.Master != "br0" || len(eth1.Addrs) != 0 {
		t.Errorf("eth1 = %+v, %v", eth1, err)
	}
	if err := l.Delete(ctx, "br0"); err != nil {
		t.Fatal(err)
	}
	if eth1, err := l.Stat(ctx, "eth1"); err != nil || eth1.Master != "" {
		t.Errorf("eth1 after bridge delete = %+v, %v", eth1, err)
	}
}
