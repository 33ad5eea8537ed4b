// Package hostnet is the host model and its drivers: a network as the host
// sees it (Network, parsed once from the manager's rpc.HostNetwork), the
// host's own settings (Config), the record of what a driver made for a
// network (Record, so that it can be removed after a restart, even when the
// network is gone from the database), the Flat, FlatDHCP and VLAN drivers
// (flat.go, flatdhcp.go, vlan.go over the shared bridged.go), the dnsmasq
// configuration of a network, and the firewall rules every mode needs.
//
// The drivers reach the kernel only through linuxnet: links through the
// small kernel interface that *link.Manager implements (kernel.go), dnsmasq
// through DHCPServers. Floating addresses are package floating's.
package hostnet

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Driver sets up and tears down one network on the host. All three are
// idempotent and safe to retry after a crash at any point. Their errors
// name the network once ("network 1 (br100): ...").
type Driver interface {
	// Name is flat, flatdhcp or vlan.
	Name() string
	// Plan returns the record of what Setup will make for n, before it makes
	// anything: the agent stores it first, so that a crash in the middle of
	// Setup leaves a record naming everything that may exist.
	Plan(n Network) (Record, error)
	// Setup makes n present (links, addresses, dnsmasq with n.Hosts) and
	// returns what it changed, in words, for the log ("created bridge
	// br100", "dnsmasq br100 reloaded"); nil when nothing changed.
	Setup(ctx context.Context, n Network) ([]string, error)
	// Teardown removes what rec names; what is already gone is fine.
	Teardown(ctx context.Context, rec Record) ([]string, error)
}

// NewDriver returns the driver cfg.Driver names (flat.New, flatdhcp.New
// and vlan.New call it). links is the kernel's links in one namespace: a
// *link.Manager, or in tests hostnettest's in-memory Links. dhcp runs the
// networks' dnsmasq instances under cfg.DHCPDir: a *DHCPServers, or
// hostnettest's DHCP; flat mode runs none and takes nil.
func NewDriver(cfg Config, links kernel, dhcp dhcpServers) (Driver, error) {
	if links == nil {
		return nil, fmt.Errorf("%s: %w: no links", cfg.Driver, ErrInvalidConfig)
	}
	switch cfg.Driver {
	case DriverFlat:
		return newFlat(links), nil
	case DriverFlatDHCP:
		return newFlatDHCP(cfg, links, dhcp)
	case DriverVLAN:
		return newVLAN(cfg, links, dhcp)
	}
	return nil, fmt.Errorf("%w: driver %q: want flat, flatdhcp or vlan", ErrInvalidConfig, cfg.Driver)
}

// Record names what a driver made on the host for one network.
type Record struct {
	NetworkID int64  `json:"network_id"`
	Driver    string `json:"driver"`
	Bridge    string `json:"bridge"`
	// BridgeOwned: the bridge was made by us and is removed on teardown
	// (false in flat mode, where the bridge is the operator's). A
	// teardown of a record with BridgeOwned false keeps the bridge but
	// removes Gateway from it (TeardownAmong: other networks keep it).
	BridgeOwned bool `json:"bridge_owned"`
	// Segment is the VLAN or VXLAN link made for the network, if any.
	Segment string `json:"segment,omitempty"`
	// DHCP names the dnsmasq instance of the network's bridge (its
	// directory under Config.DHCPDir), if any; every network on the
	// bridge has the same.
	DHCP string `json:"dhcp,omitempty"`
	// Gateway is the network's address on the bridge, removed from it
	// when the network goes but the bridge stays for others; zero when
	// none (or in a record written before this field).
	Gateway netip.Prefix `json:"gateway"`
	// GatewayV6 is the same for the network's IPv6 gateway.
	GatewayV6 netip.Prefix `json:"gateway_v6,omitzero"`
}

// String returns "network ID (bridge)" for messages, as Network.String.
func (r Record) String() string {
	s := "network " + strconv.FormatInt(r.NetworkID, 10)
	if r.Bridge != "" {
		s += " (" + r.Bridge + ")"
	}
	return s
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
