package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"novanet/client"
	"novanet/rpc"
)

// withClient wraps a command body that needs a manager connection.
func (a *app) withClient(run func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, done, err := a.client()
		if err != nil {
			return err
		}
		defer done()
		return run(cmd, c, args)
	}
}

func newFloatingCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "floating",
		Short: "Manage floating IP pools, and floating IPs on behalf of projects",
		Long: `Floating IPs are public addresses that a project allocates from a pool and
associates with a fixed IP of one of its instances; the host that serves the
fixed IP NATs the floating one to it.

Operators create and delete ranges of pools (floating create, floating
delete) and look at them (floating list, floating pools). Compute services
allocate and associate floating IPs over RPC; allocate, associate,
disassociate and deallocate are here too, for operators acting for a project.
A project may hold as many floating IPs as its quota allows (netadm quota).`,
	}
	cmd.AddCommand(newFloatingCreateCmd(a), newFloatingListCmd(a), newFloatingDeleteCmd(a), newFloatingPoolsCmd(a),
		newFloatingAllocateCmd(a), newFloatingAssociateCmd(a), newFloatingDisassociateCmd(a), newFloatingDeallocateCmd(a))
	return cmd
}

func newFloatingCreateCmd(a *app) *cobra.Command {
	var req rpc.CreateFloatingIPsRequest
	cmd := &cobra.Command{
		Use:   "create CIDR",
		Short: "Add the addresses of CIDR to a floating pool",
		Long: `Add a range of floating addresses to a pool, as nova-manage floating create
did: every host address of CIDR becomes a floating IP of the pool. As there,
the network and broadcast addresses of a /30 or larger range are left out
(a /24 gives 254 addresses); a /31 or /32 is used whole.

CIDR must be an IPv4 network without host bits, of at most 262144 addresses
(a /14). It may not overlap a fixed network or another floating range; the
refusal names the one it clashes with, and nothing is created.

--pool defaults to the manager's default pool (network-manager
--default-floating-pool, "nova" unless changed). --interface is the public
interface the hosts NAT these addresses on; without it, each host uses its
agent's default public interface.`,
		Example: `  netadm floating create --pool public 203.0.113.0/24
  netadm floating create --pool public --interface eth2 198.51.100.16/28`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			req.CIDR = args[0]
			r, err := c.CreateFloatingIPs(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printRange(r)
		}),
	}
	cmd.Flags().StringVar(&req.Pool, "pool", "", "pool to add the range to (default: the manager's default pool)")
	cmd.Flags().StringVar(&req.Interface, "interface", "", "public interface the hosts NAT these addresses on")
	return cmd
}

func (a *app) printRange(r rpc.FloatingRange) error {
	if a.output == "json" {
		return a.printJSON(r)
	}
	t := newTable(a.stdout, "CIDR", "POOL", "INTERFACE", "ADDRESSES", "CREATED")
	t.row(r.CIDR, r.Pool, dash(r.Interface), r.Total, r.CreatedAt)
	return t.flush()
}

func newFloatingListCmd(a *app) *cobra.Command {
	var req rpc.ListFloatingIPsRequest
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List floating IPs: pool, project, associated fixed IP and host",
		Long: `List floating IPs in address order, free ones too, with the project each
is allocated to, the fixed IP and instance it is associated with, and the
host that NATs it. AUTO is "yes" for addresses auto-assigned to an instance.`,
		Args: cobra.NoArgs,
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			ips, err := c.AllFloatingIPs(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printFloatingIPs(ips)
		}),
	}
	cmd.Flags().StringVar(&req.Pool, "pool", "", "only this pool")
	cmd.Flags().StringVar(&req.ProjectID, "project", "", "only addresses allocated to this project")
	return cmd
}

