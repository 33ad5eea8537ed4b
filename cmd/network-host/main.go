// Command network-host is the novanet agent that runs on every hypervisor.
//
// This release only carries its command line; the agent itself (drivers,
// convergence, DHCP events) is not built yet and "serve" says so.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

var version = "0.1.0"

// ErrNotImplemented is returned by commands this release does not have yet.
var ErrNotImplemented = errors.New("not implemented in this release")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "network-host",
		Short: "novanet agent for a hypervisor",
		Long: `network-host is the agent that runs on every hypervisor: it programs bridges,
VLAN links, dnsmasq and iptables for the networks the network-manager assigns
to its host. The agent is not part of this release yet: "serve" exits with
an error.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "serve",
		Short: "Run the agent (not implemented in this release)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("serve: %w", ErrNotImplemented)
		},
	})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "network-host: %v\n", err)
		return 1
	}
	return 0
}
