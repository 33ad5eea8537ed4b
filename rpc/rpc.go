// Package rpc defines novanet's wire protocol: NATS subjects, the JSON
// request and reply bodies, and error codes. docs/rpc.md describes the same
// thing for clients in other languages; keep the two in step.
package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// Service identity as seen by NATS micro discovery ($SRV.PING, $SRV.INFO).
const (
	ServiceName = "novanet-manager"
	// QueueGroup is shared by every manager replica: each request reaches one.
	QueueGroup = "novanet-manager"
	// ManagerPrefix is the subject prefix of every manager method:
	// novanet.manager.<method>.
	ManagerPrefix = "novanet.manager"
	// MaxRequestBytes bounds a request body; larger ones are refused.
	MaxRequestBytes = 1 << 20
)

// Manager methods. The subject of method M is ManagerPrefix + "." + M.
const (
	MethodCreateNetworks = "create_networks"
	MethodGetAllNetworks = "get_all_networks"
	MethodGetNetwork     = "get_network"
	MethodDeleteNetwork  = "delete_network"
	MethodStopNetwork    = "stop_network"
	MethodStartNetwork   = "start_network"
)

// ManagerMethods lists every manager method served on
// novanet.manager.<method>, in documentation order; HostManagerMethods
// are served per host.
var ManagerMethods = []string{
	MethodCreateNetworks, MethodGetAllNetworks, MethodGetNetwork, MethodDeleteNetwork,
	MethodStopNetwork, MethodStartNetwork,
	MethodAllocateForInstance, MethodDeallocateForInstance, MethodAddFixedIPToInstance,
	MethodRemoveFixedIPFromInstance, MethodGetInstanceNWInfo, MethodLeaseFixedIP, MethodReleaseFixedIP,
	MethodGetFixedIPByAddress, MethodGetFixedIPsByInstance, MethodListFixedIPs,
	MethodReserveFixedIP, MethodUnreserveFixedIP,
	MethodListHosts,
	MethodCreateFloatingIPs, MethodDeleteFloatingIPs, MethodListFloatingIPs, MethodGetFloatingPools,
	MethodAllocateFloatingIP, MethodDeallocateFloatingIP, MethodAssociateFloatingIP, MethodDisassociateFloatingIP,
	MethodGetFloatingIPsByProject, MethodGetFloatingIPByAddress, MethodGetFloatingIPsByFixedAddress,
	MethodQuotaSet, MethodQuotaShow,
}

// Subject returns the NATS subject of a manager method.
func Subject(method string) string { return ManagerPrefix + "." + method }

// Headers set on error replies, as NATS micro defines them.
const (
	HeaderErrorCode = "Nats-Service-Error-Code"
	HeaderError     = "Nats-Service-Error"
)

// Code is a stable, machine-readable error code.
type Code string

// Error codes. Each maps to an HTTP-like status carried in the
// Nats-Service-Error-Code header.
const (
	CodeInvalidArgument   Code = "invalid_argument"     // 400: the request is malformed or a value is bad
	CodeNotFound          Code = "not_found"            // 404: a named network, instance or address does not exist
	CodeConflict          Code = "conflict"             // 409: clashes with existing state (overlap, VLAN or bridge in use)
	CodeInUse             Code = "in_use"               // 409: still used (addresses allocated on a network being deleted)
	CodeNoMoreAddresses   Code = "no_more_addresses"    // 409: the network has no free fixed address
	CodeNoMoreNetworks    Code = "no_more_networks"     // 409: VLAN mode: no unassociated network left for a new project
	CodeNoMoreFloatingIPs Code = "no_more_floating_ips" // 409: the floating pool has no free address
	CodeQuotaExceeded     Code = "quota_exceeded"       // 403: the project is at its quota
	CodeTooLarge          Code = "too_large"            // 413: the reply would exceed what NATS carries; ask for a page or less
	CodeUnavailable       Code = "unavailable"          // 503: a dependency (database) is unreachable, or the manager is overloaded; retry
	CodeInternal          Code = "internal"             // 500: a bug or unexpected state; see the manager's log
)

// Status returns the numeric status sent in the Nats-Service-Error-Code header.
func (c Code) Status() int {
	switch c {
	case CodeInvalidArgument:
		return 400
	case CodeQuotaExceeded:
		return 403
	case CodeNotFound:
		return 404
	case CodeConflict, CodeInUse, CodeNoMoreAddresses, CodeNoMoreNetworks, CodeNoMoreFloatingIPs:
		return 409
	case CodeTooLarge:
		return 413
	case CodeUnavailable:
		return 503
	default:
		return 500
	}
}

