// Command allocate is a stand-in compute service for scripts/demo.sh: it
// asks the network-manager (allocate_for_instance over NATS) for the
// network of one instance and prints "MAC ADDRESS" for each fixed address
// it was given, one line each. It is not installed; netadm has no allocate
// command because allocation belongs to compute services.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"novanet/client"
	"novanet/internal/natsconn"
	"novanet/rpc"
)

func main() {
	natsURL := flag.String("nats-url", nats.DefaultURL, "NATS URL of the network-manager")
	host := flag.String("host", "", "compute host of the instance")
	project := flag.String("project", "demo", "project of the instance")
	instance := flag.String("instance", "", "instance UUID (default: a random one)")
	network := flag.String("network", "", "network to allocate on (default: the manager picks)")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the manager")
	nkey := flag.String("nats-nkey", "", "nkey seed file of a compute identity (network-manager creds add compute NAME)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: allocate [flags]")
		os.Exit(2)
	}
	if *instance == "" {
		*instance = uuid.NewString()
	}
	if err := run(*natsURL, natsconn.Options{NKey: *nkey}, *timeout, rpc.AllocateForInstanceRequest{
		InstanceUUID: *instance, ProjectID: *project, Host: *host,
		RequestedNetworks: requested(*network),
	}); err != nil {
		fmt.Fprintf(os.Stderr, "allocate: %v\n", err)
		os.Exit(1)
	}
}

func requested(network string) []rpc.RequestedNetwork {
	if network == "" {
		return nil
	}
	return []rpc.RequestedNetwork{{Network: network}}
}

func run(url string, o natsconn.Options, timeout time.Duration, req rpc.AllocateForInstanceRequest) error {
	nc, err := o.Connect(url, "novanet demo allocate", nats.Timeout(timeout))
	if err != nil {
		return fmt.Errorf("nats %s: %w", url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	info, err := client.New(nc, timeout).AllocateForInstance(ctx, req)
	if err != nil {
		return err
	}
	n := 0
	for _, vif := range info.VIFs {
		for _, ip := range vif.FixedIPs {
			fmt.Printf("%s %s\n", vif.MAC, ip.Address)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("instance %s got no fixed address", req.InstanceUUID)
	}
	return nil
}
