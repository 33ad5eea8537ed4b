package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"novanet/rpc"
)

// aliveWindow: an agent not seen for three heartbeat intervals is shown as
// not alive and is not picked to serve a network.
const aliveWindow = 3 * rpc.DefaultHeartbeatSec * time.Second

// notifyTimeout bounds one manager → agent request.
const notifyTimeout = 10 * time.Second

// hostTarget is one (host, network) pair whose agent must hear of a change.
type hostTarget struct {
	host    string
	network int64
}

const hostColumns = `name, driver, version, instance, created_at, last_seen,
	last_seen > now() - make_interval(secs => $1),
	(SELECT count(*) FROM networks WHERE host = hosts.name),
	converged_at, convergence`

func scanHost(row pgx.Row) (rpc.HostInfo, error) {
	var (
		h             rpc.HostInfo
		created, seen time.Time
		convAt        *time.Time
		conv          []byte
	)
	err := row.Scan(&h.Name, &h.Driver, &h.Version, &h.Instance, &created, &seen, &h.Alive, &h.Networks, &convAt, &conv)
	h.CreatedAt, h.LastSeen = created.UTC().Format(time.RFC3339), seen.UTC().Format(time.RFC3339)
	if err == nil && convAt != nil && conv != nil {
		c := rpc.Convergence{At: convAt.UTC().Format(time.RFC3339)}
		if err := json.Unmarshal(conv, &c.ConvergenceReport); err != nil {
			return h, fmt.Errorf("host %s: convergence: %w", h.Name, err)
		}
		h.Convergence = &c
	}
	return h, err
}

// RegisterHost records an agent, or its heartbeat. A registration from
// another agent instance than the one registered is refused (conflict)
// while that one is alive: two agents with one host name would both build
// the host's networks and split its notices. Once its heartbeat is stale
// (a restarted agent, a replaced machine), the new instance takes over.
func (m *Manager) RegisterHost(ctx context.Context, req rpc.RegisterHostRequest) (rpc.HostInfo, error) {
	if err := rpc.ValidateHostName(req.Host); err != nil {
		return rpc.HostInfo{}, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: err.Error(), Field: "host"}
	}
	if _, err := ParseMode(req.Driver); err != nil {
		return rpc.HostInfo{}, badArg("driver", "driver %q: want flat, flatdhcp or vlan", truncate(req.Driver))
	}
	if len(req.Version) > 64 {
		return rpc.HostInfo{}, badArg("version", "version %q is longer than 64 bytes", truncate(req.Version))
	}
	if len(req.Instance) > 64 {
		return rpc.HostInfo{}, badArg("instance", "instance %q is longer than 64 bytes", truncate(req.Instance))
	}
	// One statement: the row is updated only when the instance is the
	// registered one, or either is unknown, or the registered one is no
	// longer alive; otherwise nothing is returned.
	h, err := scanHost(m.pool.QueryRow(ctx, `
		INSERT INTO hosts (name, driver, version, instance) VALUES ($2, $3, $4, $5)
		ON CONFLICT (name) DO UPDATE SET driver = EXCLUDED.driver, version = EXCLUDED.version,
			instance = CASE WHEN EXCLUDED.instance = '' THEN hosts.instance ELSE EXCLUDED.instance END,
			last_seen = now()
		WHERE hosts.instance = EXCLUDED.instance OR hosts.instance = '' OR EXCLUDED.instance = ''
			OR hosts.last_seen <= now() - make_interval(secs => $1)
		RETURNING `+hostColumns, aliveWindow.Seconds(), req.Host, req.Driver, req.Version, req.Instance))
	if !errors.Is(err, pgx.ErrNoRows) {
		return h, err
	}
	cur, err := scanHost(m.pool.QueryRow(ctx, `SELECT `+hostColumns+` FROM hosts WHERE name = $2`, aliveWindow.Seconds(), req.Host))
	if err != nil {
		return rpc.HostInfo{}, err
	}
	return rpc.HostInfo{}, &rpc.Error{Code: rpc.CodeConflict, Field: "host", Message: fmt.Sprintf(
		"host %s is registered by agent instance %s, alive (last seen %s); agent instance %s refused: two agents with one host name (give each hypervisor its own --host, or stop the other agent: a stopped agent's name is free %s after its last heartbeat)",
		req.Host, cur.Instance, cur.LastSeen, req.Instance, aliveWindow)}
}

