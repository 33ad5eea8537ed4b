package rpc

import (
	"fmt"
	"strings"
)

// Host agents (network-host) register with the manager, send heartbeats,
// ask it for the desired state of their host and report DHCP lease events,
// on subjects that name the host: novanet.manager.host.<host>.<method>
// (HostManagerMethods), so that NATS permissions decide who may speak for
// a host. The manager tells an agent that something changed through
// per-host subjects: novanet.host.<host>.<method>.
const (
	MethodRegisterHost = "register_host"  // also the heartbeat: the agent repeats it
	MethodListHosts    = "list_hosts"     // netadm host list
	MethodGetHostState = "get_host_state" // the desired state of one host
	// MethodReportConvergence: the agent's summary of a full convergence.
	MethodReportConvergence = "report_convergence"
	HostPrefix              = "novanet.host"
	// HostManagerPrefix: novanet.manager.host.<host>.<method> are the
	// manager methods an agent calls for its host.
	HostManagerPrefix   = ManagerPrefix + ".host"
	HostMethodSetup     = "setup_network"
	HostMethodTeardown  = "teardown_network"
	HostMethodRefresh   = "refresh_dhcp"
	HostMethodConverge  = "converge" // the whole host; used by netadm host converge
	DefaultHeartbeatSec = 10
)

// HostManagerMethods are the manager methods served on
// novanet.manager.host.<host>.<method>: what an agent calls for its own
// host. A request body that names a host must name the subject's.
// lease_fixed_ip and release_fixed_ip are also served on
// novanet.manager.<method>, for operators.
var HostManagerMethods = []string{MethodRegisterHost, MethodGetHostState, MethodLeaseFixedIP, MethodReleaseFixedIP, MethodReportConvergence}

// HostMethod returns the method name that Subject turns into the
// host-facing subject novanet.manager.host.<host>.<method>.
func HostMethod(host, method string) string { return "host." + host + "." + method }

// HostManagerSubject returns the subject of a host-facing manager method
// for host.
func HostManagerSubject(host, method string) string { return Subject(HostMethod(host, method)) }

// HostFromManagerSubject returns the host of a subject
// novanet.manager.host.<host>.<method>, or "" when subject is not one.
func HostFromManagerSubject(subject string) string {
	rest, ok := strings.CutPrefix(subject, HostManagerPrefix+".")
	if !ok {
		return ""
	}
	host, method, ok := strings.Cut(rest, ".")
	if !ok || method == "" || strings.Contains(method, ".") {
		return ""
	}
	return host
}

// HostMethods lists the methods an agent serves on its subjects.
var HostMethods = []string{HostMethodSetup, HostMethodTeardown, HostMethodRefresh, HostMethodConverge, HostMethodDescribe}

// HostSubject returns the subject of an agent method on a host.
func HostSubject(host, method string) string { return HostPrefix + "." + host + "." + method }

// ValidateHostName checks the name of a host that runs an agent: a letter
// or digit, then up to 252 letters, digits, '_' or '-'. The hosts table
// would also take dots, but a host name is a NATS subject token here, and
// NATS would read novanet.host.a.b.setup_network as host "a"; so no dots.
func ValidateHostName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host name %q: want 1 to 253 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && (r == '_' || r == '-')
		if !ok {
			return fmt.Errorf("host name %q: want letters, digits, '_' and '-' (starting with a letter or digit)", name)
		}
	}
	return nil
}

// RegisterHostRequest announces an agent, or repeats as a heartbeat.
type RegisterHostRequest struct {
	Host    string `json:"host"`
	Driver  string `json:"driver"` // flat, flatdhcp or vlan
	Version string `json:"version,omitempty"`
}

// HostInfo is one registered agent.
type HostInfo struct {
	Name      string `json:"name"`
	Driver    string `json:"driver"`
	Version   string `json:"version"`
	CreatedAt string `json:"created_at"`
	LastSeen  string `json:"last_seen"`
	// Alive: seen within three heartbeat intervals.
	Alive    bool `json:"alive"`
	Networks int  `json:"networks"` // networks this host serves (non-multi-host)
	// Convergence is the agent's last report of a full convergence;
	// absent until its first.
	Convergence *Convergence `json:"convergence,omitempty"`
}

// Limits of a convergence report (report_convergence): at most
// MaxReportItems changes and as many errors, each at most MaxReportItemLen
// bytes. The agent keeps the first ones and says how many it left out.
const (
	MaxReportItems   = 50
	MaxReportItemLen = 512
)

// ConvergenceReport is the body of report_convergence: what one full
// convergence of the host did. InSync: it changed nothing and failed at
// nothing.
type ConvergenceReport struct {
	Trigger string   `json:"trigger"` // start, periodic, reconnect, converge
	InSync  bool     `json:"in_sync"`
	Changes []string `json:"changes"` // what it repaired or made
	Errors  []string `json:"errors"`  // what it could not do
}

// Convergence is a host's last convergence report as the manager keeps
// it, with the time it came in (RFC 3339, UTC).
type Convergence struct {
	At string `json:"at"`
	ConvergenceReport
}

// Summary is the report in a few words: "in sync", "repaired: a; b", "2
// problems: x; y".
func (r ConvergenceReport) Summary() string {
	if r.InSync {
		return "in sync"
	}
	var parts []string
	if len(r.Errors) > 0 {
		parts = append(parts, fmt.Sprintf("%d problems: %s", len(r.Errors), strings.Join(r.Errors, "; ")))
	}
	if len(r.Changes) > 0 {
		parts = append(parts, "repaired: "+strings.Join(r.Changes, "; "))
	}
	return strings.Join(parts, "; ")
}

