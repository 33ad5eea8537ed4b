package hostnet_test

import (
	"slices"
	"strings"
	"testing"

	"novanet/hostnet"
	"novanet/linuxnet/ebtables"
	"novanet/linuxnet/link"
	"novanet/linuxnet/nstest"
	"novanet/rpc"
)

// spoofVM is a VM on br0 with a static address, plugged through a port
// that carries libvirt's tap MAC of its own.
func spoofVM(t *testing.T, host *nstest.NS, port, mac, addr string) *nstest.VM {
	t.Helper()
	vm := nstest.NewVM(t, host, port)
	vm.SetMAC(t, mac)
	host.Run(t, "ip", "link", "set", port, "address", hostnet.TapMAC(vm.MAC).String())
	vm.Plug(t, host, "br0")
	vm.NS.Run(t, "ip", "addr", "add", addr+"/24", "dev", "eth0")
	vm.NS.Run(t, "ip", "link", "set", "eth0", "up")
	return vm
}

func TestAntiSpoofingInNamespace(t *testing.T) {
	host := nstest.New(t)
	host.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	host.Run(t, "ip", "addr", "add", "10.9.0.1/24", "dev", "br0")
	host.Run(t, "ip", "link", "set", "br0", "up")
	a := spoofVM(t, host, "vpa", "02:16:3e:00:00:0a", "10.9.0.10")
	b := spoofVM(t, host, "vpb", "02:16:3e:00:00:0b", "10.9.0.11")

	n := network(1, "br0", "10.9.0.0/24", "10.9.0.1", 0)
	n.DHCPHosts = []rpc.DHCPHost{
		{MAC: "02:16:3e:00:00:0a", Address: "10.9.0.10"},
		{MAC: "02:16:3e:00:00:0b", Address: "10.9.0.11"},
	}
	nets, err := hostnet.ParseNetworks([]rpc.HostNetwork{n})
	if err != nil {
		t.Fatal(err)
	}
	eb, err := ebtables.New(ebtables.Config{NetNS: host.Path})
	if err != nil {
		t.Fatal(err)
	}
	as := hostnet.NewAntiSpoof(link.New(host.Handle), eb)
	for range 2 { // the second Apply finds the jumps in place
		if _, err := as.Apply(t.Context(), nets); err != nil {
			t.Fatal(err)
		}
	}
	// The kernel holds exactly the rendered rules, each jump once.
	want, err := hostnet.AntiSpoofRules(nets, map[string][]link.Port{"br0": {
		{Name: "vpa", MAC: hostnet.TapMAC(a.MAC)}, {Name: "vpb", MAC: hostnet.TapMAC(b.MAC)}}})
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := ebtables.Render(ebtables.DefaultChain, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := eb.Rules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var wantLines []string
	for _, l := range strings.Split(strings.TrimSpace(rendered), "\n")[2:] {
		wantLines = append(wantLines, strings.TrimPrefix(l, "-A "+ebtables.DefaultChain+" "))
	}
	if !slices.Equal(got, wantLines) || len(got) != 14 {
		t.Fatalf("kernel rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	saved := host.Run(t, "ebtables-save")
	for _, h := range []string{"INPUT", "FORWARD"} {
		if c := strings.Count(saved, "-A "+h+" -j "+ebtables.DefaultChain+"\n"); c != 1 {
			t.Fatalf("%d jumps from %s:\n%s", c, h, saved)
		}
	}

	reach := func(what string, wantA bool) {
		t.Helper()
		if !b.Ping("10.9.0.1") {
			t.Errorf("%s: VM b lost the gateway", what)
		}
		if got := a.Ping("10.9.0.1"); got != wantA {
			t.Errorf("%s: VM a reaches the gateway = %v, want %v", what, got, wantA)
		}
		if a.Addr(t) == "10.9.0.11" {
			return // b's own address would answer on a's loopback
		}
		if got := a.Ping("10.9.0.11"); got != wantA {
			t.Errorf("%s: VM a reaches VM b = %v, want %v", what, got, wantA)
		}
	}
	reach("own addresses", true)

	a.NS.Run(t, "ip", "link", "set", "eth0", "address", "02:16:3e:00:00:0b") // b's MAC
	reach("a uses b's MAC", false)
	a.NS.Run(t, "ip", "link", "set", "eth0", "address", "02:16:3e:00:00:99")
	reach("a uses another MAC", false)
	a.NS.Run(t, "ip", "link", "set", "eth0", "address", "02:16:3e:00:00:0a")
	reach("a's MAC back", true)

	a.NS.Run(t, "ip", "addr", "del", "10.9.0.10/24", "dev", "eth0")
	a.NS.Run(t, "ip", "addr", "add", "10.9.0.50/24", "dev", "eth0")
	reach("a uses another address", false)
	a.NS.Run(t, "ip", "addr", "flush", "dev", "eth0")
	a.NS.Run(t, "ip", "addr", "add", "10.9.0.11/24", "dev", "eth0") // b's address
	reach("a uses b's address", false)
	a.NS.Run(t, "ip", "addr", "flush", "dev", "eth0")
	a.NS.Run(t, "ip", "addr", "add", "10.9.0.10/24", "dev", "eth0")
	reach("a's address back", true)

	// The rules go with the instance: a host without reservations has an
	// empty chain, and a is unfiltered.
	bare, err := hostnet.ParseNetworks([]rpc.HostNetwork{network(1, "br0", "10.9.0.0/24", "10.9.0.1", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.Apply(t.Context(), bare); err != nil {
		t.Fatal(err)
	}
	if got, err := eb.Rules(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("rules without instances: %q, %v", got, err)
	}
	a.NS.Run(t, "ip", "addr", "flush", "dev", "eth0")
	a.NS.Run(t, "ip", "addr", "add", "10.9.0.50/24", "dev", "eth0")
	if !a.Ping("10.9.0.1") {
		t.Error("unfiltered VM a lost the gateway")
	}
}