func (a *app) printFloatingIPs(ips []rpc.FloatingIP) error {
	if a.output == "json" {
		return a.printJSON(rpc.FloatingIPsReply{FloatingIPs: ips})
	}
	t := newTable(a.stdout, "ADDRESS", "POOL", "PROJECT", "FIXED", "INSTANCE", "HOST", "INTERFACE", "AUTO")
	for _, f := range ips {
		t.row(f.Address, f.Pool, dash(f.ProjectID), dash(f.FixedAddress), dash(f.InstanceUUID), dash(f.Host),
			dash(f.Interface), yesNo(f.AutoAssigned))
	}
	return t.flush()
}

func newFloatingDeleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "delete CIDR",
		Short: "Delete a floating range and its addresses",
		Long: `Delete a floating range, named by the CIDR it was created with, and all its
addresses. It is refused, and nothing is deleted, while any address of the
range is allocated to a project; the refusal names them.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			r, err := c.DeleteFloatingIPs(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(r)
			}
			printf(a.stdout, "deleted floating range %s of pool %s (%d addresses)\n", r.CIDR, r.Pool, r.Total)
			return nil
		}),
	}
}

func newFloatingPoolsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "pools",
		Short: "List floating pools with free, associated and total counts",
		Long: `List the floating pools. FREE counts addresses not allocated to any project,
ASSOCIATED those associated with a fixed IP.`,
		Args: cobra.NoArgs,
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			pools, err := c.FloatingPools(cmd.Context())
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(rpc.FloatingPoolsReply{Pools: pools})
			}
			t := newTable(a.stdout, "POOL", "FREE/TOTAL", "ASSOCIATED", "RANGES")
			for _, p := range pools {
				t.row(p.Name, fmt.Sprintf("%d/%d", p.Free, p.Total), p.Associated, p.Ranges)
			}
			return t.flush()
		}),
	}
}

func newFloatingAllocateCmd(a *app) *cobra.Command {
	var req rpc.AllocateFloatingIPRequest
	cmd := &cobra.Command{
		Use:   "allocate --project PROJECT",
		Short: "Allocate a free floating IP of a pool to a project",
		Long: `Allocate the lowest free address of a pool to a project, within the
project's quota (netadm quota show). Refused with quota_exceeded at the
quota, and with no_more_floating_ips when the pool has no free address.`,
		Args: cobra.NoArgs,
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			fl, err := c.AllocateFloatingIP(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printFloatingIPs([]rpc.FloatingIP{fl})
		}),
	}
	cmd.Flags().StringVar(&req.ProjectID, "project", "", "project to allocate to (required)")
	cmd.Flags().StringVar(&req.Pool, "pool", "", "pool to allocate from (default: the manager's default pool)")
	_ = cmd.MarkFlagRequired("project")
	return cmd
}

func newFloatingAssociateCmd(a *app) *cobra.Command {
	var req rpc.AssociateFloatingIPRequest
	cmd := &cobra.Command{
		Use:   "associate FLOATING_IP FIXED_IP",
		Short: "Associate a floating IP with a fixed IP of an instance of the same project",
		Long: `Associate a project's floating IP with a fixed IP allocated to an instance of
that project; the host that serves the fixed IP then NATs the floating one.
Associating it again with the same fixed IP changes nothing. One that is
associated with another fixed IP is refused unless --reassociate moves it.
Auto-assigned addresses need --affect-auto-assigned.`,
		Args: cobra.ExactArgs(2),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			req.FloatingAddress, req.FixedAddress = args[0], args[1]
			fl, err := c.AssociateFloatingIP(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printFloatingIPs([]rpc.FloatingIP{fl})
		}),
	}
	cmd.Flags().BoolVar(&req.Reassociate, "reassociate", false, "move the address if it is associated with another fixed IP")
	cmd.Flags().BoolVar(&req.AffectAutoAssigned, "affect-auto-assigned", false, "allow changing an auto-assigned address")
	return cmd
}

func newFloatingDisassociateCmd(a *app) *cobra.Command {
	var req rpc.FloatingIPRequest
	cmd := &cobra.Command{
		Use:   "disassociate FLOATING_IP",
		Short: "Remove a floating IP's association; it stays allocated to its project",
		Long: `Remove a floating IP's association with a fixed IP; the address stays