// ListHostsRequest asks for a page of the registered agents, in name
// order: at most Limit (default and most MaxPage) from after Cursor (a
// reply's NextCursor; empty: the first page).
type ListHostsRequest struct {
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// HostsReply carries a page of the registered agents: NextCursor, when
// set, is the Cursor of the request for the next.
type HostsReply struct {
	Hosts      []HostInfo `json:"hosts"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// HostStateRequest asks for the desired state of a host; NetworkID, when
// set, narrows it to one network (absent from the reply when that network
// is not wanted on the host any more).
type HostStateRequest struct {
	Host      string `json:"host"`
	NetworkID int64  `json:"network_id,omitempty"`
}

// HostState is what a host should have: the networks it serves and the
// floating IPs it NATs.
type HostState struct {
	Host     string        `json:"host"`
	Mode     string        `json:"mode"`
	Networks []HostNetwork `json:"networks"`
	// Partial: the reply covers one network only (NetworkID was set).
	Partial     bool             `json:"partial,omitempty"`
	FloatingIPs []HostFloatingIP `json:"floating_ips"`
}

// HostNetwork is a network as a host sets it up.
type HostNetwork struct {
	ID      int64  `json:"id"`
	Label   string `json:"label"`
	CIDR    string `json:"cidr"`
	Netmask string `json:"netmask"`
	Gateway string `json:"gateway,omitempty"`
	// CIDRv6 is the network's IPv6 /64 and GatewayV6 the bridge's address
	// in it; both empty for an IPv4-only network.
	CIDRv6            string     `json:"cidr_v6,omitempty"`
	GatewayV6         string     `json:"gateway_v6,omitempty"`
	Broadcast         string     `json:"broadcast"`
	DHCPStart         string     `json:"dhcp_start,omitempty"`
	DNS               []string   `json:"dns"`
	VLAN              int        `json:"vlan,omitempty"`
	Bridge            string     `json:"bridge"`
	BridgeInterface   string     `json:"bridge_interface,omitempty"`
	MultiHost         bool       `json:"multi_host"`
	MTU               int        `json:"mtu,omitempty"`
	EnableDHCP        bool       `json:"enable_dhcp"`
	VPNPublicAddress  string     `json:"vpn_public_address,omitempty"`
	VPNPublicPort     int        `json:"vpn_public_port,omitempty"`
	VPNPrivateAddress string     `json:"vpn_private_address,omitempty"`
	DHCPHosts         []DHCPHost `json:"dhcp_hosts"`
	// Layer2Only: the host does not serve this single-host network (its
	// host is another) but has instances on it, so it only carries the
	// network's layer 2 (bridge and segment): no gateway address, no
	// dnsmasq, no reservations.
	Layer2Only bool `json:"layer2_only,omitempty"`
}

// DHCPHost is one reservation: the interface's MAC gets Address.
type DHCPHost struct {
	MAC      string `json:"mac"`
	Address  string `json:"address"`
	Hostname string `json:"hostname"`
}

// HostFloatingIP is one floating address NATed to a fixed one on the host.
type HostFloatingIP struct {
	Address      string `json:"address"`
	FixedAddress string `json:"fixed_address"`
	Interface    string `json:"interface,omitempty"` // public interface; empty: the agent's default
	NetworkID    int64  `json:"network_id"`
}

// HostNetworkRequest is the body of setup_network, teardown_network and
// refresh_dhcp sent to an agent.
type HostNetworkRequest struct {
	NetworkID int64 `json:"network_id"`
}

// HostActionReply tells what an agent changed.
type HostActionReply struct {
	Changes []string `json:"changes"`
}

// HostMethodDescribe: novanet.host.<host>.describe, the host's actual
// state read back beside the desired one (netadm host describe).
const HostMethodDescribe = "describe"

// DescribeRequest is the body of describe. NetworkID narrows it to one
// network's objects (the firewall and floating addresses are whole-host
// and always included); All adds what on the host is not ours.
type DescribeRequest struct {
	NetworkID int64 `json:"network_id,omitempty"`
	All       bool  `json:"all,omitempty"`
}

// HostObject is one thing on a host in describe's schema: a bridge, a
// segment (VLAN or VXLAN link), a dnsmasq instance, a firewall chain, or
// the floating addresses of an interface. Attrs are "key value" strings
// ("mtu 1500", "address 10.0.0.1/24", "port vxlan100", "rule -A ...",
// "running yes"), compared between the desired and the actual object;
// Info (leases, pid) is shown, not compared.
type HostObject struct {
	Kind  string   `json:"kind"`
	Name  string   `json:"name"`
	Attrs []string `json:"attrs"`
	Info  []string `json:"info,omitempty"`
}

// HostObjectDiff is one desired object the host lacks (Missing) or has
// otherwise: Want are its attributes the host lacks ("+ want"), Have the
// host's attributes it should not have ("- have").
type HostObjectDiff struct {
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Missing bool     `json:"missing,omitempty"`
	Want    []string `json:"want,omitempty"`
	Have    []string `json:"have,omitempty"`
}

// HostDescription is the reply of describe: the desired objects (Want),
// the actual ones read back from the kernel and dnsmasq (Have), their
// differences (Diff, empty when the host is in sync), and with All the
// objects on the host that are not ours (Foreign), which the agent never
// touches.
type HostDescription struct {
	Host    string           `json:"host"`
	Want    []HostObject     `json:"want"`
	Have    []HostObject     `json:"have"`
	Diff    []HostObjectDiff `json:"diff"`
	Foreign []HostObject     `json:"foreign,omitempty"`
}
