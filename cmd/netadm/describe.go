package main

import (
	"context"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"novanet/rpc"
)

func newHostDescribeCmd(a *app) *cobra.Command {
	var req rpc.DescribeRequest
	cmd := &cobra.Command{
		Use:   "describe HOST",
		Short: "Show what HOST really has, beside what the manager wants, and the difference",
		Long: `Ask the network-host agent on HOST to read the host's actual state back from
the kernel and dnsmasq - bridges and their ports, VLAN and VXLAN segments with
their parameters, addresses, MTUs, each dnsmasq (running or not, its config
with the DHCP ranges, its reservations and leases), the service's iptables
chains and rules, the floating addresses - and print it in the schema of the
desired state, object by object, with what differs marked:

  "+ " a wanted object or attribute the host lacks (want)
  "- " an attribute the host has and should not (have)

A bridge may have ports (VMs' taps) and addresses the manager does not name,
and an attribute the manager does not set (a bridge's MTU when the network has
none) is not compared. The wanted firewall is the one the agent computed at
its last convergence. Nothing is changed; "netadm host converge HOST" repairs
what differs. A difference is output, not an error: the
exit status is non-zero only when the host could not be described.

--network N narrows the networks to N (the firewall and the floating
addresses are the whole host's). --all adds what on the host is not ours
(other bridges and segments, foreign iptables chains), which the agent never
touches.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			d, err := c.DescribeHost(ctx, args[0], req)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(d)
			}
			a.printDescription(d)
			return nil
		},
	}
	cmd.Flags().Int64Var(&req.NetworkID, "network", 0, "describe only this network (by id)")
	cmd.Flags().BoolVar(&req.All, "all", false, "also show what on the host is not ours")
	return cmd
}

func (a *app) printDescription(d rpc.HostDescription) {
	diffs := map[[2]string]rpc.HostObjectDiff{}
	for _, df := range d.Diff {
		diffs[[2]string{df.Kind, df.Name}] = df
	}
	have := map[[2]string]rpc.HostObject{}
	for _, h := range d.Have {
		have[[2]string{h.Kind, h.Name}] = h
	}
	for _, w := range d.Want {
		k := [2]string{w.Kind, w.Name}
		df, differs := diffs[k]
		mark := "  "
		if df.Missing {
			mark = "+ "
		}
		printf(a.stdout, "%s%s %s\n", mark, w.Kind, w.Name)
		for _, at := range w.Attrs {
			m := "  "
			if differs && slices.Contains(df.Want, at) {
				m = "+ "
			}
			printf(a.stdout, "%s  %s\n", m, at)
		}
		for _, at := range df.Have {
			printf(a.stdout, "-   %s\n", at)
		}
		for _, in := range have[k].Info {
			printf(a.stdout, "    # %s\n", in)
		}
	}
	if len(d.Foreign) > 0 {
		printf(a.stdout, "not ours (never touched):\n")
		for _, f := range d.Foreign {
			printf(a.stdout, "  %s %s\n", f.Kind, f.Name)
			for _, at := range f.Attrs {
				printf(a.stdout, "    %s\n", at)
			}
		}
	}
	if len(d.Diff) == 0 {
		printf(a.stdout, "%s: in sync (%d objects)\n", d.Host, len(d.Want))
		return
	}
	printf(a.stdout, "%s: %d of %d objects differ\n", d.Host, len(d.Diff), len(d.Want))
}
