package dnsmasq

import (
	"errors"
	"net"
	"net/netip"
	"novanet/internal/golden"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func sampleConfig() Config {
	return Config{
		Name:         "net1",
		Interface:    "br100",
		Gateway:      netip.MustParsePrefix("10.0.0.1/24"),
		RangeStart:   netip.MustParseAddr("10.0.0.2"),
		DNS:          []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.53")},
		Domain:       "novalocal",
		LeaseTime:    24 * time.Hour,
		MTU:          1450,
		Dir:          "/var/lib/novanet/dnsmasq/net1",
		EventCommand: []string{"/usr/bin/network-host", "dhcp-event"},
	}
}

func TestRenderGolden(t *testing.T) {
	conf, err := RenderConfig(sampleConfig())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "dnsmasq.conf.golden", conf)

	c := sampleConfig()
	c.DisableDNS, c.User, c.MTU, c.DNS, c.Domain, c.EventCommand = true, "root", 0, nil, "", nil
	conf, err = RenderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "dnsmasq-minimal.conf.golden", conf)
	golden.Check(t, "dhcp-event.golden", RenderScript(sampleConfig()))

	hosts, err := RenderHosts([]Host{
		{MAC: mac("fa:16:3e:00:00:03"), IP: netip.MustParseAddr("10.0.0.12"), Hostname: "vm-b", Tag: "nogw"},
		{MAC: mac("FA:16:3E:00:00:01"), IP: netip.MustParseAddr("10.0.0.3"), Hostname: "vm-a"},
		{MAC: mac("fa:16:3e:00:00:02"), IP: netip.MustParseAddr("10.0.0.4")},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "hosts.golden", hosts)
	opts, err := RenderOpts([]Option{
		{Tag: "nogw", Code: 3},
		{Tag: "nogw", Code: 6, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "opts.golden", opts)
}

// sharedConfig is the dnsmasq of br100 with the three flat networks of the
// README's First steps (netadm network create 10.0.0.0/8 3 16).
func sharedConfig() Config {
	return Config{
		Name: "br100", Interface: "br100", Domain: "novalocal", LeaseTime: 24 * time.Hour,
		Gateway: netip.MustParsePrefix("10.0.0.1/28"), RangeStart: netip.MustParseAddr("10.0.0.2"),
		Dir:          "/var/lib/novanet/dnsmasq/br100",
		EventCommand: []string{"/usr/bin/network-host", "dhcp-event"},
		Extra: []Range{
			{Tag: "network-2", Gateway: netip.MustParsePrefix("10.0.0.17/28"), RangeStart: netip.MustParseAddr("10.0.0.18"),
				DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}},
			{Tag: "network-3", Gateway: netip.MustParsePrefix("10.0.0.33/28"), RangeStart: netip.MustParseAddr("10.0.0.34"), MTU: 1400},
		},
	}
}

func TestRenderSharedBridgeGolden(t *testing.T) {
	conf, err := RenderConfig(sharedConfig())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "dnsmasq-shared.conf.golden", conf)
	hosts, err := RenderHosts([]Host{
		{MAC: mac("fa:16:3e:00:00:21"), IP: netip.MustParseAddr("10.0.0.34")},
		{MAC: mac("fa:16:3e:00:00:11"), IP: netip.MustParseAddr("10.0.0.18")},
		{MAC: mac("fa:16:3e:00:00:01"), IP: netip.MustParseAddr("10.0.0.2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "hosts-shared.golden", hosts)

	mut := map[string]func(*Config){
		"overlap":   func(c *Config) { c.Extra[1].Gateway = netip.MustParsePrefix("10.0.0.20/28") },
		"dup tag":   func(c *Config) { c.Extra[1].Tag = "network-2" },
		"first tag": func(c *Config) { c.Extra[0].Tag = c.Tag() },
		"bad tag":   func(c *Config) { c.Extra[0].Tag = "a,b" },
		"range out": func(c *Config) { c.Extra[0].RangeStart = netip.MustParseAddr("10.0.0.40") },
		"mtu":       func(c *Config) { c.Extra[1].MTU = 100 },
		"dns v6":    func(c *Config) { c.Extra[0].DNS = []netip.Addr{netip.MustParseAddr("fd00::1")} },
	}
	for name, f := range mut {
		c := sharedConfig()
		c.Extra = slices.Clone(c.Extra)
		f(&c)
		if _, err := RenderConfig(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestRenderIPv6Golden is br100 shared by three networks of which the
// first and the third have an IPv6 /64: router advertisements of both for
// SLAAC, and dnsmasq listening on both IPv6 gateways.
func TestRenderIPv6Golden(t *testing.T) {
	c := sharedConfig()
	c.Extra = slices.Clone(c.Extra)
	c.GatewayV6 = netip.MustParsePrefix("fd00:1::1/64")
	c.Extra[1].GatewayV6 = netip.MustParsePrefix("fd00:3::1/64")
	conf, err := RenderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "dnsmasq-ipv6.conf.golden", conf)

	mut := map[string]func(*Config){
		"v4 as v6":   func(c *Config) { c.GatewayV6 = netip.MustParsePrefix("10.1.0.1/24") },
		"not /64":    func(c *Config) { c.GatewayV6 = netip.MustParsePrefix("fd00:1::1/80") },
		"subnet":     func(c *Config) { c.GatewayV6 = netip.MustParsePrefix("fd00:1::/64") },
		"overlap":    func(c *Config) { c.Extra[0].GatewayV6 = netip.MustParsePrefix("fd00:3::2/64") },
		"mapped":     func(c *Config) { c.GatewayV6 = netip.MustParsePrefix("::ffff:10.1.0.1/64") },
		"link local": func(c *Config) { c.GatewayV6 = netip.MustParsePrefix("fe80::1/64") },
	}
	for name, f := range mut {
		c := c
		c.Extra = slices.Clone(c.Extra)
		f(&c)
		if _, err := RenderConfig(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	if dnsmasq, err := exec.LookPath("dnsmasq"); err == nil {
		// dnsmasq itself accepts the file.
		f := filepath.Join(t.TempDir(), "dnsmasq.conf")
		if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(dnsmasq, "--test", "--conf-file="+f).CombinedOutput(); err != nil {
			t.Errorf("dnsmasq --test: %v\n%s", err, out)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	mut := map[string]func(*Config){
		"name":        func(c *Config) { c.Name = "a b" },
		"interface":   func(c *Config) { c.Interface = "br/0" },
		"gateway v6":  func(c *Config) { c.Gateway = netip.MustParsePrefix("fd00::1/64") },
		"range out":   func(c *Config) { c.RangeStart = netip.MustParseAddr("10.0.1.2") },
		"dns v6":      func(c *Config) { c.DNS = []netip.Addr{netip.MustParseAddr("fd00::1")} },
		"domain":      func(c *Config) { c.Domain = "nova local\ndhcp-script=/bin/sh" },
		"lease short": func(c *Config) { c.LeaseTime = time.Minute },
		"mtu":         func(c *Config) { c.MTU = 100 },
		"dir":         func(c *Config) { c.Dir = "relative" },
		"dir comma":   func(c *Config) { c.Dir = "/a,b" },
		"event rel":   func(c *Config) { c.EventCommand = []string{"network-host"} },
		"event nl":    func(c *Config) { c.EventCommand = []string{"/bin/x", "a\nb"} },
		"user":        func(c *Config) { c.User = "root\nport=53" },
	}
	for name, f := range mut {
		c := sampleConfig()
		f(&c)
		if _, err := RenderConfig(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	badHosts := map[string][]Host{
		"hostname": {{MAC: mac("fa:16:3e:00:00:01"), IP: netip.MustParseAddr("10.0.0.3"), Hostname: "a,b"}},
		"v6":       {{MAC: mac("fa:16:3e:00:00:01"), IP: netip.MustParseAddr("fd00::3")}},
		"long mac": {{MAC: mac("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"), IP: netip.MustParseAddr("10.0.0.3")}},
		"dup ip": {
			{MAC: mac("fa:16:3e:00:00:01"), IP: netip.MustParseAddr("10.0.0.3")},
			{MAC: mac("fa:16:3e:00:00:02"), IP: netip.MustParseAddr("10.0.0.3")},
		},
	}
	for name, hs := range badHosts {
		if _, err := RenderHosts(hs); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("hosts %s: err = %v", name, err)
		}
	}
	if _, err := RenderOpts([]Option{{Tag: "x y", Code: 3}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("opts bad tag: %v", err)
	}
}

func TestWriteAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	for i, tc := range []struct {
		content string
		want    bool
	}{{"a\n", true}, {"a\n", false}, {"b\n", true}} {
		got, err := writeAtomic(p, tc.content, 0o644)
		if err != nil || got != tc.want {
			t.Fatalf("#%d: wrote=%v err=%v, want wrote=%v", i, got, err, tc.want)
		}
		if b, _ := os.ReadFile(p); string(b) != tc.content {
			t.Fatalf("#%d: content %q", i, b)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
}

// A pid file pointing at a dead process or at a process that is not our
// dnsmasq is not trusted.
func TestPidDeadOrForeign(t *testing.T) {
	dir := t.TempDir()
	c := sampleConfig()
	c.Dir = dir
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pid(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("no pid file: %v", err)
	}
	// Foreign: our own test process.
	os.WriteFile(s.Paths().Pid, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if _, err := s.Pid(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("foreign pid: %v", err)
	}
	// Dead: a process that has exited and been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.Paths().Pid, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	if _, err := s.Pid(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("dead pid: %v", err)
	}
	os.WriteFile(s.Paths().Pid, []byte("garbage"), 0o644)
	if _, err := s.Pid(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("garbage pid: %v", err)
	}
	// A live process whose command line names our config file is ours.
	// sh's $0 is the --conf-file argument; it blocks reading the pipe.
	sleep := exec.Command("sh", "-c", "read x", "--conf-file="+s.Paths().Conf)
	if _, err := sleep.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	os.WriteFile(s.Paths().Pid, []byte(strconv.Itoa(sleep.Process.Pid)), 0o644)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pid, err := s.Pid()
		if err == nil && pid == sleep.Process.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("own process not recognised: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