// ReportConvergence keeps the summary of host's last full convergence,
// with the time it came in.
func (m *Manager) ReportConvergence(ctx context.Context, host string, req rpc.ConvergenceReport) (rpc.HostInfo, error) {
	if err := rpc.ValidateHostName(host); err != nil {
		return rpc.HostInfo{}, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: err.Error(), Field: "host"}
	}
	if len(req.Trigger) > 32 {
		return rpc.HostInfo{}, badArg("trigger", "trigger %q is longer than 32 bytes", truncate(req.Trigger))
	}
	for _, f := range []struct {
		name  string
		items []string
	}{{"changes", req.Changes}, {"errors", req.Errors}} {
		if len(f.items) > rpc.MaxReportItems {
			return rpc.HostInfo{}, badArg(f.name, "%d %s: at most %d", len(f.items), f.name, rpc.MaxReportItems)
		}
		for _, s := range f.items {
			if len(s) > rpc.MaxReportItemLen {
				return rpc.HostInfo{}, badArg(f.name, "%s entry %q is longer than %d bytes", f.name, truncate(s), rpc.MaxReportItemLen)
			}
		}
	}
	if req.InSync && len(req.Changes)+len(req.Errors) > 0 {
		return rpc.HostInfo{}, badArg("in_sync", "in_sync with %d changes and %d errors", len(req.Changes), len(req.Errors))
	}
	if req.Changes == nil {
		req.Changes = []string{}
	}
	if req.Errors == nil {
		req.Errors = []string{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return rpc.HostInfo{}, err
	}
	h, err := scanHost(m.pool.QueryRow(ctx, `
		UPDATE hosts SET converged_at = now(), convergence = $3 WHERE name = $2
		RETURNING `+hostColumns, aliveWindow.Seconds(), host, body))
	if errors.Is(err, pgx.ErrNoRows) {
		return rpc.HostInfo{}, &rpc.Error{Code: rpc.CodeNotFound, Field: "host", Message: fmt.Sprintf("host %s is not registered", host)}
	}
	return h, err
}

// ListHosts returns a page of the registered agents, in name order.
func (m *Manager) ListHosts(ctx context.Context, req rpc.ListHostsRequest) (rpc.HostsReply, error) {
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return rpc.HostsReply{}, err
	}
	if req.Cursor != "" {
		if err := rpc.ValidateHostName(req.Cursor); err != nil {
			return rpc.HostsReply{}, &rpc.Error{Code: rpc.CodeInvalidArgument, Field: "cursor",
				Message: "cursor (the next_cursor of a reply): " + err.Error()}
		}
	}
	rows, err := m.pool.Query(ctx, `SELECT `+hostColumns+` FROM hosts WHERE name > $2 ORDER BY name LIMIT $3`,
		aliveWindow.Seconds(), req.Cursor, limit+1)
	if err != nil {
		return rpc.HostsReply{}, err
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rpc.HostInfo, error) { return scanHost(r) })
	if err != nil {
		return rpc.HostsReply{}, err
	}
	r := rpc.HostsReply{Hosts: hs}
	if r.Hosts == nil {
		r.Hosts = []rpc.HostInfo{}
	}
	if len(hs) > limit {
		r.Hosts = hs[:limit]
		r.NextCursor = hs[limit-1].Name
	}
	return r, nil
}

