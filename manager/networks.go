package manager

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"novanet/netcalc"
	"novanet/rpc"
)

func (m *Manager) handleCreateNetworks(ctx context.Context, data []byte) (any, error) {
	var req rpc.CreateNetworksRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	nets, err := m.CreateNetworks(ctx, req)
	if err != nil {
		return nil, err
	}
	return rpc.NetworksReply{Networks: nets}, nil
}

func (m *Manager) handleGetAllNetworks(ctx context.Context, data []byte) (any, error) {
	var req rpc.GetAllNetworksRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	var after *netip.Prefix
	if req.Cursor != "" {
		p, err := netip.ParsePrefix(req.Cursor)
		if err != nil || !p.Addr().Is4() {
			return nil, badArg("cursor", "cursor %q is not an IPv4 CIDR (the next_cursor of a reply)", truncate(req.Cursor))
		}
		after = &p
	}
	nets, err := m.listNetworks(ctx, m.pool, `WHERE ($1 = '' OR n.project_id = $1) AND ($2::cidr IS NULL OR n.cidr > $2)`,
		"LIMIT $3", req.ProjectID, after, limit+1)
	if err != nil {
		return nil, err
	}
	r := rpc.NetworksReply{Networks: nets}
	if len(nets) > limit {
		r.Networks = nets[:limit]
		r.NextCursor = nets[limit-1].CIDR
	}
	return r, nil
}

func (m *Manager) handleGetNetwork(ctx context.Context, data []byte) (any, error) {
	var req rpc.NetworkRef
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	return m.GetNetwork(ctx, req.Network)
}

