package nstest

import (
	"context"
	_ "embed"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// UDHCPCScript is busybox udhcpc's event script for a test VM (the file
// udhcpc.sh, which make demo uses too): it applies what the server gave
// and records it in $STATE/udhcpc-<event>.env.
//
//go:embed udhcpc.sh
var UDHCPCScript string

// VM is a test "instance": a network namespace whose eth0 is a veth whose
// other end (Port) is in the host namespace, ready to be plugged into a
// bridge. For privileged tests only.
type VM struct {
	NS   *NS
	Port string
	MAC  net.HardwareAddr
	dir  string
	dhcp *exec.Cmd // the udhcpc of StartDHCP
}

// NewVM makes a VM namespace and the veth pair Port (in host) / eth0 (in
// the VM).
func NewVM(t *testing.T, host *NS, port string) *VM {
	t.Helper()
	v := &VM{NS: New(t), Port: port, dir: t.TempDir()}
	host.Run(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", v.NS.Name)
	l, err := v.NS.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	v.MAC = l.Attrs().HardwareAddr
	if err := os.WriteFile(filepath.Join(v.dir, "udhcpc.sh"), []byte(UDHCPCScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return v
}

// Plug makes the VM's port a port of bridge in host (what the hypervisor
// does when it plugs a VIF).
func (v *VM) Plug(t *testing.T, host *NS, bridge string) {
	t.Helper()
	host.Run(t, "ip", "link", "set", v.Port, "master", bridge, "up")
}

// DHCP runs busybox udhcpc once in the VM and reports whether a lease was
// obtained.
func (v *VM) DHCP(t *testing.T, tries string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := v.NS.Command(ctx, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", tries, "-T", "1",
		"-O", "mtu", "-O", "domain", "-O", "dns", "-s", filepath.Join(v.dir, "udhcpc.sh"))
	cmd.Env = append(os.Environ(), "STATE="+v.dir)
	out, err := cmd.CombinedOutput()
	return err == nil, string(out)
}

// SetMAC gives the VM's eth0 the MAC the manager allocated.
func (v *VM) SetMAC(t *testing.T, mac string) {
	t.Helper()
	v.NS.Run(t, "ip", "link", "set", "eth0", "address", mac)
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	v.MAC = hw
}

// StartDHCP runs busybox udhcpc in the background, as a VM's DHCP client
// does, until StopDHCP or the end of the test; it releases its lease when
// stopped. Its output is logged if the test fails.
func (v *VM) StartDHCP(t *testing.T) {
	t.Helper()
	v.dhcp = v.NS.Command(context.Background(), "busybox", "udhcpc", "-f", "-R", "-i", "eth0", "-t", "20", "-T", "1",
		"-A", "1", "-s", filepath.Join(v.dir, "udhcpc.sh"))
	v.dhcp.Env = append(os.Environ(), "STATE="+v.dir)
	f, err := os.Create(filepath.Join(v.dir, "udhcpc.log"))
	if err != nil {
		t.Fatal(err)
	}
	v.dhcp.Stdout, v.dhcp.Stderr = f, f
	if err := v.dhcp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.StopDHCP()
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			t.Logf("udhcpc in %s:\n%s", v.NS.Name, b)
		}
	})
}

// StopDHCP stops the udhcpc of StartDHCP with SIGTERM: it sends a
// DHCPRELEASE first.
func (v *VM) StopDHCP() {
	if v.dhcp == nil {
		return
	}
	_ = v.dhcp.Process.Signal(syscall.SIGTERM)
	_ = v.dhcp.Wait()
	v.dhcp = nil
}

// Addr returns the VM's IPv4 address on eth0; "" for none.
func (v *VM) Addr(t *testing.T) string {
	f := strings.Fields(v.NS.Run(t, "ip", "-4", "-o", "addr", "show", "dev", "eth0"))
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			a, _, _ := strings.Cut(f[i+1], "/")
			return a
		}
	}
	return ""
}

// AddrsV6 returns the VM's global IPv6 addresses on eth0 that are ready
// to use (not tentative: duplicate address detection has passed).
func (v *VM) AddrsV6(t *testing.T) []string {
	var out []string
	for _, l := range strings.Split(v.NS.Run(t, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"), "\n") {
		f := strings.Fields(l)
		if slices.Contains(f, "tentative") || slices.Contains(f, "dadfailed") {
			continue
		}
		for i, w := range f {
			if w == "inet6" && i+1 < len(f) {
				a, _, _ := strings.Cut(f[i+1], "/")
				out = append(out, a)
			}
		}
	}
	return out
}

// Ping6 reports whether the VM gets an answer from the IPv6 addr (two
// tries, one second each) with busybox ping6.
func (v *VM) Ping6(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return v.NS.Command(ctx, "busybox", "ping6", "-c", "2", "-W", "1", addr).Run() == nil
}

// Lease returns what the last bound event got, one "key=value" a line.
func (v *VM) Lease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(v.dir, "udhcpc-bound.env"))
	if err != nil {
		t.Fatalf("no bound event: %v", err)
	}
	return string(b)
}

// Ping reports whether the VM gets an answer from addr (two tries, one
// second each).
func (v *VM) Ping(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return v.NS.Command(ctx, "busybox", "ping", "-c", "2", "-W", "1", addr).Run() == nil
}

// LinkNames lists the link names in ns, sorted.
func LinkNames(t *testing.T, ns *NS) []string {
	t.Helper()
	ls, err := ns.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

// Sysctl reads a sysctl in ns through a fresh "ip netns exec", so the
// value is the namespace's and not the test process's.
func Sysctl(t *testing.T, ns *NS, path string) string {
	t.Helper()
	return strings.TrimSpace(ns.Run(t, "cat", path))
}
