package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"novanet/rpc"
)

func newHostCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Show the network-host agents registered with the manager",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List agents: driver, version, when last seen, networks served",
		Long: `List every network-host agent that has registered with the manager.

An agent re-registers every ` + fmt.Sprint(rpc.DefaultHeartbeatSec) + ` seconds; ALIVE is "yes" when it was seen in
the last three intervals. NETWORKS counts the single-host networks the agent
serves (multi-host networks are served by every host with an instance on them).
CONVERGED is when the agent last reported a full convergence (at start, every
--converge-interval, after a reconnection, on "netadm host converge"), and LAST
CONVERGENCE what it found: "in sync", what it repaired, or what it could not do.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			hosts, err := c.ListHosts(cmd.Context())
			if err != nil {
				return err
			}
			return a.printHosts(hosts)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "converge HOST",
		Short: "Make the agent on HOST converge now, and print what it changed",
		Long: `Ask the network-host agent on HOST to converge the whole host to the state
the manager holds for it - as it does when it starts and periodically - and
print what it changed (nothing when the host already matched). The request
goes to the agent itself (novanet.host.HOST.converge), so it fails with
"unavailable" when the agent is not running, and with the agent's own error
when something could not be set up (everything else still is).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := a.client()
			if err != nil {
				return err
			}
			defer done()
			// The agent gives itself a minute per request; wait longer.
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			changes, err := c.ConvergeHost(ctx, args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(rpc.HostActionReply{Changes: changes})
			}
			if len(changes) == 0 {
				printf(a.stdout, "%s: nothing to change\n", args[0])
			}
			for _, c := range changes {
				printf(a.stdout, "%s: %s\n", args[0], c)
			}
			return nil
		},
	})
	cmd.AddCommand(newHostDescribeCmd(a))
	return cmd
}

func (a *app) printHosts(hosts []rpc.HostInfo) error {
	if a.output == "json" {
		return a.printJSON(rpc.HostsReply{Hosts: hosts})
	}
	t := newTable(a.stdout, "HOST", "DRIVER", "VERSION", "LAST SEEN", "ALIVE", "NETWORKS", "CONVERGED", "LAST CONVERGENCE")
	for _, h := range hosts {
		at, summary := "-", "-"
		if c := h.Convergence; c != nil {
			at, summary = c.At, c.Summary()
		}
		t.row(h.Name, h.Driver, dash(h.Version), h.LastSeen, yesNo(h.Alive), h.Networks, at, summary)
	}
	return t.flush()
}
