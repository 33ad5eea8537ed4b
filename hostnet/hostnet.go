// Package hostnet holds what the host drivers (flat, flatdhcp, vlan) share
// with the agent that runs them: the Driver interface, the host's own
// settings, the record of what a driver made for a network (so that it can
// be removed after a restart, even when the network is gone from the
// database), and the firewall rules every mode needs.
package hostnet

import (
	"context"
	"net/netip"
	"time"

	"novanet/rpc"
)

// Driver sets up and tears down one network on the host. Both are
// idempotent and safe to retry after a crash at any point.
type Driver interface {
	// Name is flat, flatdhcp or vlan.
	Name() string
	// Plan returns the record of what Setup will make for n, before it makes
	// anything: the agent stores it first, so that a crash in the middle of
	// Setup leaves a record naming everything that may exist.
	Plan(n rpc.HostNetwork) (Record, error)
	// Setup makes n present (links, addresses, dnsmasq with n.DHCPHosts)
	// and returns what it changed, in words, for the log ("created bridge
	// br100", "dnsmasq br100 reloaded"); nil when nothing changed.
	Setup(ctx context.Context, n rpc.HostNetwork) ([]string, error)
	// Teardown removes what rec names; what is already gone is fine.
	Teardown(ctx context.Context, rec Record) ([]string, error)
}

// Record names what a driver made on the host for one network.
type Record struct {
	NetworkID int64  `json:"network_id"`
	Driver    string `json:"driver"`
	Bridge    string `json:"bridge"`
	// BridgeOwned: the bridge was made by us and is removed on teardown
	// (false in flat mode, where the bridge is the operator's).
	BridgeOwned bool `json:"bridge_owned"`
	// Segment is the VLAN or VXLAN link made for the network, if any.
	Segment string `json:"segment,omitempty"`
	// DHCP names the network's dnsmasq instance (its directory under
	// Config.DHCPDir), if any.
	DHCP string `json:"dhcp,omitempty"`
}

// Config is the host's own configuration, from network-host's flags.
type Config struct {
	Host   string // this host's name, as registered with the manager
	Driver string // flat, flatdhcp or vlan

	// NetNS is the network namespace path to program; empty: the agent's
	// own. Tests point it at a namespace they made.
	NetNS string

	FlatInterface string // enslaved to flat/flatdhcp bridges unless the network names one
	VLANInterface string // parent of VLAN (or VXLAN) links unless the network names one
	// VLANSegment is "vlan" (802.1Q, the default) or "vxlan": a VXLAN link
	// with VNI = the network's VLAN on VLANInterface, towards VXLANGroup
	// (multicast group or unicast peer), for kernels or fabrics without
	// 802.1Q.
	VLANSegment string
	VXLANGroup  netip.Addr
	VXLANPort   uint16

	PublicInterface string     // floating IPs are bound here
	RoutingSourceIP netip.Addr // SNAT source for the fixed ranges; invalid: no SNAT
	DMZCIDR         []netip.Prefix
	MetadataHost    netip.Addr // 169.254.169.254:80 is forwarded here; invalid: no forward
	MetadataPort    uint16

	DHCPDomain    string
	DHCPLeaseTime time.Duration
	DHCPDir       string   // dnsmasq files, one directory per network
	DHCPCommand   []string // run by dnsmasq's --dhcp-script, e.g. network-host dhcp-event
	DnsmasqBinary string   // default: dnsmasq on PATH
	DnsmasqUser   string   // user dnsmasq drops to; empty: dnsmasq's default
	// DHCPDisableDNS turns off dnsmasq's DNS server (port=0); clients then
	// only get the network's DNS servers.
	DHCPDisableDNS bool

	StateDir string // records of what we made
}
