// Command netadm is the operator's CLI for novanet. It talks only to the
// network-manager, over NATS.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"novanet/client"
	"novanet/internal/natsconn"
	"novanet/internal/redact"
	"novanet/natsauth"
	"novanet/rpc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv, dialNATS)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the manager refused or failed
	exitUsage = 2 // bad command line
)

// usageError marks errors in the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// dialer connects to NATS; tests and fuzzing replace it.
type dialer func(url string, o natsconn.Options, timeout time.Duration) (*client.Client, func(), error)

func dialNATS(url string, o natsconn.Options, timeout time.Duration) (*client.Client, func(), error) {
	nc, err := o.Connect(url, "netadm", nats.Timeout(timeout))
	if errors.Is(err, nats.ErrAuthorization) && o.Anonymous() {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w (no credentials: give --nats-nkey or --nats-creds, "+
			"or run netadm as the user whose embedded server made ~/.config/novanet/nats/operator.admin.nk)", redact.URL(url), err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", redact.URL(url), err)
	}
	return client.New(nc, timeout), nc.Close, nil
}

type app struct {
	getenv  func(string) string
	natsURL string
	nats    natsconn.Options
	output  string
	timeout time.Duration
	dial    dialer
	stdout  io.Writer
}

func (a *app) client() (*client.Client, func(), error) {
	if a.output != "table" && a.output != "json" {
		return nil, nil, usagef("output %q: want table or json", a.output)
	}
	o := a.nats
	if o.Anonymous() {
		// The operator identity of the embedded server on this machine.
		if seed, ok := natsauth.DefaultOperatorSeed(a.getenv); ok {
			o.NKey = seed
		}
	}
	return a.dial(a.natsURL, o, a.timeout)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, dial dialer) int {
	a := &app{dial: dial, stdout: stdout, getenv: getenv}
	root := newRoot(a, getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var (
		ue usageError
		re *rpc.Error
	)
	switch {
	case errors.As(err, &re): // whatever the manager's message says
		// It may quote labels and other strings callers of the manager chose.
		printf(stderr, "netadm: %s\n", err)
		return exitError
	case errors.As(err, &ue) || isCobraUsage(err):
		// The operator's own command line; cobra's hints span lines.
		fmt.Fprintf(stderr, "netadm: %v\n", err)
		return exitUsage
	}
	printf(stderr, "netadm: %s\n", err)
	return exitError
}

// isCobraUsage recognises cobra's own argument and flag errors, which are
// plain errors; flag errors are also marked by SetFlagErrorFunc.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least",
		"invalid argument", "flag needs an argument", "bad flag syntax", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(a *app, getenv func(string) string) *cobra.Command {
	natsDefault := getenv("NOVANET_NATS_URL")
	if natsDefault == "" {
		natsDefault = "nats://127.0.0.1:4222"
	}
	root := &cobra.Command{
		Use:   "netadm",
		Short: "Operate a novanet network service",
		Long: `netadm manages novanet's networks through the network-manager, over NATS.
It never touches the database: every command is an RPC to the manager, so it
works from any machine that can reach the NATS servers.

It connects as an operator identity (docs/security.md): --nats-nkey or
--nats-creds, else the operator seed that the embedded server of "make run"
made for this user, ~/.config/novanet/nats/operator.admin.nk, when it
exists.

Exit status: 0 on success, 1 when the manager refuses or fails the request,
2 for a bad command line.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.natsURL, "nats-url", natsDefault,
		"NATS server URL(s), comma-separated (env NOVANET_NATS_URL)")
	a.nats.AddFlags(root.PersistentFlags())
	natsconn.DefaultsFromEnv(root.PersistentFlags(), getenv)
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the manager")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newNetworkCmd(a), newFixedCmd(a), newHostCmd(a), newFloatingCmd(a), newQuotaCmd(a), newInstanceCmd(a))
	return root
}

func newNetworkCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Create, list, show, stop, start and delete fixed networks",
	}
	cmd.AddCommand(newNetworkCreateCmd(a), newNetworkListCmd(a), newNetworkShowCmd(a), newNetworkDeleteCmd(a),
		newNetworkStopCmd(a), newNetworkStartCmd(a))
	return cmd
}

// parsePositiveInt parses a positional count, naming it in errors.
func parsePositiveInt(name, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, usagef("%s %q: want a whole number of at least 1", name, s)
	}
	return n, nil
}

// parseCreateArgs turns the positional arguments of network create into
// the request's fixed range, count and size.
func parseCreateArgs(args []string, req *rpc.CreateNetworksRequest) error {
	if len(args) != 3 {
		return usagef("network create takes FIXED_RANGE NUM_NETWORKS NETWORK_SIZE (%d arguments given)", len(args))
	}
	req.CIDR = args[0]
	var err error
	if req.NumNetworks, err = parsePositiveInt("NUM_NETWORKS", args[1]); err != nil {
		return err
	}
	if req.NetworkSize, err = parsePositiveInt("NETWORK_SIZE", args[2]); err != nil {
		return err
	}
	return nil
}

func newNetworkCreateCmd(a *app) *cobra.Command {
	var (
		req        rpc.CreateNetworksRequest
		disableDHC bool
		priority   int
	)
	cmd := &cobra.Command{
		Use:   "create FIXED_RANGE NUM_NETWORKS NETWORK_SIZE",
		Short: "Create NUM_NETWORKS networks of NETWORK_SIZE addresses from FIXED_RANGE",
		Long: `Create networks as nova-manage network create did: NUM_NETWORKS networks of
NETWORK_SIZE addresses each, taken in order from the start of FIXED_RANGE.

  netadm network create 10.0.0.0/8 3 16

makes 10.0.0.0/28, 10.0.0.16/28 and 10.0.0.32/28. Each network's first
address is its network address, the next its gateway, the last its broadcast;
these are reserved and never given to an instance. With more than one
network, labels get a suffix: private_0, private_1, ...

In VLAN mode (network-manager --network-mode vlan) the networks get
consecutive VLANs from --vlan-start (default 100), a bridge named after the
VLAN (br100, ...), a VPN address (the third address, also reserved) and a
VPN port (--vpn-start and up, or by default 900 + VLAN). In flat modes all
networks share --bridge (default br100).

NETWORK_SIZE is a power of two from 4 (8 in VLAN mode) to 65536 (a /16);
one request creates at most 262144 addresses. Nothing is created when any
check fails: a bad or host-bit CIDR, a size that is not a power of two or
does not fit, an overlap with an existing network or floating range, a VLAN
outside 1-4094 or already used, or a bridge already used by a VLAN network.`,
		Example: `  netadm network create 10.0.0.0/8 3 16
  netadm network create 172.16.0.0/16 4 256 --label proj --vlan-start 200
  netadm network create 192.168.10.0/24 1 256 --gateway 192.168.10.254 --dns1 192.168.10.2`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := parseCreateArgs(args, &req); err != nil {
				return err
			}
			if disableDHC {
				f := false
				req.EnableDHCP = &f
			}
			if cmd.Flags().Changed("priority") {
				req.Priority = &priority
			}
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			nets, err := c.CreateNetworks(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printNetworks(nets)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Label, "label", "", "network label; a suffix _N is added when creating several (default \"private\")")
	f.IntVar(&req.VLANStart, "vlan-start", 0, "first VLAN, VLAN mode only (default 100)")
	f.IntVar(&req.VPNStart, "vpn-start", 0, "first VPN public port, VLAN mode only (default 900 + VLAN)")
	f.StringVar(&req.VPNPublicAddress, "vpn-public-address", "", "public address of the VPN endpoints, VLAN mode only")
	f.StringVar(&req.Bridge, "bridge", "", "bridge name (flat modes: default br100; VLAN mode: default br<VLAN>)")
	f.StringVar(&req.BridgeInterface, "bridge-interface", "", "interface to put on the bridge (flat) or to carry the VLANs (VLAN mode)")
	f.BoolVar(&req.MultiHost, "multi-host", false, "every compute host serves this network itself")
	f.StringVar(&req.DNS1, "dns1", "", "first DNS server handed out by DHCP")
	f.StringVar(&req.DNS2, "dns2", "", "second DNS server handed out by DHCP")
	f.StringVar(&req.Gateway, "gateway", "", "gateway address (one network only; default the network's second address)")
	f.StringVar(&req.GatewayV6, "gateway-v6", "", "IPv6 gateway (one network only; default the subnet's first host)")
	f.StringVar(&req.CIDRv6, "ipv6-range", "", "IPv6 range; each network gets the next /64 of it")
	f.StringVar(&req.DHCPServer, "dhcp-server", "", "DHCP server address (default the gateway)")
	f.StringVar(&req.ProjectID, "project", "", "project that owns the networks")
	f.IntVar(&req.MTU, "mtu", 0, "MTU handed out by DHCP and set on the bridge (68-65535)")
	f.BoolVar(&disableDHC, "disable-dhcp", false, "do not run DHCP for these networks")
	f.BoolVar(&req.ShareAddress, "share-address", false, "all hosts share the gateway address (multi-host)")
	f.IntVar(&priority, "priority", 0, "network priority for instances that ask for none")
	return cmd
}

func newNetworkListCmd(a *app) *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			nets, err := c.Networks(cmd.Context(), project)
			if err != nil {
				return err
			}
			return a.printNetworks(nets)
		},
	}
	cmd.Flags().StringVar(&project, "project", "", "only this project's networks")
	return cmd
}

func newNetworkShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show NETWORK",
		Short: "Show one network, by id, UUID, CIDR or label",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			n, err := c.Network(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printNetwork(n)
		},
	}
}

func newNetworkDeleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NETWORK",
		Short: "Delete a network and its addresses, by id, UUID, CIDR or label",
		Long: `Delete a network and all its fixed addresses. It is refused, and nothing is
deleted, while any address of the network is held by an instance, allocated
or leased; the refusal names them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			n, err := c.DeleteNetwork(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(n)
			}
			printf(a.stdout, "deleted network %s %s (%s)\n", n.Label, n.CIDR, n.UUID)
			return nil
		},
	}
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashInt(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func (a *app) printNetworks(nets []rpc.Network) error {
	if a.output == "json" {
		return a.printJSON(rpc.NetworksReply{Networks: nets})
	}
	t := newTable(a.stdout, "ID", "UUID", "LABEL", "CIDR", "GATEWAY", "VLAN", "BRIDGE", "PROJECT", "FREE/TOTAL")
	for _, n := range nets {
		t.row(n.ID, n.UUID, n.Label, n.CIDR, dash(n.Gateway), dashInt(n.VLAN), dash(n.Bridge), dash(n.ProjectID),
			fmt.Sprintf("%d/%d", n.FixedIPs.Free, n.FixedIPs.Total))
	}
	return t.flush()
}

func (a *app) printNetwork(n rpc.Network) error {
	if a.output == "json" {
		return a.printJSON(n)
	}
	t := newTable(a.stdout)
	prio := "-"
	if n.Priority != nil {
		prio = strconv.Itoa(*n.Priority)
	}
	for _, kv := range [][2]string{
		{"id", strconv.FormatInt(n.ID, 10)}, {"uuid", n.UUID}, {"label", n.Label},
		{"cidr", n.CIDR}, {"cidr_v6", dash(n.CIDRv6)}, {"netmask", n.Netmask},
		{"gateway", dash(n.Gateway)}, {"gateway_v6", dash(n.GatewayV6)}, {"broadcast", n.Broadcast},
		{"dhcp_start", dash(n.DHCPStart)}, {"dhcp_server", dash(n.DHCPServer)},
		{"dns1", dash(n.DNS1)}, {"dns2", dash(n.DNS2)}, {"vlan", dashInt(n.VLAN)},
		{"bridge", dash(n.Bridge)}, {"bridge_interface", dash(n.BridgeInterface)},
		{"multi_host", strconv.FormatBool(n.MultiHost)}, {"project_id", dash(n.ProjectID)},
		{"host", dash(n.Host)}, {"vpn_public", dash(n.VPNPublicAddress) + ":" + dashInt(n.VPNPublicPort)},
		{"vpn_private_address", dash(n.VPNPrivateAddress)}, {"mtu", dashInt(n.MTU)},
		{"enable_dhcp", strconv.FormatBool(n.EnableDHCP)}, {"share_address", strconv.FormatBool(n.ShareAddress)},
		{"priority", prio}, {"stopped", strconv.FormatBool(n.Stopped)}, {"created_at", n.CreatedAt},
		{"fixed_ips", fmt.Sprintf("%d total, %d reserved, %d in use, %d free",
			n.FixedIPs.Total, n.FixedIPs.Reserved, n.FixedIPs.InUse, n.FixedIPs.Free)},
	} {
		t.row(kv[0], kv[1])
	}
	return t.flush()
}

func newFixedCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fixed",
		Short: "List, reserve and unreserve fixed IPs",
	}
	var req rpc.ListFixedIPsRequest
	list := &cobra.Command{
		Use:   "list",
		Short: "List fixed IPs that are in use, held or reserved (all with --all)",
		Long: `List fixed IPs. By default only those that are allocated to an instance,
held after deallocation (until their DHCP release or the disassociate
timeout), leased or reserved; --all lists free ones too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			ips, err := c.ListFixedIPs(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printFixedIPs(ips)
		},
	}
	lf := list.Flags()
	lf.StringVar(&req.Network, "network", "", "only this network (id, UUID, CIDR or label)")
	lf.StringVar(&req.Instance, "instance", "", "only this instance's addresses")
	lf.BoolVar(&req.All, "all", false, "free addresses too")
	lf.IntVar(&req.Limit, "limit", 1000, "at most this many, fetched 1000 a page (0: 1000)")
	lf.StringVar(&req.Cursor, "after", "", "only addresses after this one (the last one of a previous listing)")
	reserve := func(use, short, long string, call func(*client.Client, context.Context, string) (rpc.FixedIP, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ADDRESS",
			Short: short,
			Long:  long,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, done, err := a.client()
				if err != nil {
					return err
				}
				defer done()
				ip, err := call(c, cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.printFixedIPs([]rpc.FixedIP{ip})
			},
		}
	}
	cmd.AddCommand(list,
		reserve("reserve", "Keep a free fixed IP from being handed out",
			`Reserve a fixed IP so that it is never allocated to an instance. Reserving
an address that is already reserved is not an error; one that is in use or
held is refused.`, (*client.Client).ReserveFixedIP),
		reserve("unreserve", "Make a reserved fixed IP available again",
			`Unreserve a fixed IP. The network, gateway, broadcast, VPN and DHCP server
addresses of a network stay reserved and are refused.`, (*client.Client).UnreserveFixedIP))
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func (a *app) printFixedIPs(ips []rpc.FixedIP) error {
	if a.output == "json" {
		return a.printJSON(rpc.FixedIPsReply{FixedIPs: ips})
	}
	t := newTable(a.stdout, "ADDRESS", "NETWORK", "INSTANCE", "MAC", "HOST", "ALLOCATED", "LEASED", "RESERVED")
	for _, f := range ips {
		t.row(f.Address, f.NetworkLabel, dash(f.InstanceUUID), dash(f.VIFAddress), dash(f.Host),
			yesNo(f.Allocated), yesNo(f.Leased), yesNo(f.Reserved))
	}
	return t.flush()
}

func newNetworkStopCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "stop NETWORK",
		Short: "Stop a network: its hosts tear it down, its addresses stay allocated",
		Long: `Stop a network, as virsh net-destroy does: every host that has it removes its
bridge (and VLAN or VXLAN link), its dnsmasq and its firewall rules and
floating IP NAT, when the manager tells it or at its next convergence. The
network keeps its addresses, its instances' interfaces and its host, and
addresses can still be allocated on it; "network start" brings it back.
Stopping a stopped network changes nothing. network show says "stopped".`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			n, err := c.StopNetwork(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(n)
			}
			printf(a.stdout, "stopped network %s %s (%s)\n", n.Label, n.CIDR, n.UUID)
			return nil
		}),
	}
}

func newNetworkStartCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "start NETWORK",
		Short: "Start a stopped network: its hosts set it up again",
		Long: `Start a network stopped by "network stop": the hosts that serve it, and the
hosts of its instances, set it up again (bridge, dnsmasq with the
instances' reservations, firewall rules, floating IPs) when the manager
tells them or at their next convergence. Starting a started network
changes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			n, err := c.StartNetwork(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(n)
			}
			printf(a.stdout, "started network %s %s (%s)\n", n.Label, n.CIDR, n.UUID)
			return nil
		}),
	}
}
