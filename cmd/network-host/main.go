// Command network-host is the novanet agent that runs on every hypervisor:
// it programs bridges, VLAN or VXLAN links, dnsmasq and iptables for the
// networks the network-manager assigns to its host, and reports DHCP lease
// events back.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"novanet/agent"
	"novanet/client"
	"novanet/flat"
	"novanet/flatdhcp"
	"novanet/floating"
	"novanet/hostnet"
	"novanet/internal/envflags"
	"novanet/internal/natsconn"
	"novanet/internal/redact"
	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/ebtables"
	"novanet/linuxnet/iptables"
	"novanet/linuxnet/link"
	"novanet/vlan"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

const envPrefix = "NOVANET_"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

type options struct {
	config            string
	host              string
	driver            string
	natsURL           string
	nats              natsconn.Options
	netns             string
	flatInterface     string
	vlanInterface     string
	vlanSegment       string
	vxlanGroup        string
	vxlanPort         uint16
	publicInterface   string
	routingSourceIP   string
	dmzCIDR           []string
	metadataHost      string
	metadataPort      uint16
	dhcpDomain        string
	dhcpLeaseTime     time.Duration
	dhcpDir           string
	dnsmasq           string
	dnsmasqUser       string
	stateDir          string
	eventSocket       string
	iptablesBackend   string
	iptablesChains    string
	antiSpoofing      bool
	ipv6              bool
	heartbeatInterval time.Duration
	convergeInterval  time.Duration
	logLevel          string
	logFormat         string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	root := newRoot(lookupEnv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "network-host: %v\n", err)
		return 1
	}
	return 0
}

func defaultHost() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	h, _, _ = strings.Cut(h, ".")
	return h
}

func newRoot(lookupEnv func(string) (string, bool)) *cobra.Command {
	root := &cobra.Command{
		Use:   "network-host",
		Short: "novanet agent for a hypervisor",
		Long: `network-host is the agent that runs on every hypervisor. It registers with
the network-manager, keeps sending heartbeats, and converges the host to the
state the manager holds for it: bridges, VLAN or VXLAN links, one dnsmasq per
network, iptables rules (SNAT, metadata, VPN, floating IPs) and floating
addresses. It converges when it starts, when the manager tells it that a
network changed (novanet.host.<host>.*), and periodically.

Every flag can also be set from the environment (--nats-url from
NOVANET_NATS_URL, and so on) or from a configuration file of NAME=value
lines given with --config (the same names; the environment wins over the
file, a flag over both).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(lookupEnv), newEventCmd(lookupEnv))
	return root
}

// applyEnv sets unset flags from the environment, then from --config.
func applyEnv(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	if err := envflags.Apply(fs, envPrefix, lookupEnv); err != nil {
		return err
	}
	path, _ := fs.GetString("config")
	if path == "" {
		return nil
	}
	file, err := readConfig(path)
	if err != nil {
		return err
	}
	return envflags.Apply(fs, envPrefix, func(k string) (string, bool) { v, ok := file[k]; return v, ok })
}

// readConfig reads NAME=value lines; blank lines and # comments are
// skipped, and a value may be wrapped in double quotes.
func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || !strings.HasPrefix(k, envPrefix) {
			return nil, fmt.Errorf("config %s line %d: want %sNAME=value, got %q", path, n, envPrefix, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return out, nil
}

func newServeCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the agent until SIGINT or SIGTERM",
		Long: `Run the agent. It needs root (or CAP_NET_ADMIN): it creates links, runs
dnsmasq and writes iptables rules, all in chains it owns.

Drivers:
  flat      uses the operator's bridge (the network's bridge); creates nothing
            and fails clearly when the bridge is missing. No DHCP.
  flatdhcp  the network's bridge with the flat interface enslaved (its
            addresses and routes moved onto the bridge), the gateway address,
            and one dnsmasq per bridge with a DHCP range per network on it
            (networks may share a bridge: br100 by default).
  vlan      per project network a VLAN link vlan<ID> on the VLAN interface
            (or, with --vlan-segment vxlan, a VXLAN link vxlan<ID> with
            VNI = VLAN ID), enslaved to its own bridge, the gateway address,
            its own dnsmasq and the VPN forward.
