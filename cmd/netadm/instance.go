package main

import (
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"novanet/client"
	"novanet/rpc"
)

func newInstanceCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "instance",
		Short: "Allocate, show and free an instance's interfaces and fixed IPs",
		Long: `Give an instance its virtual interfaces and fixed IPs, show them, add or
remove one, and free them: the same RPC a compute service uses
(allocate_for_instance, get_instance_nw_info, add_fixed_ip_to_instance,
remove_fixed_ip_from_instance, deallocate_for_instance; docs/rpc.md), for
operators and for trying the service without a compute service.

INSTANCE is the instance's UUID in its 36-character form.`,
	}
	cmd.AddCommand(newInstanceAllocateCmd(a), newInstanceDeallocateCmd(a), newInstanceShowCmd(a),
		newInstanceAddFixedCmd(a), newInstanceRemoveFixedCmd(a))
	return cmd
}

// parseRequestedNetwork reads --network NETWORK or NETWORK=ADDRESS. The
// address follows the last "=", so a network whose label has an "=" in it
// is named by id, UUID or CIDR instead.
func parseRequestedNetwork(s string) (rpc.RequestedNetwork, error) {
	ref, addr, found := s, "", false
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		ref, addr, found = s[:i], s[i+1:], true
	}
	if ref == "" {
		return rpc.RequestedNetwork{}, usagef("--network %q: want NETWORK or NETWORK=ADDRESS", s)
	}
	if found {
		if a, err := netip.ParseAddr(addr); err != nil || !a.Is4() {
			return rpc.RequestedNetwork{}, usagef("--network %q: address %q is not an IPv4 address", s, addr)
		}
	}
	return rpc.RequestedNetwork{Network: ref, Address: addr}, nil
}

func newInstanceAllocateCmd(a *app) *cobra.Command {
	var (
		req  rpc.AllocateForInstanceRequest
		nets []string
	)
	cmd := &cobra.Command{
		Use:   "allocate INSTANCE --project PROJECT",
		Short: "Give an instance one interface and fixed IP on each of its networks",
		Long: `Allocate an instance's network, as a compute service does when it boots one:
one virtual interface, with a MAC and a fixed IP, on each network.

Without --network: in flat modes every network without a project; in VLAN
mode the project's networks (the project is given the first free VLAN
network at its first allocation). --network NETWORK (id, UUID, CIDR or
label), repeated, names the networks instead, in order; NETWORK=ADDRESS asks
for that free address of the network. --mac, repeated, gives the interfaces'
MACs in the same order (one per interface; default random ones).

--host is the instance's compute host: the network-host agent of that name
serves its multi-host networks, and is preferred for a single-host network
that has no host yet.

Retrying is safe: for an instance that already has interfaces nothing is
allocated and its current interfaces are printed.`,
		Example: `  netadm instance allocate 11111111-2222-3333-4444-555555555555 --project demo --host compute-1
  netadm instance allocate 11111111-2222-3333-4444-555555555555 --project demo \
      --network private_1=10.0.0.20 --mac 02:16:3e:00:00:01`,
		Args: cobra.ExactArgs(1),
		// The command line is checked before netadm connects.
		PreRunE: func(*cobra.Command, []string) error {
			req.RequestedNetworks = nil
			for _, s := range nets {
				rn, err := parseRequestedNetwork(s)
				if err != nil {
					return err
				}
				req.RequestedNetworks = append(req.RequestedNetworks, rn)
			}
			return nil
		},
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			req.InstanceUUID = args[0]
			info, err := c.AllocateForInstance(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printNetworkInfo(info)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.ProjectID, "project", "", "the instance's project (required)")
	f.StringVar(&req.Host, "host", "", "the instance's compute host (its network-host agent's name)")
	f.StringArrayVar(&nets, "network", nil, "a network for an interface, NETWORK or NETWORK=ADDRESS (repeat for several)")
	f.StringArrayVar(&req.MACs, "mac", nil, "MAC of the next interface (repeat: one per interface)")
	_ = cmd.MarkFlagRequired("project")
	return cmd
}

func newInstanceDeallocateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "deallocate INSTANCE",
		Short: "Remove all an instance's interfaces; its addresses are held until released",
		Long: `Remove all the instance's interfaces, as a compute service does when it
deletes one. Its fixed IPs stay held by the instance until their DHCP
release or the manager's disassociate timeout (netadm fixed list shows
them), so they are not handed to another instance while the old one may
still use them. Floating IPs associated with them are disassociated.
An instance with no interfaces is not an error.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.DeallocateForInstance(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(rpc.InstanceRequest{InstanceUUID: strings.ToLower(args[0])})
			}
			printf(a.stdout, "deallocated instance %s\n", strings.ToLower(args[0]))
			return nil
		}),
	}
}

func newInstanceShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show INSTANCE",
		Short: "Show an instance's interfaces, fixed IPs and floating IPs",
		Long: `Show an instance's interfaces in order: each one's MAC, network and bridge,
and its fixed IPs with their gateway and associated floating IPs. An
instance without interfaces (never allocated, or deallocated) is
not_found.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			info, err := c.InstanceNWInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printNetworkInfo(info)
		}),
	}
}

func newInstanceAddFixedCmd(a *app) *cobra.Command {
	var req rpc.AddFixedIPRequest
	cmd := &cobra.Command{
		Use:   "add-fixed INSTANCE NETWORK",
		Short: "Add an interface with a fixed IP on NETWORK to an instance",
		Long: `Add one interface, with a random MAC and a fixed IP, on NETWORK (id, UUID,
CIDR or label) to an instance, and print all its interfaces. --address asks
for that free address of the network. An instance that already has an
interface on NETWORK is refused (conflict).`,
		Args: cobra.ExactArgs(2),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			req.InstanceUUID, req.Network = args[0], args[1]
			info, err := c.AddFixedIPToInstance(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printNetworkInfo(info)
		}),
	}
	cmd.Flags().StringVar(&req.Address, "address", "", "a free address of NETWORK (default: one the manager picks)")
	cmd.Flags().StringVar(&req.Host, "host", "", "the instance's compute host, stored on the new fixed IP")
	return cmd
}

func newInstanceRemoveFixedCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-fixed INSTANCE ADDRESS",
		Short: "Remove the interface that carries ADDRESS from an instance",
		Long: `Remove the interface that carries the fixed IP ADDRESS from an instance, and
print the interfaces it has left. The address is held as after deallocate.
An address the instance does not have is not_found.`,
		Args: cobra.ExactArgs(2),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			info, err := c.RemoveFixedIPFromInstance(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.printNetworkInfo(info)
		}),
	}
}

// printNetworkInfo prints an instance's interfaces, one row per fixed IP
// (one row with ADDRESS "-" for an interface without any).
func (a *app) printNetworkInfo(info rpc.NetworkInfo) error {
	if a.output == "json" {
		return a.printJSON(info)
	}
	t := newTable(a.stdout, "INSTANCE", "MAC", "NETWORK", "BRIDGE", "ADDRESS", "GATEWAY", "FLOATING", "HOST")
	for _, v := range info.VIFs {
		ips := v.FixedIPs
		if len(ips) == 0 {
			ips = []rpc.IPInfo{{}}
		}
		for _, ip := range ips {
			floating := strings.Join(ip.FloatingIPs, ",")
			t.row(info.InstanceUUID, v.MAC, v.Network.Label, dash(v.Network.Bridge), dash(ip.Address), dash(ip.Gateway),
				dash(floating), dash(v.Network.Host))
		}
	}
	return t.flush()
}