// CodeForStatus maps a numeric status back to a code, for replies that
// carry no JSON error body.
func CodeForStatus(s string) Code {
	n, _ := strconv.Atoi(s)
	switch n {
	case 400:
		return CodeInvalidArgument
	case 403:
		return CodeQuotaExceeded
	case 404:
		return CodeNotFound
	case 409:
		return CodeConflict
	case 413:
		return CodeTooLarge
	case 503:
		return CodeUnavailable
	default:
		return CodeInternal
	}
}

// Error is the body of every error reply.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Field names the request field that was bad, for invalid_argument.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is makes errors.Is(err, rpc.ErrNotFound) match any error of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is; they match any *Error of the same code.
var (
	ErrInvalidArgument   = &Error{Code: CodeInvalidArgument}
	ErrNotFound          = &Error{Code: CodeNotFound}
	ErrConflict          = &Error{Code: CodeConflict}
	ErrInUse             = &Error{Code: CodeInUse}
	ErrNoMoreAddresses   = &Error{Code: CodeNoMoreAddresses}
	ErrNoMoreNetworks    = &Error{Code: CodeNoMoreNetworks}
	ErrNoMoreFloatingIPs = &Error{Code: CodeNoMoreFloatingIPs}
	ErrQuotaExceeded     = &Error{Code: CodeQuotaExceeded}
	ErrTooLarge          = &Error{Code: CodeTooLarge}
	ErrUnavailable       = &Error{Code: CodeUnavailable}
	ErrInternal          = &Error{Code: CodeInternal}
)

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Decode parses a request body strictly: one JSON object of valid UTF-8,
// no unknown fields, no field named twice or in another case than its own
// (encoding/json alone would take "CIDR" for "cidr" and keep the last of
// two), no NUL byte or U+FFFD in any string, no trailing data, at most
// MaxRequestBytes. An empty body decodes as {}. Errors are *Error with
// CodeInvalidArgument.
func Decode(data []byte, v any) error {
	if len(data) > MaxRequestBytes {
		return Errorf(CodeInvalidArgument, "request of %d bytes is larger than %d", len(data), MaxRequestBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	if !utf8.Valid(data) {
		return Errorf(CodeInvalidArgument, "request body: not valid UTF-8 (first bad byte at offset %d)", invalidUTF8At(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if serr := checkStrict(data, reflect.TypeOf(v)); serr != nil {
			return serr // "did you mean", duplicates: more to the point
		}
		return Errorf(CodeInvalidArgument, "request body: %s", jsonMessage(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(CodeInvalidArgument, "request body: trailing data after the JSON object")
	}
	// The body is valid JSON now: check its names quickly, falling back
	// to the token walk for names with escapes, then the decoded strings.
	if err := checkNames(data, reflect.TypeOf(v)); err != nil {
		if !errors.Is(err, errSlow) {
			return err
		}
		if err := checkStrict(data, reflect.TypeOf(v)); err != nil {
			return err
		}
	}
	return checkStrings(reflect.ValueOf(v), nil)
}

func jsonMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("want a JSON object, got JSON %s", te.Value)
	}
	return err.Error()
}

// CreateNetworksRequest asks for NumNetworks networks of NetworkSize
// addresses carved from the start of CIDR, as nova-manage network create.
type CreateNetworksRequest struct {
	Label            string `json:"label,omitempty"`
	CIDR             string `json:"cidr"`
	NumNetworks      int    `json:"num_networks"`
	NetworkSize      int    `json:"network_size"`
	VLANStart        int    `json:"vlan_start,omitempty"`
	VPNStart         int    `json:"vpn_start,omitempty"`
	VPNPublicAddress string `json:"vpn_public_address,omitempty"`
	Bridge           string `json:"bridge,omitempty"`
	BridgeInterface  string `json:"bridge_interface,omitempty"`
	MultiHost        bool   `json:"multi_host,omitempty"`
	DNS1             string `json:"dns1,omitempty"`
	DNS2             string `json:"dns2,omitempty"`
	Gateway          string `json:"gateway,omitempty"`
	GatewayV6        string `json:"gateway_v6,omitempty"`
	CIDRv6           string `json:"cidr_v6,omitempty"`
	DHCPServer       string `json:"dhcp_server,omitempty"`
	ProjectID        string `json:"project_id,omitempty"`
	MTU              int    `json:"mtu,omitempty"`
	EnableDHCP       *bool  `json:"enable_dhcp,omitempty"` // default true
	ShareAddress     bool   `json:"share_address,omitempty"`
	Priority         *int   `json:"priority,omitempty"`
}

// Network is a network as the manager reports it. Optional values are
// omitted when unset.
type Network struct {
	ID                int64  `json:"id"`
	UUID              string `json:"uuid"`
	Label             string `json:"label"`
	CIDR              string `json:"cidr"`
	CIDRv6            string `json:"cidr_v6,omitempty"`
	Netmask           string `json:"netmask"`
	Gateway           string `json:"gateway,omitempty"`
	GatewayV6         string `json:"gateway_v6,omitempty"`
	Broadcast         string `json:"broadcast"`
	DHCPStart         string `json:"dhcp_start,omitempty"`
	DHCPServer        string `json:"dhcp_server,omitempty"`
	DNS1              string `json:"dns1,omitempty"`
	DNS2              string `json:"dns2,omitempty"`
	VLAN              int    `json:"vlan,omitempty"`
	Bridge            string `json:"bridge,omitempty"`
	BridgeInterface   string `json:"bridge_interface,omitempty"`
	MultiHost         bool   `json:"multi_host"`
	ProjectID         string `json:"project_id,omitempty"`
	Host              string `json:"host,omitempty"`
	VPNPublicAddress  string `json:"vpn_public_address,omitempty"`
	VPNPublicPort     int    `json:"vpn_public_port,omitempty"`
	VPNPrivateAddress string `json:"vpn_private_address,omitempty"`
	MTU               int    `json:"mtu,omitempty"`
	EnableDHCP        bool   `json:"enable_dhcp"`
	ShareAddress      bool   `json:"share_address"`
	Priority          *int   `json:"priority,omitempty"`
	// Stopped is set by stop_network: no host has the network until
	// start_network; its addresses stay allocated.
	Stopped   bool          `json:"stopped"`
	FixedIPs  FixedIPCounts `json:"fixed_ips"`
	CreatedAt string        `json:"created_at"`
}

// FixedIPCounts summarises a network's fixed addresses.
type FixedIPCounts struct {
	Total    int `json:"total"`
	Reserved int `json:"reserved"`
	InUse    int `json:"in_use"` // held by an instance, allocated or leased
	Free     int `json:"free"`
}

// NetworksReply carries a list of networks. From get_all_networks, one
// page: NextCursor, when set, is the Cursor of the request for the next.
type NetworksReply struct {
	Networks   []Network `json:"networks"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// NetworkRef names one network by id, UUID, CIDR or (when unique) label.
type NetworkRef struct {
	Network string `json:"network"`
}

// GetAllNetworksRequest filters the network list; empty means all. The
// list comes in pages of at most Limit networks (default and most
// MaxPage), in CIDR order, from after Cursor (a reply's NextCursor; empty:
// the first page).
type GetAllNetworksRequest struct {
	ProjectID string `json:"project_id,omitempty"`
	Limit     int    `json:"limit,omitempty"`
	Cursor    string `json:"cursor,omitempty"`
}

// MaxPage is the default and largest page of get_all_networks and
// list_hosts, and the largest of list_fixed_ips: well within the 1 MiB an
// external nats-server carries by default.
const MaxPage = 1000

// Allocation methods, called by compute services and DHCP events.
const (
	MethodAllocateForInstance       = "allocate_for_instance"
	MethodDeallocateForInstance     = "deallocate_for_instance"
	MethodAddFixedIPToInstance      = "add_fixed_ip_to_instance"
	MethodRemoveFixedIPFromInstance = "remove_fixed_ip_from_instance"
	MethodGetInstanceNWInfo         = "get_instance_nw_info"
	MethodLeaseFixedIP              = "lease_fixed_ip"
	MethodReleaseFixedIP            = "release_fixed_ip"
	MethodGetFixedIPByAddress       = "get_fixed_ip_by_address"
	MethodGetFixedIPsByInstance     = "get_fixed_ips_by_instance"
	MethodListFixedIPs              = "list_fixed_ips"
	MethodReserveFixedIP            = "reserve_fixed_ip"
	MethodUnreserveFixedIP          = "unreserve_fixed_ip"
)

// RequestedNetwork asks for an interface on one network, optionally with a
// specific address.
type RequestedNetwork struct {
	Network string `json:"network"`           // id, UUID, CIDR or label
	Address string `json:"address,omitempty"` // a free fixed address of that network
}

// AllocateForInstanceRequest gives an instance its network: one virtual
// interface, with a fixed IP, per network. Retrying it for an instance that
// already has interfaces returns them unchanged.
type AllocateForInstanceRequest struct {
	InstanceUUID      string             `json:"instance_uuid"`
	ProjectID         string             `json:"project_id"`
	Host              string             `json:"host,omitempty"`
	RequestedNetworks []RequestedNetwork `json:"requested_networks,omitempty"`
	// MACs, when given, are used in order for the interfaces instead of
	// random ones; there must be one per interface.
	MACs []string `json:"macs,omitempty"`
}

// InstanceRequest names an instance.
type InstanceRequest struct {
	InstanceUUID string `json:"instance_uuid"`
	Host         string `json:"host,omitempty"`
}

// AddFixedIPRequest adds an interface on a network to an instance.
type AddFixedIPRequest struct {
	InstanceUUID string `json:"instance_uuid"`
	Network      string `json:"network"`
	Host         string `json:"host,omitempty"`
	Address      string `json:"address,omitempty"`
}

// RemoveFixedIPRequest removes one fixed address (and its interface) from
// an instance.
type RemoveFixedIPRequest struct {
	InstanceUUID string `json:"instance_uuid"`
	Address      string `json:"address"`
}

// AddressRequest names one fixed address; MAC and Host are informational
// (DHCP events carry them).
type AddressRequest struct {
	Address string `json:"address"`
	MAC     string `json:"mac,omitempty"`
	Host    string `json:"host,omitempty"`
}

// ListFixedIPsRequest filters fixed IPs; empty lists those in use. They
// come in address order, at most Limit (default and most MaxPage) from
// after Cursor (a reply's NextCursor; empty: from the first).
type ListFixedIPsRequest struct {
	Network  string `json:"network,omitempty"`
	Instance string `json:"instance_uuid,omitempty"`
	All      bool   `json:"all,omitempty"` // free ones too
	Limit    int    `json:"limit,omitempty"`
	Cursor   string `json:"cursor,omitempty"`
}

// NetworkInfo is an instance's network: its virtual interfaces in order.
type NetworkInfo struct {
	InstanceUUID string `json:"instance_uuid"`
	VIFs         []VIF  `json:"vifs"`
}

// VIF is one virtual interface of an instance.
type VIF struct {
	ID       int64      `json:"id"`
	UUID     string     `json:"uuid"`
	MAC      string     `json:"address"`
	Network  VIFNetwork `json:"network"`
	FixedIPs []IPInfo   `json:"fixed_ips"`
	// FixedIPv6s is the interface's IPv6 address on a dual-stack network
	// (one with cidr_v6); absent otherwise.
	FixedIPv6s []IPv6Info `json:"fixed_ipv6s,omitempty"`
}

// IPv6Info is one IPv6 address of an interface. Mode "slaac": the
// instance makes it itself from the router advertisement of the
// network's /64 and its MAC (EUI-64), so it is known in advance.
type IPv6Info struct {
	Address string `json:"address"`
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway,omitempty"`
	Mode    string `json:"mode"`
}

// VIFNetwork is what a hypervisor needs of the interface's network.
type VIFNetwork struct {
	ID              int64    `json:"id"`
	UUID            string   `json:"uuid"`
	Label           string   `json:"label"`
	Bridge          string   `json:"bridge,omitempty"`
	BridgeInterface string   `json:"bridge_interface,omitempty"`
	VLAN            int      `json:"vlan,omitempty"`
	MultiHost       bool     `json:"multi_host"`
	MTU             int      `json:"mtu,omitempty"`
	CIDR            string   `json:"cidr"`
	CIDRv6          string   `json:"cidr_v6,omitempty"`
	Host            string   `json:"host,omitempty"`
	DNS             []string `json:"dns"`
}

// IPInfo is one fixed address of an interface with what DHCP would hand out.
type IPInfo struct {
	Address     string   `json:"address"`
	Netmask     string   `json:"netmask"`
	Gateway     string   `json:"gateway,omitempty"`
	Broadcast   string   `json:"broadcast"`
	DHCPServer  string   `json:"dhcp_server,omitempty"`
	DNS         []string `json:"dns"`
	FloatingIPs []string `json:"floating_ips"`
}

// FixedIP is one fixed address and its state.
type FixedIP struct {
	Address      string `json:"address"`
	NetworkID    int64  `json:"network_id"`
	NetworkLabel string `json:"network_label"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	VIFAddress   string `json:"vif_address,omitempty"` // MAC
	Host         string `json:"host,omitempty"`
	Allocated    bool   `json:"allocated"`
	Leased       bool   `json:"leased"`
	Reserved     bool   `json:"reserved"`
	UpdatedAt    string `json:"updated_at"`
}

// FixedIPsReply carries a list of fixed IPs. From list_fixed_ips, one
// page: NextCursor, when set, is the Cursor of the request for the next.
type FixedIPsReply struct {
	FixedIPs   []FixedIP `json:"fixed_ips"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// Empty is the reply of methods that return nothing.
type Empty struct{}