func (m *Manager) handleDeleteNetwork(ctx context.Context, data []byte) (any, error) {
	var req rpc.NetworkRef
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	n, err := m.DeleteNetwork(ctx, req.Network)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// jsonField maps netcalc's field names to create_networks request fields.
var jsonField = map[string]string{
	"label": "label", "fixed range": "cidr", "number of networks": "num_networks",
	"network size": "network_size", "vlan start": "vlan_start", "vpn start": "vpn_start",
	"bridge": "bridge", "bridge interface": "bridge_interface", "gateway": "gateway",
	"IPv6 range": "cidr_v6", "IPv6 gateway": "gateway_v6", "dns1": "dns1", "dns2": "dns2",
	"dhcp server": "dhcp_server", "mtu": "mtu", "vpn public address": "vpn_public_address",
}

// invalid turns a netcalc validation error into invalid_argument naming
// the request field.
func invalid(err error) error {
	var fe *netcalc.FieldError
	if errors.As(err, &fe) {
		field, ok := jsonField[fe.Field]
		if !ok {
			field = fe.Field
		}
		return &rpc.Error{Code: rpc.CodeInvalidArgument, Message: fe.Error(), Field: field}
	}
	return err
}

// CreateNetworks creates networks as nova-manage network create did, all
// or nothing: every check runs before anything is written, and the writes
// share one transaction.
func (m *Manager) CreateNetworks(ctx context.Context, req rpc.CreateNetworksRequest) ([]rpc.Network, error) {
	split := netcalc.Request{
		Label: req.Label, CIDR: req.CIDR, NumNetworks: req.NumNetworks, NetworkSize: req.NetworkSize,
		VLAN: m.cfg.Mode == ModeVLAN, VLANStart: req.VLANStart, VPNStart: req.VPNStart,
		Bridge: req.Bridge, BridgeInterface: req.BridgeInterface, Gateway: req.Gateway,
		CIDRv6: req.CIDRv6, GatewayV6: req.GatewayV6, DNS1: req.DNS1, DNS2: req.DNS2,
		DHCPServer: req.DHCPServer, MTU: req.MTU,
	}
	if req.CIDR == "" {
		return nil, &rpc.Error{Code: rpc.CodeInvalidArgument, Message: "fixed range (cidr) is required", Field: "cidr"}
	}
	if req.VLANStart != 0 && m.cfg.Mode != ModeVLAN {
		return nil, &rpc.Error{Code: rpc.CodeInvalidArgument, Field: "vlan_start",
			Message: fmt.Sprintf("vlan start %d given, but the manager runs in %s mode, not vlan", req.VLANStart, m.cfg.Mode)}
	}
	nets, err := netcalc.Split(split)
	if err != nil {
		return nil, invalid(err)
	}
	var vpnPublic *netip.Addr
	if req.VPNPublicAddress != "" && m.cfg.Mode != ModeVLAN {
		return nil, &rpc.Error{Code: rpc.CodeInvalidArgument, Field: "vpn_public_address",
			Message: fmt.Sprintf("vpn public address %s given, but the manager runs in %s mode, not vlan", req.VPNPublicAddress, m.cfg.Mode)}
	}
	if req.VPNPublicAddress != "" {
		a, err := netcalc.ParseAddr("vpn public address", req.VPNPublicAddress, 4)
		if err != nil {
			return nil, invalid(err)
		}
		if err := netcalc.CheckHostAddr("vpn public address", a); err != nil {
			return nil, invalid(err)
		}
		vpnPublic = &a
	}
	if len(req.ProjectID) > 255 {
		return nil, &rpc.Error{Code: rpc.CodeInvalidArgument, Field: "project_id", Message: "project id longer than 255 bytes"}
	}
	enableDHCP := req.EnableDHCP == nil || *req.EnableDHCP

	start := time.Now()
	var (
		created  rpc.NetworksReply
		replayed bool
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		// A retry with the request id of a create that committed gets its
		// reply (requests.go), not a conflict with its own networks.
		if replayed, err = m.claimTx(ctx, tx, &created); replayed || err != nil {
			return err
		}
		// Creates are rare: serialise them so the checks below see every
		// committed network. Reads are not blocked.
		if _, err := tx.Exec(ctx, "LOCK TABLE networks IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		if err := checkClashes(ctx, tx, nets, vpnPublic); err != nil {
			return err
		}
		ids, err := insertNetworks(ctx, tx, nets, req, vpnPublic, enableDHCP)
		if err != nil {
			return err
		}
		if err := insertFixedIPs(ctx, tx, ids, nets); err != nil {
			return err
		}
		// The reply is read in the transaction: once it commits, the
		// caller hears of success, never of a read that failed after.
		if created.Networks, err = m.listNetworks(ctx, tx, "WHERE n.id = ANY($1)", "", ids); err != nil {
			return err
		}
		return storeTx(ctx, tx, created)
	})
	if err != nil || replayed {
		return created.Networks, err
	}
	total := 0
	for _, n := range nets {
		total += n.Size()
	}
	m.log.Info("networks created", zap.Int("networks", len(nets)), zap.Int("addresses", total),
		zap.String("first", nets[0].CIDR.String()), zap.Duration("took", time.Since(start)))
	m.analyze(ctx, "networks", "fixed_ips", "network_counts")
	return created.Networks, nil
}

// analyzeTimeout bounds the ANALYZE after a bulk write.
const analyzeTimeout = 30 * time.Second

// analyze refreshes the planner's statistics of tables after a bulk write,
// so that the next plans are made from what they now hold. Its failure
// is logged, not returned: the write has committed.
func (m *Manager) analyze(ctx context.Context, tables ...string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), analyzeTimeout)
	defer cancel()
	// As the schema's owner: the runtime role may not ANALYZE
	// (db/migrations/0006_analyze.up.sql).
	if _, err := m.pool.Exec(actx, "SELECT novanet_analyze(VARIADIC $1::text[])", tables); err != nil {
		m.log.Warn("analyze after bulk write", zap.Strings("tables", tables), zap.Error(err))
	}
}

