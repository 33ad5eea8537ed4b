// Package flatdhcp is the public face of the flat DHCP host driver: per
// network a bridge (the network's bridge) that the driver makes, with the
// flat interface enslaved (its addresses moved to the bridge as nova's
// ensure_bridge did), the gateway address on the bridge, and one dnsmasq
// serving the network's reservations. Its flags in network-host:
// --flat-interface (enslaved unless the network names an interface), and
// the --dhcp-* and --dnsmasq* flags.
//
// The driver itself is hostnet/flatdhcp.go over the bridged part it shares
// with vlan (hostnet/bridged.go; docs/decisions/011-host-in-two-layers.md);
// this package is its constructor and its tests.
package flatdhcp

import (
	"fmt"

	"novanet/hostnet"
	"novanet/linuxnet/link"
)

// New returns the flatdhcp driver over the links of one namespace and the
// dnsmasq instances under cfg.DHCPDir. cfg.FlatInterface, when set, must be
// a valid interface name; cfg.DHCPDir must be a clean absolute path.
func New(cfg hostnet.Config, links *link.Manager, dhcp *hostnet.DHCPServers) (hostnet.Driver, error) {
	if links == nil || dhcp == nil {
		return nil, fmt.Errorf("flatdhcp: %w: links and dhcp are required", hostnet.ErrInvalidConfig)
	}
	cfg.Driver = hostnet.DriverFlatDHCP
	return hostnet.NewDriver(cfg, links, dhcp)
}
