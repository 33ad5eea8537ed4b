package hostnet

import (
	"context"
	"net/netip"

	"novanet/linuxnet/dnsmasq"
	"novanet/linuxnet/link"
)

// kernel is everything the drivers ask of the kernel: links of one
// namespace. *link.Manager is the real one; hostnettest.Links keeps links
// in memory with the same semantics, for the drivers' unit tests. It is
// unexported on purpose: it is the drivers' view of linuxnet/link, not an
// API to build on.
type kernel interface {
	Stat(ctx context.Context, name string) (link.State, error)
	EnsureBridge(ctx context.Context, c link.BridgeConfig) (link.State, error)
	Enslave(ctx context.Context, bridge, iface string, o link.EnslaveOptions) error
	EnsureVLAN(ctx context.Context, parent string, id uint16, mtu int) (string, error)
	EnsureVXLAN(ctx context.Context, c link.VXLANConfig) (string, error)
	Delete(ctx context.Context, name string) error
	// DelAddr removes an address; one already gone is fine.
	DelAddr(ctx context.Context, dev string, p netip.Prefix) error
	// Ports lists the links whose master is bridge.
	Ports(ctx context.Context, bridge string) ([]string, error)
}

var _ kernel = (*link.Manager)(nil)

// dhcpServers runs the networks' dnsmasq instances; *DHCPServers is the
// real one, hostnettest.DHCP an in-memory one.
type dhcpServers interface {
	Ensure(ctx context.Context, c dnsmasq.Config, hosts []dnsmasq.Host) (dnsmasq.Action, error)
	Stop(ctx context.Context, name string) (bool, error)
}

var _ dhcpServers = (*DHCPServers)(nil)