// hostNetworksSQL selects the ids of the networks a host ($1) has: the
// single-host networks assigned to it, and every network with an instance
// address on it (held until the DHCP release, so that dnsmasq is still
// there to report it): multi-host networks it serves, and single-host
// networks served by another host, of which it only carries layer 2
// (hostLayer2Only), as nova-network plugged every compute host into the
// network's VLAN. A stopped network (stop_network) is left out by
// hostStateNetworksSQL and hostFloatingSQL. Both come from indexes on the host (networks_host_idx,
// fixed_ips_host_idx): it reads the host's rows, not the cloud's.
const hostNetworksSQL = `
	SELECT id FROM networks WHERE host = $1 AND NOT multi_host
	UNION
	SELECT f.network_id FROM fixed_ips f WHERE f.host = $1 AND f.instance_uuid IS NOT NULL`

// hostLayer2Only is true for a network of hostNetworksSQL that the host
// ($1) does not serve: single-host, served by another host (or none yet).
const hostLayer2Only = `(NOT n.multi_host AND n.host IS DISTINCT FROM $1)`

// dhcpHostsSQL is the JSON array of the DHCP hosts of network n that the
// host ($1) serves, from the addresses that WHERE picks. The MAC is looked
// up by key for each address: however many the planner guesses a network
// holds, it never joins every interface of the cloud.
func dhcpHostsSQL(where string) string {
	return `(SELECT json_agg(json_build_object('mac', (SELECT v.address::text FROM virtual_interfaces v
			WHERE v.id = f.virtual_interface_id), 'address', host(f.address), 'hostname', f.instance_uuid::text)
			ORDER BY f.address)
		FROM fixed_ips f WHERE f.virtual_interface_id IS NOT NULL AND ` + where + `)`
}

// allocatedOnHost is f.allocated (a NOT NULL column) in words the planner
// cannot match to fixed_ips_allocated_idx: a host's addresses on a
// multi-host network are read from fixed_ips_host_idx, not by walking
// every allocated address of the network (which it would do when its
// statistics are stale and both look like one row).
const allocatedOnHost = `f.allocated IS NOT FALSE`

// hostStateNetworksSQL lists the networks of a host ($1), or only network
// $2 when it is not 0, with their DHCP hosts: every allocated address of a
// single-host network it serves (fixed_ips_allocated_idx), the host's own
// of a multi-host network (fixed_ips_host_idx; allocation sets
// instance_uuid with allocated), none of a network it only carries at
// layer 2.
var hostStateNetworksSQL = `
	SELECT n.id, n.label, n.cidr::text, host(n.netmask), coalesce(host(n.gateway), ''),
		coalesce(n.cidr_v6::text, ''), coalesce(host(n.gateway_v6), ''), host(n.broadcast),
		coalesce(host(n.dhcp_start), ''), array_remove(ARRAY[host(n.dns1), host(n.dns2)], NULL),
		coalesce(n.vlan, 0), coalesce(n.bridge, ''), coalesce(n.bridge_interface, ''), n.multi_host,
		coalesce(n.mtu, 0), n.enable_dhcp, coalesce(host(n.vpn_public_address), ''),
		coalesce(n.vpn_public_port, 0), coalesce(host(n.vpn_private_address), ''),
		coalesce(CASE WHEN ` + hostLayer2Only + ` THEN NULL
			WHEN n.multi_host
			THEN ` + dhcpHostsSQL(`f.host = $1 AND f.network_id = n.id AND f.instance_uuid IS NOT NULL AND `+allocatedOnHost) + `
			ELSE ` + dhcpHostsSQL(`f.network_id = n.id AND f.allocated`) + ` END, '[]'),
		` + hostLayer2Only + `
	FROM networks n
	WHERE n.id IN (` + hostNetworksSQL + `) AND NOT n.stopped AND ($2 = 0 OR n.id = $2)
	ORDER BY n.id`