Every driver: SNAT of each fixed range to --routing-source-ip except towards
--dmz-cidr, and 169.254.169.254:80 forwarded to the metadata service.

On SIGINT or SIGTERM it stops; what it set up stays (dnsmasq keeps serving
leases) and the next start converges from there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), lookupEnv); err != nil {
				return err
			}
			return serve(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "file of NOVANET_NAME=value lines setting these flags")
	f.StringVar(&o.host, "host", defaultHost(), "this host's name as the manager knows it (letters, digits, '_', '-')")
	f.StringVar(&o.driver, "driver", "flatdhcp", "network driver: flat, flatdhcp or vlan")
	f.StringVar(&o.natsURL, "nats-url", nats.DefaultURL, "NATS server URL(s) of the manager, comma-separated")
	o.nats.AddFlags(f)
	f.StringVar(&o.netns, "netns", "", "network namespace path to program (empty: the agent's own); for tests and containers")
	f.StringVar(&o.flatInterface, "flat-interface", "", "interface enslaved to flatdhcp bridges unless the network names one (flat mode enslaves nothing)")
	f.StringVar(&o.vlanInterface, "vlan-interface", "", "parent of VLAN (or VXLAN) links unless the network names one")
	f.StringVar(&o.vlanSegment, "vlan-segment", "vlan", `segment kind in vlan mode: "vlan" (802.1Q) or "vxlan" (VNI = VLAN ID)`)
	f.StringVar(&o.vxlanGroup, "vxlan-group", "", "VXLAN multicast group or unicast peer, with --vlan-segment vxlan")
	f.Uint16Var(&o.vxlanPort, "vxlan-port", 4789, "VXLAN UDP port")
	f.StringVar(&o.publicInterface, "public-interface", "", "interface floating IPs are bound to")
	f.StringVar(&o.routingSourceIP, "routing-source-ip", "", "source address the fixed ranges are SNATed to; empty: no SNAT")
	f.StringSliceVar(&o.dmzCIDR, "dmz-cidr", nil, "CIDRs reached without SNAT, comma-separated")
	f.StringVar(&o.metadataHost, "metadata-host", "", "metadata service address 169.254.169.254:80 is forwarded to; empty: none")
	f.Uint16Var(&o.metadataPort, "metadata-port", hostnet.DefaultMetadataPort, "metadata service port")
	f.StringVar(&o.dhcpDomain, "dhcp-domain", "novalocal", "DNS domain handed out by DHCP")
	f.DurationVar(&o.dhcpLeaseTime, "dhcp-lease-time", 24*time.Hour, "DHCP lease time (at least 2m)")
	f.StringVar(&o.dhcpDir, "dhcp-dir", "/var/lib/novanet/dhcp", "where dnsmasq keeps its files, one directory per network")
	f.StringVar(&o.dnsmasq, "dnsmasq", "dnsmasq", "dnsmasq binary")
	f.StringVar(&o.dnsmasqUser, "dnsmasq-user", "", "user dnsmasq drops to (empty: its default, nobody); it must read --dhcp-dir")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/novanet/host", "where the agent records what it made")
	f.StringVar(&o.eventSocket, "event-socket", "/run/novanet/network-host.sock", "unix socket for DHCP lease events from dhcp-event")
	f.StringVar(&o.iptablesBackend, "iptables-backend", "auto", "iptables binaries: auto (iptables on PATH), nft or legacy")
	f.StringVar(&o.iptablesChains, "iptables-chain-prefix", "novanet-host", "prefix of the iptables chains the agent owns")
	f.BoolVar(&o.antiSpoofing, "anti-spoofing", true, "keep every instance's bridge port to its own MAC and fixed IPv4 addresses (ebtables chain "+ebtables.DefaultChain+"; false empties the chain)")
	f.BoolVar(&o.ipv6, "ipv6", true, "manage ip6tables chains too")
	f.DurationVar(&o.heartbeatInterval, "heartbeat-interval", 10*time.Second, "how often to re-register with the manager")
	f.DurationVar(&o.convergeInterval, "converge-interval", time.Minute, "how often to converge the whole host")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	envflags.Annotate(f, envPrefix)
	return cmd
}