allocated to its project. An address that is not associated is not an
error. An auto-assigned address needs --affect-auto-assigned, and then
becomes an ordinary allocation of its project.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			req.Address = args[0]
			fl, err := c.DisassociateFloatingIP(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printFloatingIPs([]rpc.FloatingIP{fl})
		}),
	}
	cmd.Flags().StringVar(&req.ProjectID, "project", "", "refuse unless the address is allocated to this project")
	cmd.Flags().BoolVar(&req.AffectAutoAssigned, "affect-auto-assigned", false, "allow changing an auto-assigned address")
	return cmd
}

func newFloatingDeallocateCmd(a *app) *cobra.Command {
	var req rpc.FloatingIPRequest
	cmd := &cobra.Command{
		Use:   "deallocate FLOATING_IP",
		Short: "Return a floating IP to its pool",
		Long: `Return a floating IP to its pool. An address that is associated with a fixed
IP is refused: disassociate it first. One that is already free is not an
error.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			req.Address = args[0]
			fl, err := c.DeallocateFloatingIP(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printFloatingIPs([]rpc.FloatingIP{fl})
		}),
	}
	cmd.Flags().StringVar(&req.ProjectID, "project", "", "refuse unless the address is allocated to this project")
	cmd.Flags().BoolVar(&req.AffectAutoAssigned, "affect-auto-assigned", false, "allow releasing an auto-assigned address")
	return cmd
}

func newQuotaCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quota",
		Short: "Show and set projects' quotas",
		Long: `A project may hold at most its quota of floating IPs. Without a quota of its
own, the manager's default applies (network-manager --quota-floating-ips,
10 unless changed). Floating IPs auto-assigned to instances do not count.`,
	}
	var limit string
	set := &cobra.Command{
		Use:   "set PROJECT --floating-ips N",
		Short: "Set a project's floating IP quota (-1: unlimited)",
		Long: `Set a project's floating IP quota: N is 0 or more, or -1 (or "unlimited")
for no limit. Lowering it below what the project holds takes nothing away;
further allocations are refused until it is under the quota again.`,
		Example: `  netadm quota set p1 --floating-ips 20
  netadm quota set p1 --floating-ips unlimited`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			n, err := parseLimit(limit)
			if err != nil {
				return err
			}
			q, err := c.QuotaSet(cmd.Context(), args[0], rpc.ResourceFloatingIPs, n)
			if err != nil {
				return err
			}
			return a.printQuota(q)
		}),
	}
	set.Flags().StringVar(&limit, "floating-ips", "", "most floating IPs the project may hold: N, or -1 or unlimited")
	_ = set.MarkFlagRequired("floating-ips")
	show := &cobra.Command{
		Use:   "show PROJECT",
		Short: "Show a project's quotas and what it uses",
		Long: `Show a project's effective quotas: its own, or the default (DEFAULT is
"yes"), what counts against them, and the auto-assigned floating IPs, which
do not.`,
		Args: cobra.ExactArgs(1),
		RunE: a.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			q, err := c.QuotaShow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printQuota(q)
		}),
	}
	cmd.AddCommand(set, show)
	return cmd
}

// parseLimit reads a quota: a whole number from -1 up, or "unlimited".
func parseLimit(s string) (int, error) {
	if s == "unlimited" {
		return rpc.QuotaUnlimited, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < rpc.QuotaUnlimited {
		return 0, usagef("--floating-ips %q: want a whole number of at least 0, or -1 or unlimited", s)
	}
	return n, nil
}

func (a *app) printQuota(q rpc.QuotaReply) error {
	if a.output == "json" {
		return a.printJSON(q)
	}
	t := newTable(a.stdout, "PROJECT", "RESOURCE", "LIMIT", "IN USE", "AUTO-ASSIGNED", "DEFAULT")
	for _, r := range q.Quotas {
		limit := strconv.Itoa(r.Limit)
		if r.Limit == rpc.QuotaUnlimited {
			limit = "unlimited"
		}
		t.row(q.ProjectID, r.Resource, limit, r.InUse, r.AutoAssigned, yesNo(r.Default))
	}
	return t.flush()
}