// hostFloatingSQL lists the floating IPs a host ($1) NATs: those of the
// addresses it serves, decided now rather than at association (a network
// given a host after the association still gets its floating IPs). A
// floating IP is only associated with an allocated address, so both
// halves start from the host's allocated addresses and look each one's
// floating IP up by key (OFFSET 0 keeps the planner from joining every
// floating IP of the cloud instead).
var hostFloatingSQL = `
	SELECT host(a), fixed, iface, net FROM (
		SELECT fl.address AS a, host(f.address) AS fixed, fl.iface, f.network_id AS net
		FROM networks n
		CROSS JOIN LATERAL (SELECT f.id, f.address, f.network_id FROM fixed_ips f
			WHERE f.network_id = n.id AND f.allocated OFFSET 0) f
		CROSS JOIN LATERAL (SELECT fl.address, coalesce(fl.interface, '') AS iface FROM floating_ips fl
			WHERE fl.fixed_ip_id = f.id OFFSET 0) fl
		WHERE n.host = $1 AND NOT n.multi_host AND NOT n.stopped
		UNION ALL
		SELECT fl.address, host(f.address), fl.iface, f.network_id
		FROM fixed_ips f JOIN networks n ON n.id = f.network_id
		CROSS JOIN LATERAL (SELECT fl.address, coalesce(fl.interface, '') AS iface FROM floating_ips fl
			WHERE fl.fixed_ip_id = f.id OFFSET 0) fl
		WHERE f.host = $1 AND f.instance_uuid IS NOT NULL AND ` + allocatedOnHost + ` AND n.multi_host AND NOT n.stopped) x
	ORDER BY a`

// hostStateSettings is run first in HostState's transaction. The planner
// costs the DHCP hosts of every network a host has an address on as if it
// served them all (it cannot know which it only carries at layer 2): on a
// large cloud the estimate passes jit_above_cost, and compiling would
// cost more than the few hundred rows the statement reads.
const hostStateSettings = `SET LOCAL jit = off`

// HostState returns what a host should have. With networkID set, only that
// network (absent when the host should not have it).
func (m *Manager) HostState(ctx context.Context, req rpc.HostStateRequest) (rpc.HostState, error) {
	if err := rpc.ValidateHostName(req.Host); err != nil {
		return rpc.HostState{}, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: err.Error(), Field: "host"}
	}
	st := rpc.HostState{Host: req.Host, Mode: string(m.cfg.Mode), Networks: []rpc.HostNetwork{},
		FloatingIPs: []rpc.HostFloatingIP{}, Partial: req.NetworkID != 0}
	err := pgx.BeginTxFunc(ctx, m.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, hostStateSettings); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, hostStateNetworksSQL, req.Host, req.NetworkID)
		if err != nil {
			return err
		}
		var (
			n     rpc.HostNetwork
			hosts []byte
		)
		if _, err := pgx.ForEachRow(rows, []any{&n.ID, &n.Label, &n.CIDR, &n.Netmask, &n.Gateway, &n.CIDRv6, &n.GatewayV6, &n.Broadcast,
			&n.DHCPStart, &n.DNS, &n.VLAN, &n.Bridge, &n.BridgeInterface, &n.MultiHost, &n.MTU, &n.EnableDHCP,
			&n.VPNPublicAddress, &n.VPNPublicPort, &n.VPNPrivateAddress, &hosts, &n.Layer2Only}, func() error {
			if err := json.Unmarshal(hosts, &n.DHCPHosts); err != nil {
				return err
			}
			st.Networks = append(st.Networks, n)
			n = rpc.HostNetwork{}
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, hostFloatingSQL, req.Host)
		if err != nil {
			return err
		}
		var fl rpc.HostFloatingIP
		_, err = pgx.ForEachRow(rows, []any{&fl.Address, &fl.FixedAddress, &fl.Interface, &fl.NetworkID}, func() error {
			st.FloatingIPs = append(st.FloatingIPs, fl)
			return nil
		})
		return err
	})
	return st, err
}

