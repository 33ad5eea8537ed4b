// Package vlan is the public face of the VLAN host driver: per network
// (one per project) a segment link on the VLAN interface — an 802.1Q link
// vlan<ID>, or with --vlan-segment vxlan a VXLAN link vxlan<ID> (VNI = the
// VLAN id) — enslaved to the network's own bridge, which carries the
// gateway address, and the network's own dnsmasq. Its flags in
// network-host: --vlan-interface, --vlan-segment, --vxlan-group,
// --vxlan-port, and the --dhcp-* and --dnsmasq* flags.
//
// The driver itself is hostnet/vlan.go over the bridged part it shares
// with flatdhcp (hostnet/bridged.go; docs/decisions/011-host-in-two-layers.md);
// this package is its constructor and its tests.
package vlan

import (
	"fmt"

	"novanet/hostnet"
	"novanet/linuxnet/link"
)

// New returns the vlan driver over the links of one namespace and the
// dnsmasq instances under cfg.DHCPDir. cfg.VLANSegment must be "",
// hostnet.SegmentVLAN or hostnet.SegmentVXLAN; cfg.VLANInterface, when
// set, must be a valid name (networks without a bridge interface need it);
// cfg.DHCPDir must be a clean absolute path. With 802.1Q segments on a
// kernel without 802.1Q, Setup's error wraps link.ErrUnsupported.
func New(cfg hostnet.Config, links *link.Manager, dhcp *hostnet.DHCPServers) (hostnet.Driver, error) {
	if links == nil || dhcp == nil {
		return nil, fmt.Errorf("vlan: %w: links and dhcp are required", hostnet.ErrInvalidConfig)
	}
	cfg.Driver = hostnet.DriverVLAN
	return hostnet.NewDriver(cfg, links, dhcp)
}
