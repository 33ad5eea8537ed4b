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
	"strconv"
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
)

// ManagerMethods lists every manager method, in documentation order.
var ManagerMethods = []string{
	MethodCreateNetworks, MethodGetAllNetworks, MethodGetNetwork, MethodDeleteNetwork,
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
	CodeInvalidArgument Code = "invalid_argument" // 400: the request is malformed or a value is bad
	CodeNotFound        Code = "not_found"        // 404: a named network, instance or address does not exist
	CodeConflict        Code = "conflict"         // 409: clashes with existing state (overlap, VLAN or bridge in use)
	CodeInUse           Code = "in_use"           // 409: still used (addresses allocated on a network being deleted)
	CodeNoMoreAddresses Code = "no_more_addresses"
	CodeUnavailable     Code = "unavailable" // 503: a dependency (database) is unreachable; retry
	CodeInternal        Code = "internal"    // 500: a bug or unexpected state; see the manager's log
)

// Status returns the numeric status sent in the Nats-Service-Error-Code header.
func (c Code) Status() int {
	switch c {
	case CodeInvalidArgument:
		return 400
	case CodeNotFound:
		return 404
	case CodeConflict, CodeInUse, CodeNoMoreAddresses:
		return 409
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
	case 404:
		return CodeNotFound
	case 409:
		return CodeConflict
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
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrConflict        = &Error{Code: CodeConflict}
	ErrInUse           = &Error{Code: CodeInUse}
	ErrNoMoreAddresses = &Error{Code: CodeNoMoreAddresses}
	ErrUnavailable     = &Error{Code: CodeUnavailable}
	ErrInternal        = &Error{Code: CodeInternal}
)

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Decode parses a request body strictly: one JSON object, no unknown
// fields, no trailing data, at most MaxRequestBytes. An empty body decodes
// as {}. Errors are *Error with CodeInvalidArgument.
func Decode(data []byte, v any) error {
	if len(data) > MaxRequestBytes {
		return Errorf(CodeInvalidArgument, "request of %d bytes is larger than %d", len(data), MaxRequestBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidArgument, "request body: %s", jsonMessage(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(CodeInvalidArgument, "request body: trailing data after the JSON object")
	}
	return nil
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
	ID                int64         `json:"id"`
	UUID              string        `json:"uuid"`
	Label             string        `json:"label"`
	CIDR              string        `json:"cidr"`
	CIDRv6            string        `json:"cidr_v6,omitempty"`
	Netmask           string        `json:"netmask"`
	Gateway           string        `json:"gateway,omitempty"`
	GatewayV6         string        `json:"gateway_v6,omitempty"`
	Broadcast         string        `json:"broadcast"`
	DHCPStart         string        `json:"dhcp_start,omitempty"`
	DHCPServer        string        `json:"dhcp_server,omitempty"`
	DNS1              string        `json:"dns1,omitempty"`
	DNS2              string        `json:"dns2,omitempty"`
	VLAN              int           `json:"vlan,omitempty"`
	Bridge            string        `json:"bridge,omitempty"`
	BridgeInterface   string        `json:"bridge_interface,omitempty"`
	MultiHost         bool          `json:"multi_host"`
	ProjectID         string        `json:"project_id,omitempty"`
	Host              string        `json:"host,omitempty"`
	VPNPublicAddress  string        `json:"vpn_public_address,omitempty"`
	VPNPublicPort     int           `json:"vpn_public_port,omitempty"`
	VPNPrivateAddress string        `json:"vpn_private_address,omitempty"`
	MTU               int           `json:"mtu,omitempty"`
	EnableDHCP        bool          `json:"enable_dhcp"`
	ShareAddress      bool          `json:"share_address"`
	Priority          *int          `json:"priority,omitempty"`
	FixedIPs          FixedIPCounts `json:"fixed_ips"`
	CreatedAt         string        `json:"created_at"`
}

// FixedIPCounts summarises a network's fixed addresses.
type FixedIPCounts struct {
	Total    int `json:"total"`
	Reserved int `json:"reserved"`
	InUse    int `json:"in_use"` // held by an instance, allocated or leased
	Free     int `json:"free"`
}

// NetworksReply carries a list of networks.
type NetworksReply struct {
	Networks []Network `json:"networks"`
}

// NetworkRef names one network by id, UUID, CIDR or (when unique) label.
type NetworkRef struct {
	Network string `json:"network"`
}

// GetAllNetworksRequest filters the network list; empty means all.
type GetAllNetworksRequest struct {
	ProjectID string `json:"project_id,omitempty"`
}
