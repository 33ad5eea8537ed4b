// Package natsauth is who may do what on novanet's NATS bus: the
// identities (manager replicas, hypervisor agents, compute services,
// operators), each an nkey user of the nats-server configuration with
// publish and subscribe permissions of its own, and the directory of keys
// that "network-manager creds" keeps and turns into that configuration.
//
// Every identity subscribes to replies only under its own inbox prefix
// (natsconn.InboxPrefix of its public key); requests it serves are
// answered through allow_responses, which lets it publish once to the
// reply subject of each request it received, and nowhere else.
package natsauth

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"novanet/internal/natsconn"
	"novanet/rpc"
)

// Kind is the role of an identity.
type Kind string

// The kinds of identity.
const (
	// KindManager serves the manager's subjects in its queue group and
	// tells agents of changes.
	KindManager Kind = "manager"
	// KindHost is one hypervisor's agent, named after the host: it serves
	// its own subjects and calls the host-facing manager methods for its
	// own host only.
	KindHost Kind = "host"
	// KindCompute is a compute service: allocation and floating methods.
	KindCompute Kind = "compute"
	// KindOperator is netadm: every method of the manager and of the
	// agents, and service discovery; it serves nothing.
	KindOperator Kind = "operator"
)

// Kinds lists every kind, in documentation order.
var Kinds = []Kind{KindManager, KindHost, KindCompute, KindOperator}

// ParseKind checks a kind name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("identity kind %q: want manager, host, compute or operator", s)
}

// ComputeMethods are the manager methods a compute service may call: an
// instance's fixed addresses and interfaces, and floating IPs (not pools,
// ranges or quotas, which are the operator's).
var ComputeMethods = []string{
	rpc.MethodAllocateForInstance, rpc.MethodDeallocateForInstance, rpc.MethodAddFixedIPToInstance,
	rpc.MethodRemoveFixedIPFromInstance, rpc.MethodGetInstanceNWInfo, rpc.MethodGetFixedIPsByInstance,
	rpc.MethodGetFloatingPools, rpc.MethodAllocateFloatingIP, rpc.MethodDeallocateFloatingIP,
	rpc.MethodAssociateFloatingIP, rpc.MethodDisassociateFloatingIP, rpc.MethodGetFloatingIPsByProject,
	rpc.MethodGetFloatingIPByAddress, rpc.MethodGetFloatingIPsByFixedAddress,
}

// Identity is one NATS user.
type Identity struct {
	Kind Kind
	// Name: for a host, the host's name as its agent registers it; for the
	// others, a label (which replica, which compute cell, whose netadm).
	Name      string
	PublicKey string // the nkey user's public key, U...
}

// ID is the identity's file name stem: kind.name.
func (id Identity) ID() string { return string(id.Kind) + "." + id.Name }

// ValidateName checks an identity's name: as a host name (letters, digits,
// '_' and '-'), since a host's name is a subject token.
func ValidateName(name string) error { return rpc.ValidateHostName(name) }

// Permissions are one identity's subjects. A subscribe entry "S Q" allows
// only queue group Q on S.
type Permissions struct {
	Publish   []string
	Subscribe []string
	// AllowResponses: may publish one reply to the reply subject of each
	// request delivered to it.
	AllowResponses bool
}

// discovery returns the NATS micro discovery subjects a service named
// name subscribes to ($SRV.PING, $SRV.PING.<name>, $SRV.PING.<name>.<id>,
// and the same for INFO and STATS).
func discovery(name string) []string {
	return []string{"$SRV.*", "$SRV.*." + name, "$SRV.*." + name + ".*"}
}

// PermissionsOf returns what id may publish and subscribe to.
func PermissionsOf(id Identity) Permissions {
	inbox := natsconn.InboxPrefix(id.PublicKey) + ".>"
	switch id.Kind {
	case KindManager:
		return Permissions{
			// Notices to agents: novanet.host.<host>.<method>.
			Publish: []string{rpc.HostPrefix + ".*.*"},
			Subscribe: append([]string{
				// Only in the queue group: no manager reads a request
				// another replica answers.
				rpc.ManagerPrefix + ".> " + rpc.QueueGroup,
				inbox}, discovery(rpc.ServiceName)...),
			AllowResponses: true,
		}
	case KindHost:
		return Permissions{
			Publish: []string{rpc.HostManagerPrefix + "." + id.Name + ".*"},
			Subscribe: append([]string{
				rpc.HostPrefix + "." + id.Name + ".>",
				inbox}, discovery(HostServiceName)...),
			AllowResponses: true,
		}
	case KindCompute:
		pub := make([]string, len(ComputeMethods))
		for i, m := range ComputeMethods {
			pub[i] = rpc.Subject(m)
		}
		return Permissions{Publish: pub, Subscribe: []string{inbox}}
	case KindOperator:
		return Permissions{
			Publish:   []string{rpc.ManagerPrefix + ".>", rpc.HostPrefix + ".*.*", "$SRV.>"},
			Subscribe: []string{inbox},
		}
	}
	return Permissions{}
}

// HostServiceName is the agents' name in NATS micro discovery, as
// agent.ServiceName (a test keeps the two equal; this package does not
// import the agent).
const HostServiceName = "novanet-host"

// ResponseExpiry bounds how long after a request its reply may be sent:
// longer than any request is served (netadm host converge waits longest).
const ResponseExpiry = "10m"

// Config renders the nats-server authorization block for ids: one nkey
// user each, with its permissions. A server (or each server of a cluster)
// includes the file: "include novanet-authorization.conf". A client without a key
// of ids is refused.
func Config(ids []Identity) []byte {
	ids = append([]Identity(nil), ids...)
	sort.Slice(ids, func(i, j int) bool { return ids[i].ID() < ids[j].ID() })
	var b strings.Builder
	b.WriteString("# novanet's NATS identities, written by \"network-manager creds\": do not edit.\n")
	b.WriteString("# Include it in nats-server.conf; reload the server after a change.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, id := range ids {
		p := PermissionsOf(id)
		fmt.Fprintf(&b, "    # %s %s\n    {\n      nkey: %s\n      permissions: {\n", id.Kind, id.Name, strconv.Quote(id.PublicKey))
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", list(p.Publish))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", list(p.Subscribe))
		if p.AllowResponses {
			fmt.Fprintf(&b, "        allow_responses: { max: 1, expires: %q }\n", ResponseExpiry)
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return []byte(b.String())
}

func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