func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

func parseOptAddr(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--%s %q: not an IP address", flag, s)
	}
	return a, nil
}

// hostConfig turns the options into the drivers' configuration.
func hostConfig(o options) (hostnet.Config, error) {
	cfg := hostnet.Config{
		Host: o.host, Driver: o.driver, NetNS: o.netns, FlatInterface: o.flatInterface,
		VLANInterface: o.vlanInterface, VLANSegment: o.vlanSegment, VXLANPort: o.vxlanPort,
		PublicInterface: o.publicInterface, MetadataPort: o.metadataPort, DHCPDomain: o.dhcpDomain,
		DHCPLeaseTime: o.dhcpLeaseTime, DHCPDir: filepath.Clean(o.dhcpDir), DnsmasqBinary: o.dnsmasq,
		DnsmasqUser: o.dnsmasqUser, StateDir: o.stateDir,
	}
	var err error
	if cfg.VXLANGroup, err = parseOptAddr("vxlan-group", o.vxlanGroup); err != nil {
		return cfg, err
	}
	if cfg.RoutingSourceIP, err = parseOptAddr("routing-source-ip", o.routingSourceIP); err != nil {
		return cfg, err
	}
	if cfg.MetadataHost, err = parseOptAddr("metadata-host", o.metadataHost); err != nil {
		return cfg, err
	}
	for _, s := range o.dmzCIDR {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || p != p.Masked() {
			return cfg, fmt.Errorf("--dmz-cidr %q: want a CIDR like 10.128.0.0/24 with no host bits", s)
		}
		cfg.DMZCIDR = append(cfg.DMZCIDR, p)
	}
	if !filepath.IsAbs(o.dhcpDir) {
		return cfg, fmt.Errorf("--dhcp-dir %q: want an absolute path", o.dhcpDir)
	}
	exe, err := os.Executable()
	if err != nil {
		return cfg, fmt.Errorf("own path for dnsmasq's dhcp-script: %w", err)
	}
	cfg.DHCPCommand = []string{exe, "dhcp-event", "--event-socket", o.eventSocket, "--"}
	return cfg, nil
}

func iptablesBackend(s string) (iptables.Backend, error) {
	switch s {
	case "auto", "":
		return iptables.BackendDefault, nil
	case "nft":
		return iptables.BackendNFT, nil
	case "legacy":
		return iptables.BackendLegacy, nil
	}
	return 0, fmt.Errorf("--iptables-backend %q: want auto, nft or legacy", s)
}

// newDriver builds the configured driver on real links and dnsmasq.
func newDriver(cfg hostnet.Config, links *link.Manager) (hostnet.Driver, error) {
	switch cfg.Driver {
	case hostnet.DriverFlat:
		return flat.New(cfg, links)
	case hostnet.DriverFlatDHCP, hostnet.DriverVLAN:
		if err := os.MkdirAll(cfg.DHCPDir, 0o755); err != nil {
			return nil, fmt.Errorf("--dhcp-dir: %w", err)
		}
		dhcp, err := hostnet.NewDHCPServers(cfg.DHCPDir)
		if err != nil {
			return nil, err
		}
		if cfg.Driver == hostnet.DriverVLAN {
			return vlan.New(cfg, links, dhcp)
		}
		return flatdhcp.New(cfg, links, dhcp)
	}
	return nil, fmt.Errorf("--driver %q: want flat, flatdhcp or vlan", cfg.Driver)
}

// antiSpoof gives host the anti-spoofing rules. Turned off, the chain is
// kept empty (rules of an earlier run go) when ebtables is installed.
func antiSpoof(host *agent.KernelHost, on bool, links *link.Manager, netns string) error {
	eb, err := ebtables.New(ebtables.Config{NetNS: netns})
	if err != nil {
		if on {
			return fmt.Errorf("--anti-spoofing: %w (install ebtables, or pass --anti-spoofing=false)", err)
		}
		return nil
	}
	if !on {
		host.SetAntiSpoof(hostnet.NewAntiSpoof(noPorts{}, eb))
		return nil
	}
	host.SetAntiSpoof(hostnet.NewAntiSpoof(links, eb))
	return nil
}