// assignHostsAndTargets gives each single-host network among ids that has
// no host yet the host that asked (when it runs an agent), else the live
// agent serving the fewest networks, as nova-network's set_network_host
// did, and returns the agents that serve the instance's addresses: for
// multi-host networks the address's own host, else the network's host. A
// network that no agent can serve yet keeps no host. One statement: it is
// on the allocation path. It writes (and so locks) a network row only when
// it gives the network a host: a network that has one, or for which no
// host can be chosen, is only read, and the host is only looked for when
// some network needs one.
func assignHostsAndTargets(ctx context.Context, tx pgx.Tx, ids []int64, preferred, inst string) ([]hostTarget, error) {
	rows, err := tx.Query(ctx, assignHostsSQL, ids, preferred, aliveWindow.Seconds(), inst)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanTarget)
}

func scanTarget(r pgx.CollectableRow) (hostTarget, error) {
	var t hostTarget
	err := r.Scan(&t.host, &t.network)
	return t, err
}

const assignHostsSQL = `
		WITH need AS (
			SELECT id FROM networks WHERE id = ANY($1) AND host IS NULL AND NOT multi_host),
		pick AS (
			SELECT coalesce(
				(SELECT name FROM hosts WHERE name = $2),
				(SELECT h.name FROM hosts h WHERE h.last_seen > now() - make_interval(secs => $3)
					ORDER BY (SELECT count(*) FROM networks x WHERE x.host = h.name), h.name LIMIT 1)) AS host
			WHERE EXISTS (SELECT 1 FROM need)),
		a AS (
			UPDATE networks n SET host = pick.host, updated_at = now()
			FROM need, pick WHERE n.id = need.id AND pick.host IS NOT NULL AND n.host IS NULL
			RETURNING n.id, n.host)
		SELECT DISTINCT t.host, t.id FROM (
			SELECT CASE WHEN n.multi_host THEN f.host ELSE coalesce(a.host, n.host) END AS host, n.id
			FROM fixed_ips f JOIN networks n ON n.id = f.network_id LEFT JOIN a ON a.id = n.id
			WHERE f.instance_uuid = $4
			-- The instance's own host carries the layer 2 of a
			-- single-host network served elsewhere.
			UNION ALL
			SELECT f.host, n.id FROM fixed_ips f JOIN networks n ON n.id = f.network_id
			WHERE f.instance_uuid = $4 AND NOT n.multi_host) t
		WHERE t.host IS NOT NULL`

// instanceTargets returns the agents that serve an instance's addresses.
func instanceTargets(ctx context.Context, tx pgx.Tx, inst string) ([]hostTarget, error) {
	return assignHostsAndTargets(ctx, tx, nil, "", inst)
}

// notify tells the agents of targets, in the background, that a network
// changed: they re-read its desired state and converge. A host that is down
// or slow misses nothing: it converges when it starts and periodically.
// Notices are coalesced per (host, network) (notices.go).
func (m *Manager) notify(method string, targets []hostTarget) {
	if m.notices == nil {
		return
	}
	for _, t := range targets {
		if rpc.ValidateHostName(t.host) == nil {
			m.notices.add(method, t)
		}
	}
}

func (m *Manager) handleListHosts(ctx context.Context, data []byte) (any, error) {
	var req rpc.ListHostsRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	return m.ListHosts(ctx, req)
}

// hostHandlerFunc serves a host-facing method for the host named in the
// subject.
type hostHandlerFunc func(ctx context.Context, host string, data []byte) (any, error)

func (m *Manager) hostHandlers() map[string]hostHandlerFunc {
	return map[string]hostHandlerFunc{
		rpc.MethodRegisterHost: m.handleRegisterHost,
		rpc.MethodGetHostState: m.handleGetHostState,
		rpc.MethodReportConvergence: func(ctx context.Context, host string, data []byte) (any, error) {
			var req rpc.ConvergenceReport
			if err := rpc.Decode(data, &req); err != nil {
				return nil, err
			}
			return m.ReportConvergence(ctx, host, req)
		},
		rpc.MethodLeaseFixedIP: func(ctx context.Context, host string, data []byte) (any, error) {
			return m.handleHostAddress(ctx, host, data, m.LeaseFixedIP)
		},
		rpc.MethodReleaseFixedIP: func(ctx context.Context, host string, data []byte) (any, error) {
			return m.handleHostAddress(ctx, host, data, m.ReleaseFixedIP)
		},
	}
}