// checkClashes refuses networks that overlap existing networks or
// floating ranges, or reuse a VLAN, a VLAN network's bridge or a VPN port.
func checkClashes(ctx context.Context, tx pgx.Tx, nets []netcalc.Network, vpnPublic *netip.Addr) error {
	cidrs := make([]netip.Prefix, 0, len(nets))
	var v6 []netip.Prefix
	var vlans, ports []int
	var bridges []string
	for _, n := range nets {
		cidrs = append(cidrs, n.CIDR)
		if n.CIDRv6.IsValid() {
			v6 = append(v6, n.CIDRv6)
		}
		if n.VLAN != 0 {
			vlans = append(vlans, n.VLAN)
			ports = append(ports, n.VPNPublicPort)
		}
		bridges = append(bridges, n.Bridge)
	}
	var cidr, label, id string
	err := tx.QueryRow(ctx, `SELECT c::text, n.label, n.uuid::text FROM networks n, unnest($1::cidr[]) c
		WHERE n.cidr && c ORDER BY c LIMIT 1`, cidrs).Scan(&cidr, &label, &id)
	if err == nil {
		var other string
		_ = tx.QueryRow(ctx, `SELECT cidr::text FROM networks WHERE uuid = $1`, id).Scan(&other)
		return rpc.Errorf(rpc.CodeConflict, "%s overlaps existing network %s (%s, %s)", cidr, label, other, id)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if len(v6) > 0 {
		err := tx.QueryRow(ctx, `SELECT c::text, n.label, n.cidr_v6::text FROM networks n, unnest($1::cidr[]) c
			WHERE n.cidr_v6 && c ORDER BY c LIMIT 1`, v6).Scan(&cidr, &label, &id)
		if err == nil {
			return rpc.Errorf(rpc.CodeConflict, "IPv6 %s overlaps existing network %s (%s)", cidr, label, id)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	err = tx.QueryRow(ctx, `SELECT c::text, r.pool, r.cidr::text FROM floating_ranges r, unnest($1::cidr[]) c
		WHERE r.cidr && c ORDER BY c LIMIT 1`, cidrs).Scan(&cidr, &label, &id)
	if err == nil {
		return rpc.Errorf(rpc.CodeConflict, "%s overlaps floating range %s of pool %s", cidr, id, label)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if len(vlans) > 0 {
		var vlan int
		err := tx.QueryRow(ctx, `SELECT vlan, label, cidr::text FROM networks WHERE vlan = ANY($1) ORDER BY vlan LIMIT 1`,
			vlans).Scan(&vlan, &label, &cidr)
		if err == nil {
			return rpc.Errorf(rpc.CodeConflict, "VLAN %d is already used by network %s (%s)", vlan, label, cidr)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var port int
		err = tx.QueryRow(ctx, `SELECT vpn_public_port, label, cidr::text FROM networks
			WHERE vpn_public_port = ANY($1) AND coalesce(vpn_public_address, '0.0.0.0') = coalesce($2, '0.0.0.0'::inet)
			ORDER BY 1 LIMIT 1`, ports, vpnPublic).Scan(&port, &label, &cidr)
		if err == nil {
			return rpc.Errorf(rpc.CodeConflict, "VPN port %d is already used by network %s (%s)", port, label, cidr)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	// A VLAN network's bridge is its own; a flat bridge may be shared by
	// flat networks but not with a VLAN network.
	var bridge string
	err = tx.QueryRow(ctx, `SELECT bridge, label, cidr::text FROM networks
		WHERE bridge = ANY($1) AND (vlan IS NOT NULL OR $2) ORDER BY bridge LIMIT 1`,
		bridges, len(vlans) > 0).Scan(&bridge, &label, &cidr)
	if err == nil {
		return rpc.Errorf(rpc.CodeConflict, "bridge %s is already used by network %s (%s)", bridge, label, cidr)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return nil
}

func opt[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

func optAddr(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a
}

func optPrefix(p netip.Prefix) any {
	if !p.IsValid() {
		return nil
	}
	return p
}

// insertNetworks writes the networks with one statement and returns their
// ids in order.
func insertNetworks(ctx context.Context, tx pgx.Tx, nets []netcalc.Network, req rpc.CreateNetworksRequest,
	vpnPublic *netip.Addr, enableDHCP bool) ([]int64, error) {
	n := len(nets)
	cols := struct {
		label, bridge                          []string
		cidr, cidrV6                           []any
		netmask, gateway, gatewayV6, broadcast []any
		dhcpStart, dhcpServer, vpnPrivate      []any
		vlan, vpnPort                          []any
	}{}
	for _, x := range nets {
		cols.label = append(cols.label, x.Label)
		cols.bridge = append(cols.bridge, x.Bridge)
		cols.cidr = append(cols.cidr, x.CIDR)
		cols.cidrV6 = append(cols.cidrV6, optPrefix(x.CIDRv6))
		cols.netmask = append(cols.netmask, x.Netmask)
		cols.gateway = append(cols.gateway, x.Gateway)
		cols.gatewayV6 = append(cols.gatewayV6, optAddr(x.GatewayV6))
		cols.broadcast = append(cols.broadcast, x.Broadcast)
		cols.dhcpStart = append(cols.dhcpStart, x.DHCPStart)
		cols.dhcpServer = append(cols.dhcpServer, x.DHCPServer)
		cols.vpnPrivate = append(cols.vpnPrivate, optAddr(x.VPNPrivateAddress))
		cols.vlan = append(cols.vlan, opt(x.VLAN))
		cols.vpnPort = append(cols.vpnPort, opt(x.VPNPublicPort))
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO networks (label, bridge, cidr, cidr_v6, netmask, gateway, gateway_v6, broadcast,
			dhcp_start, dhcp_server, vpn_private_address, vlan, vpn_public_port,
			dns1, dns2, bridge_interface, multi_host, project_id, vpn_public_address, mtu,
			enable_dhcp, share_address, priority)
		SELECT u.label, u.bridge, u.cidr, u.cidr_v6, u.netmask, u.gateway, u.gateway_v6, u.broadcast,
			u.dhcp_start, u.dhcp_server, u.vpn_private, u.vlan, u.vpn_port,
			$14, $15, $16, $17, $18, $19, $20, $21, $22, $23
		FROM unnest($1::text[], $2::text[], $3::cidr[], $4::cidr[], $5::inet[], $6::inet[], $7::inet[],
			$8::inet[], $9::inet[], $10::inet[], $11::inet[], $12::int[], $13::int[])
			WITH ORDINALITY AS u(label, bridge, cidr, cidr_v6, netmask, gateway, gateway_v6, broadcast,
				dhcp_start, dhcp_server, vpn_private, vlan, vpn_port, ord)
		ORDER BY u.ord
		RETURNING id`,
		cols.label, cols.bridge, cols.cidr, cols.cidrV6, cols.netmask, cols.gateway, cols.gatewayV6,
		cols.broadcast, cols.dhcpStart, cols.dhcpServer, cols.vpnPrivate, cols.vlan, cols.vpnPort,
		opt(req.DNS1), opt(req.DNS2), opt(req.BridgeInterface), req.MultiHost, opt(req.ProjectID),
		vpnPublic, opt(req.MTU), enableDHCP, req.ShareAddress, req.Priority)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(ids) != n {
		return nil, fmt.Errorf("inserted %d networks, want %d", len(ids), n)
	}
	return ids, nil
}

// insertFixedIPs writes every address of the networks in one statement,
// generated by the server, marking the reserved ones.
func insertFixedIPs(ctx context.Context, tx pgx.Tx, ids []int64, nets []netcalc.Network) error {
	var reserved []netip.Addr
	for _, n := range nets {
		reserved = append(reserved, n.Reserved...)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO fixed_ips (network_id, address, reserved)
		SELECT n.id, a.addr, r.addr IS NOT NULL
		FROM networks n
		CROSS JOIN LATERAL (
			SELECT host(n.cidr)::inet + g AS addr
			FROM generate_series(0::bigint, (1::bigint << (32 - masklen(n.cidr))) - 1) g) a
		LEFT JOIN unnest($2::inet[]) r(addr) ON r.addr = a.addr
		WHERE n.id = ANY($1)`, ids, reserved)
	if err != nil {
		return err
	}
	want := 0
	for _, n := range nets {
		want += n.Size()
	}
	if tag.RowsAffected() != int64(want) {
		return fmt.Errorf("inserted %d fixed IPs, want %d", tag.RowsAffected(), want)
	}
	return nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const networkColumns = `n.id, n.uuid::text, n.label, n.cidr::text, coalesce(n.cidr_v6::text, ''),
	host(n.netmask), coalesce(host(n.gateway), ''), coalesce(host(n.gateway_v6), ''), host(n.broadcast),
	coalesce(host(n.dhcp_start), ''), coalesce(host(n.dhcp_server), ''), coalesce(host(n.dns1), ''),
	coalesce(host(n.dns2), ''), coalesce(n.vlan, 0), coalesce(n.bridge, ''), coalesce(n.bridge_interface, ''),
	n.multi_host, coalesce(n.project_id, ''), coalesce(n.host, ''), coalesce(host(n.vpn_public_address), ''),
	coalesce(n.vpn_public_port, 0), coalesce(host(n.vpn_private_address), ''), coalesce(n.mtu, 0),
	n.enable_dhcp, n.share_address, n.priority, n.stopped, n.created_at,
	f.total, f.reserved, f.in_use`

// fixedIPCounts reads a network's counts from network_counts, which the
// triggers of migration 3 keep in the statements that change fixed_ips: no
// scan of fixed_ips, however many addresses the network has.
const fixedIPCounts = `LEFT JOIN LATERAL (
		SELECT coalesce(sum(c.total), 0)::bigint AS total, coalesce(sum(c.reserved), 0)::bigint AS reserved,
			coalesce(sum(c.in_use), 0)::bigint AS in_use
		FROM network_counts c WHERE c.network_id = n.id) f ON true`

func scanNetwork(row pgx.Row) (rpc.Network, error) {
	var n rpc.Network
	var created time.Time
	err := row.Scan(&n.ID, &n.UUID, &n.Label, &n.CIDR, &n.CIDRv6, &n.Netmask, &n.Gateway, &n.GatewayV6,
		&n.Broadcast, &n.DHCPStart, &n.DHCPServer, &n.DNS1, &n.DNS2, &n.VLAN, &n.Bridge, &n.BridgeInterface,
		&n.MultiHost, &n.ProjectID, &n.Host, &n.VPNPublicAddress, &n.VPNPublicPort, &n.VPNPrivateAddress,
		&n.MTU, &n.EnableDHCP, &n.ShareAddress, &n.Priority, &n.Stopped, &created,
		&n.FixedIPs.Total, &n.FixedIPs.Reserved, &n.FixedIPs.InUse)
	n.FixedIPs.Free = n.FixedIPs.Total - n.FixedIPs.Reserved - n.FixedIPs.InUse
	n.CreatedAt = created.UTC().Format(time.RFC3339)
	return n, err
}

func listNetworksSQL(where string) string {
	return "SELECT " + networkColumns + " FROM networks n " + fixedIPCounts + " " + where + " ORDER BY n.cidr"
}

// listNetworks lists the networks that where picks, in CIDR order, then
// tail (a LIMIT, say).
func (m *Manager) listNetworks(ctx context.Context, q querier, where, tail string, args ...any) ([]rpc.Network, error) {
	rows, err := q.Query(ctx, listNetworksSQL(where)+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	nets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rpc.Network, error) { return scanNetwork(r) })
	if err != nil {
		return nil, err
	}
	if nets == nil {
		nets = []rpc.Network{}
	}
	return nets, nil
}

// resolveNetwork finds one network by id, UUID, CIDR or unique label and
// returns its id.
func resolveNetwork(ctx context.Context, q querier, ref string) (int64, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return 0, &rpc.Error{Code: rpc.CodeInvalidArgument, Field: "network", Message: "network is required (id, UUID, CIDR or label)"}
	}
	var (
		sql string
		arg any
	)
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		sql, arg = "SELECT id FROM networks WHERE id = $1", id
	} else if u, err := uuid.Parse(ref); err == nil {
		sql, arg = "SELECT id FROM networks WHERE uuid = $1", u.String()
	} else if p, err := netip.ParsePrefix(ref); err == nil {
		sql, arg = "SELECT id FROM networks WHERE cidr = $1 OR cidr_v6 = $1", p.Masked()
	} else {
		sql, arg = "SELECT id FROM networks WHERE label = $1", ref
	}
	rows, err := q.Query(ctx, sql+" LIMIT 2", arg)
	if err != nil {
		return 0, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	switch len(ids) {
	case 0:
		return 0, rpc.Errorf(rpc.CodeNotFound, "network %q not found", ref)
	case 1:
		return ids[0], nil
	default:
		return 0, rpc.Errorf(rpc.CodeInvalidArgument, "network %q is ambiguous: more than one network has that label; use its id or UUID", ref)
	}
}

// GetNetwork returns one network.
func (m *Manager) GetNetwork(ctx context.Context, ref string) (rpc.Network, error) {
	id, err := resolveNetwork(ctx, m.pool, ref)
	if err != nil {
		return rpc.Network{}, err
	}
	nets, err := m.listNetworks(ctx, m.pool, "WHERE n.id = $1", "", id)
	if err != nil {
		return rpc.Network{}, err
	}
	if len(nets) == 0 {
		return rpc.Network{}, rpc.Errorf(rpc.CodeNotFound, "network %q not found", ref)
	}
	return nets[0], nil
}

// maxListedInUse bounds how many in-use addresses a refusal names.
const maxListedInUse = 10

// DeleteNetwork deletes a network and its fixed IPs, refusing while any
// address is held by an instance, allocated or leased, or a virtual
// interface is on it.
func (m *Manager) DeleteNetwork(ctx context.Context, ref string) (rpc.Network, error) {
	var (
		deleted  rpc.Network
		replayed bool
	)
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		var err error
		if replayed, err = m.claimTx(ctx, tx, &deleted); replayed || err != nil {
			return err
		}
		id, err := resolveNetwork(ctx, tx, ref)
		if err != nil {
			return err
		}
		// Lock the network row: allocations take it FOR SHARE.
		if _, err := tx.Exec(ctx, "SELECT 1 FROM networks WHERE id = $1 FOR UPDATE", id); err != nil {
			return err
		}
		nets, err := m.listNetworks(ctx, tx, "WHERE n.id = $1", "", id)
		if err != nil {
			return err
		}
		if len(nets) == 0 {
			return rpc.Errorf(rpc.CodeNotFound, "network %q not found", ref)
		}
		deleted = nets[0]
		// count(*) OVER () counts every in-use address before LIMIT.
		rows, err := tx.Query(ctx, `
			SELECT host(address) || coalesce(' (instance ' || instance_uuid::text || ')', ''), count(*) OVER ()
			FROM fixed_ips WHERE network_id = $1 AND NOT reserved
				AND (instance_uuid IS NOT NULL OR allocated OR leased)
			ORDER BY address LIMIT $2`, id, maxListedInUse)
		if err != nil {
			return err
		}
		var (
			used  []string
			addr  string
			count int
		)
		if _, err := pgx.ForEachRow(rows, []any{&addr, &count}, func() error {
			used = append(used, addr)
			return nil
		}); err != nil {
			return err
		}
		if count > 0 {
			more := ""
			if count > len(used) {
				more = fmt.Sprintf(" and %d more", count-len(used))
			}
			return rpc.Errorf(rpc.CodeInUse, "network %s (%s) has %d addresses in use: %s%s; deallocate them first",
				deleted.Label, deleted.CIDR, count, strings.Join(used, ", "), more)
		}
		var vifs int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM virtual_interfaces WHERE network_id = $1", id).Scan(&vifs); err != nil {
			return err
		}
		if vifs > 0 {
			return rpc.Errorf(rpc.CodeInUse, "network %s (%s) has %d virtual interfaces; deallocate their instances first",
				deleted.Label, deleted.CIDR, vifs)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM networks WHERE id = $1", id); err != nil {
			return err
		}
		// Interfaces have no foreign key to their network (it would lock
		// the network's row on every allocation). An allocation that
		// picked one of the network's addresses before the DELETE holds
		// that row, so the DELETE (cascading to the addresses) waited for
		// it to commit; this statement sees its interface.
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM virtual_interfaces WHERE network_id = $1", id).Scan(&vifs); err != nil {
			return err
		}
		if vifs > 0 {
			return rpc.Errorf(rpc.CodeInUse, "network %s (%s) got %d virtual interfaces while being deleted; deallocate their instances first",
				deleted.Label, deleted.CIDR, vifs)
		}
		return storeTx(ctx, tx, deleted)
	})
	if err != nil || replayed {
		return deleted, err
	}
	m.log.Info("network deleted", zap.String("uuid", deleted.UUID), zap.String("cidr", deleted.CIDR))
	if deleted.Host != "" {
		m.notify(rpc.HostMethodTeardown, []hostTarget{{host: deleted.Host, network: deleted.ID}})
	}
	return deleted, nil
}