// noPorts lists no port, so that the anti-spoofing chain stays empty.
type noPorts struct{}

func (noPorts) BridgePorts(context.Context, string) ([]link.Port, error) { return nil, nil }

func serve(ctx context.Context, o options, stderr io.Writer) error {
	log, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg, err := hostConfig(o)
	if err != nil {
		return err
	}
	backend, err := iptablesBackend(o.iptablesBackend)
	if err != nil {
		return err
	}
	// One netlink handle for the namespace: the driver's links and the
	// floating addresses.
	links, err := link.Open(cfg.NetNS)
	if err != nil {
		return err
	}
	defer links.Close()
	drv, err := newDriver(cfg, links)
	if err != nil {
		return err
	}
	fams := []iptables.Family{iptables.IPv4}
	if o.ipv6 {
		fams = append(fams, iptables.IPv6)
	}
	fw, err := iptables.New(iptables.Config{Binary: o.iptablesChains, Families: fams, Backend: backend, NetNS: cfg.NetNS})
	if err != nil {
		return err
	}
	binder, err := floating.New(links, floating.Arping("", cfg.NetNS), cfg.StateDir)
	if err != nil {
		return err
	}
	binder.OnAnnounceError(func(err error) { log.Warn("floating address", zap.Error(err)) })
	kh := agent.NewKernelHost(cfg, fw, fams, binder)
	kh.SetLinks(links)
	if err := antiSpoof(kh, o.antiSpoofing, links, cfg.NetNS); err != nil {
		return err
	}
	defer binder.Wait()
	nc, err := o.nats.Connect(o.natsURL, "network-host "+o.host, nats.MaxReconnects(-1), natsconn.LogErrors(log),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(time.Second))
	if err != nil {
		return fmt.Errorf("nats %s: %w", redact.URL(o.natsURL), err)
	}
	defer nc.Close()
	a, err := agent.New(agent.Config{
		Host: o.host, Driver: o.driver, Version: version, StateDir: o.stateDir,
		HeartbeatInterval: o.heartbeatInterval, ConvergeInterval: o.convergeInterval,
	}, log, client.New(nc, 30*time.Second), drv, kh)
	if err != nil {
		return err
	}
	if err := a.ServeEvents(ctx, o.eventSocket); err != nil {
		return err
	}
	log.Info("network-host starting", zap.String("host", o.host), zap.String("driver", o.driver),
		zap.String("nats", redact.URL(o.natsURL)), zap.String("netns", o.netns), zap.String("version", version))
	return a.Run(ctx, nc)
}

func newEventCmd(lookupEnv func(string) (string, bool)) *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "dhcp-event [--event-socket PATH] -- add|old|del MAC IP [HOSTNAME]",
		Short: "Report a dnsmasq lease event to the agent (dnsmasq's --dhcp-script)",
		Long: `dhcp-event is what dnsmasq runs as its --dhcp-script: the agent writes a
small wrapper that calls "network-host dhcp-event --event-socket PATH --" with
dnsmasq's arguments. It hands the event to the agent over its unix socket
(which works from inside the network namespace dnsmasq serves), and the
agent tells the manager: add and old mark the address leased, del releases
it. Other actions (init, tftp, arp-add, ...) are ignored. It exits 1 when
the event could not be delivered; dnsmasq logs that.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := envflags.Apply(cmd.Flags(), envPrefix, lookupEnv); err != nil {
				return err
			}
			ev, err := dnsmasq.ParseEvent(args, os.Getenv)
			if errors.Is(err, dnsmasq.ErrUnknownAction) {
				return nil
			}
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			return agent.SendEvent(ctx, socket, ev)
		},
	}
	cmd.Flags().StringVar(&socket, "event-socket", "/run/novanet/network-host.sock", "the agent's event socket")
	envflags.Annotate(cmd.Flags(), envPrefix)
	return cmd
}