// addHostEndpoints serves the host-facing methods on
// novanet.manager.host.*.<method>: NATS permissions let an agent publish
// only under its own host, so the subject, not the body, says who speaks.
func (m *Manager) addHostEndpoints(ctx context.Context, nc *nats.Conn, g micro.Group) error {
	hs := m.hostHandlers()
	for _, name := range rpc.HostManagerMethods {
		h, ok := hs[name]
		if !ok {
			return fmt.Errorf("no handler for host method %s", name)
		}
		if err := g.AddEndpoint("host_"+name, m.dispatchHost(ctx, nc, name, h),
			micro.WithEndpointSubject(rpc.HostMethod("*", name))); err != nil {
			return fmt.Errorf("add endpoint host.*.%s: %w", name, err)
		}
	}
	return nil
}

// dispatchHost hands a host-facing request to dispatch with the host
// taken from its subject.
func (m *Manager) dispatchHost(ctx context.Context, nc *nats.Conn, method string, h hostHandlerFunc) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		// Read now: the request must not be used once Handle returns.
		subject := req.Subject()
		host := rpc.HostFromManagerSubject(subject)
		m.dispatch(ctx, nc, method, func(ctx context.Context, data []byte) (any, error) {
			if err := rpc.ValidateHostName(host); err != nil {
				return nil, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: "subject " + truncate(subject) + ": " + err.Error()}
			}
			return h(ctx, host, data)
		}).Handle(req)
	})
}

// sameHost checks that a body's host, when it names one, is the subject's.
func sameHost(subject, body string) error {
	if body != "" && body != subject {
		return badArg("host", "host %q in the request is not %q, the host of its subject", truncate(body), subject)
	}
	return nil
}

func (m *Manager) handleRegisterHost(ctx context.Context, host string, data []byte) (any, error) {
	var req rpc.RegisterHostRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := sameHost(host, req.Host); err != nil {
		return nil, err
	}
	req.Host = host
	return m.RegisterHost(ctx, req)
}

func (m *Manager) handleGetHostState(ctx context.Context, host string, data []byte) (any, error) {
	var req rpc.HostStateRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := sameHost(host, req.Host); err != nil {
		return nil, err
	}
	if req.NetworkID < 0 {
		return nil, badArg("network_id", "network_id %d is negative", req.NetworkID)
	}
	req.Host = host
	return m.HostState(ctx, req)
}

// handleHostAddress serves lease_fixed_ip and release_fixed_ip from an
// agent: the address must not belong to what another host serves (the
// network's host, or for a multi-host network the address's own host), so
// that an agent cannot lease or free another host's addresses.
func (m *Manager) handleHostAddress(ctx context.Context, host string, data []byte,
	f func(context.Context, rpc.AddressRequest) (rpc.FixedIP, error)) (any, error) {
	var req rpc.AddressRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := sameHost(host, req.Host); err != nil {
		return nil, err
	}
	req.Host = host
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return nil, err
	}
	var other *string
	err = m.pool.QueryRow(ctx, `
		SELECT CASE WHEN n.multi_host THEN f.host ELSE n.host END
		FROM fixed_ips f JOIN networks n ON n.id = f.network_id WHERE f.address = $1`, addr).Scan(&other)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, rpc.Errorf(rpc.CodeNotFound, "fixed address %s not found", addr)
	case err != nil:
		return nil, err
	case other != nil && *other != host:
		m.log.Warn("lease event for another host's address refused", zap.String("host", host),
			zap.Stringer("address", addr), zap.String("served_by", *other))
		return nil, badArg("address", "fixed address %s is served by host %s, not %s", addr, *other, host)
	}
	return f(ctx, req)
}
