package manager

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"novanet/ifname"
	"novanet/netcalc"
	"novanet/rpc"
)

// checkPoolName validates a floating pool name: 1 to 255 bytes of printable
// UTF-8 with no leading or trailing space.
func checkPoolName(field, s string) error {
	switch {
	case s == "":
		return badArg(field, "%s is empty", field)
	case len(s) > 255:
		return badArg(field, "%s %q is longer than 255 bytes", field, truncate(s))
	case strings.TrimSpace(s) != s:
		return badArg(field, "%s %q has leading or trailing space", field, truncate(s))
	case strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' || r == unicode.ReplacementChar }):
		return badArg(field, "%s %q has control or non-printable characters", field, truncate(s))
	}
	return nil
}

// pool returns the pool a request names, or the default one.
func (m *Manager) poolName(s string) (string, error) {
	if s == "" {
		return m.cfg.DefaultFloatingPool, nil
	}
	return s, checkPoolName("pool", s)
}

// floatingHosts returns the first usable address of a floating range and
// how many there are. As nova-manage floating create (netaddr's
// iter_hosts), the network and broadcast addresses of a range of /30 or
// larger are left out; a /31 or /32 is used whole.
func floatingHosts(p netip.Prefix) (netip.Addr, int) {
	size := 1 << (32 - p.Bits())
	if p.Bits() >= 31 {
		return p.Addr(), size
	}
	return p.Addr().Next(), size - 2
}

// parseFloatingRange checks create_floating_ips' cidr.
func parseFloatingRange(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, badArg("cidr", "cidr is required, e.g. 203.0.113.0/24")
	}
	p, err := netcalc.ParsePrefix("cidr", s, false)
	if err != nil {
		return netip.Prefix{}, invalid(err)
	}
	if err := netcalc.CheckUsable("cidr", p); err != nil {
		return netip.Prefix{}, invalid(err)
	}
	if 1<<(32-p.Bits()) > rpc.MaxFloatingRange {
		return netip.Prefix{}, badArg("cidr", "cidr %q has %d addresses; one request takes at most %d (a /14)",
			s, 1<<(32-p.Bits()), rpc.MaxFloatingRange)
	}
	return p, nil
}

func checkInterface(s string) error {
	if s == "" {
		return nil
	}
	if err := ifname.Validate(s); err != nil {
		return badArg("interface", "interface: %v", err)
	}
	return nil
}

// CreateFloatingIPs adds a range to a pool, with one floating_ips row per
// usable address written by one statement. Ranges may not overlap fixed
// networks or other ranges; creates of networks and ranges serialise.
func (m *Manager) CreateFloatingIPs(ctx context.Context, req rpc.CreateFloatingIPsRequest) (rpc.FloatingRange, error) {
	pool, err := m.poolName(req.Pool)
	if err != nil {
		return rpc.FloatingRange{}, err
	}
	p, err := parseFloatingRange(req.CIDR)
	if err != nil {
		return rpc.FloatingRange{}, err
	}
	if err := checkInterface(req.Interface); err != nil {
		return rpc.FloatingRange{}, err
	}
	first, n := floatingHosts(p)
	r := rpc.FloatingRange{CIDR: p.String(), Pool: pool, Interface: req.Interface, Total: n}
	start := time.Now()
	replayed := false
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if replayed, err = m.claimTx(ctx, tx, &r); replayed || err != nil {
			return err
		}
		// Ranges are created one at a time, and no network is created
		// meanwhile (create_networks locks networks, then reads ranges).
		if _, err := tx.Exec(ctx, "LOCK TABLE floating_ranges IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE networks IN SHARE MODE"); err != nil {
			return err
		}
		var label, cidr, id string
		err := tx.QueryRow(ctx, `SELECT label, cidr::text, uuid::text FROM networks WHERE cidr && $1 ORDER BY cidr LIMIT 1`, p).
			Scan(&label, &cidr, &id)
		if err == nil {
			return rpc.Errorf(rpc.CodeConflict, "%s overlaps fixed network %s (%s, %s)", p, label, cidr, id)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT cidr::text, pool FROM floating_ranges WHERE cidr && $1 ORDER BY cidr LIMIT 1`, p).
			Scan(&cidr, &label)
		if err == nil {
			return rpc.Errorf(rpc.CodeConflict, "%s overlaps floating range %s of pool %s", p, cidr, label)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var created time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO floating_ranges (cidr, pool, interface) VALUES ($1, $2, $3)
			RETURNING id, created_at`, p, pool, nilIfEmpty(req.Interface)).Scan(&r.ID, &created); err != nil {
			return err
		}
		r.CreatedAt = created.UTC().Format(time.RFC3339)
		tag, err := tx.Exec(ctx, `INSERT INTO floating_ips (address, range_id, pool, interface)
			SELECT $2::inet + g, $1, $3, $4 FROM generate_series(0::bigint, $5::bigint - 1) g`,
			r.ID, first, pool, nilIfEmpty(req.Interface), n)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != int64(n) {
			return fmt.Errorf("inserted %d floating IPs, want %d", tag.RowsAffected(), n)
		}
		return storeTx(ctx, tx, r)
	})
	if err != nil || replayed {
		return r, err
	}
	m.log.Info("floating range created", zap.String("cidr", r.CIDR), zap.String("pool", pool),
		zap.Int("addresses", n), zap.Duration("took", time.Since(start)))
	return r, nil
}

func (m *Manager) handleDeleteFloatingIPs(ctx context.Context, data []byte) (any, error) {
	var req rpc.FloatingRangeRef
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	return m.DeleteFloatingIPs(ctx, req.CIDR)
}

// DeleteFloatingIPs deletes a range and its addresses, refusing while any
// of them is allocated to a project.
func (m *Manager) DeleteFloatingIPs(ctx context.Context, cidr string) (rpc.FloatingRange, error) {
	if cidr == "" {
		return rpc.FloatingRange{}, badArg("cidr", "cidr is required: the range as it was created")
	}
	p, err := netcalc.ParsePrefix("cidr", cidr, false)
	if err != nil {
		return rpc.FloatingRange{}, invalid(err)
	}
	var (
		r        rpc.FloatingRange
		replayed bool
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if replayed, err = m.claimTx(ctx, tx, &r); replayed || err != nil {
			return err
		}
		var (
			iface   *string
			created time.Time
		)
		err := tx.QueryRow(ctx, `SELECT id, cidr::text, pool, interface, created_at FROM floating_ranges WHERE cidr = $1 FOR UPDATE`, p).
			Scan(&r.ID, &r.CIDR, &r.Pool, &iface, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			return rpc.Errorf(rpc.CodeNotFound, "floating range %s not found", p)
		} else if err != nil {
			return err
		}
		if iface != nil {
			r.Interface = *iface
		}
		r.CreatedAt = created.UTC().Format(time.RFC3339)
		// Lock every address of the range, so that an allocation under way
		// either commits first (and is counted) or skips them.
		var used string
		err = tx.QueryRow(ctx, `
			WITH l AS (SELECT address, project_id FROM floating_ips WHERE range_id = $1 FOR UPDATE)
			SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM l WHERE project_id IS NOT NULL),
				coalesce((SELECT string_agg(host(address) || ' (project ' || project_id || ')', ', ' ORDER BY address)
					FROM (SELECT address, project_id FROM l WHERE project_id IS NOT NULL ORDER BY address LIMIT $2) x), '')`,
			r.ID, maxListedInUse).Scan(&r.Total, &r.Allocated, &used)
		if err != nil {
			return err
		}
		if r.Allocated > 0 {
			more := ""
			if r.Allocated > maxListedInUse {
				more = fmt.Sprintf(" and %d more", r.Allocated-maxListedInUse)
			}
			return rpc.Errorf(rpc.CodeInUse, "floating range %s of pool %s has %d addresses allocated: %s%s; deallocate them first",
				r.CIDR, r.Pool, r.Allocated, used, more)
		}
		if _, err = tx.Exec(ctx, "DELETE FROM floating_ranges WHERE id = $1", r.ID); err != nil {
			return err
		}
		return storeTx(ctx, tx, r)
	})
	if err != nil || replayed {
		return r, err
	}
	m.log.Info("floating range deleted", zap.String("cidr", r.CIDR), zap.String("pool", r.Pool))
	return r, nil
}

const floatingColumns = `host(fl.address), fl.pool, coalesce(fl.interface, ''), coalesce(fl.project_id, ''),
	fl.auto_assigned, coalesce(host(f.address), ''), coalesce(f.instance_uuid::text, ''), coalesce(f.network_id, 0),
	coalesce(fl.host, ''), fl.updated_at`

const floatingFrom = ` FROM floating_ips fl LEFT JOIN fixed_ips f ON f.id = fl.fixed_ip_id `

func floatingIPs(ctx context.Context, q querier, where string, args ...any) ([]rpc.FloatingIP, error) {
	rows, err := q.Query(ctx, "SELECT "+floatingColumns+floatingFrom+where, args...)
	if err != nil {
		return nil, err
	}
	ips, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rpc.FloatingIP, error) {
		var (
			f       rpc.FloatingIP
			updated time.Time
		)
		err := r.Scan(&f.Address, &f.Pool, &f.Interface, &f.ProjectID, &f.AutoAssigned, &f.FixedAddress,
			&f.InstanceUUID, &f.NetworkID, &f.Host, &updated)
		f.UpdatedAt = updated.UTC().Format(time.RFC3339)
		return f, err
	})
	if ips == nil {
		ips = []rpc.FloatingIP{}
	}
	return ips, err
}

// floatingIP returns one floating address.
func floatingIP(ctx context.Context, q querier, addr netip.Addr) (rpc.FloatingIP, error) {
	ips, err := floatingIPs(ctx, q, "WHERE fl.address = $1", addr)
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	if len(ips) == 0 {
		return rpc.FloatingIP{}, rpc.Errorf(rpc.CodeNotFound, "floating IP %s not found", addr)
	}
	return ips[0], nil
}

// ListFloatingIPs returns one page of floating IPs in address order.
func (m *Manager) ListFloatingIPs(ctx context.Context, req rpc.ListFloatingIPsRequest) (rpc.FloatingIPsReply, error) {
	if req.Limit < 0 || req.Limit > rpc.MaxListFloatingIPs {
		return rpc.FloatingIPsReply{}, badArg("limit", "limit %d: want 1 to %d", req.Limit, rpc.MaxListFloatingIPs)
	}
	if req.Limit == 0 {
		req.Limit = rpc.MaxListFloatingIPs
	}
	if req.Pool != "" {
		if err := checkPoolName("pool", req.Pool); err != nil {
			return rpc.FloatingIPsReply{}, err
		}
	}
	if err := checkProject(req.ProjectID, false); err != nil {
		return rpc.FloatingIPsReply{}, err
	}
	var after any
	if req.After != "" {
		a, err := parseFixedAddr("after", req.After)
		if err != nil {
			return rpc.FloatingIPsReply{}, err
		}
		after = a
	}
	ips, err := floatingIPs(ctx, m.pool, `WHERE ($1 = '' OR fl.pool = $1) AND ($2 = '' OR fl.project_id = $2)
		AND ($3::inet IS NULL OR fl.address > $3) ORDER BY fl.address LIMIT $4`,
		req.Pool, req.ProjectID, after, req.Limit+1)
	if err != nil {
		return rpc.FloatingIPsReply{}, err
	}
	r := rpc.FloatingIPsReply{FloatingIPs: ips}
	if len(ips) > req.Limit {
		r.FloatingIPs, r.More = ips[:req.Limit], true
	}
	return r, nil
}

func (m *Manager) handleGetFloatingPools(ctx context.Context, data []byte) (any, error) {
	if err := rpc.Decode(data, &struct{}{}); err != nil {
		return nil, err
	}
	return m.FloatingPools(ctx)
}

// FloatingPools lists the pools with their counts.
func (m *Manager) FloatingPools(ctx context.Context) (rpc.FloatingPoolsReply, error) {
	rows, err := m.pool.Query(ctx, `
		SELECT pool, count(*), count(*) FILTER (WHERE project_id IS NULL), count(*) FILTER (WHERE fixed_ip_id IS NOT NULL),
			count(DISTINCT range_id)
		FROM floating_ips GROUP BY pool ORDER BY pool`)
	if err != nil {
		return rpc.FloatingPoolsReply{}, err
	}
	pools, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rpc.FloatingPool, error) {
		var p rpc.FloatingPool
		err := r.Scan(&p.Name, &p.Total, &p.Free, &p.Associated, &p.Ranges)
		return p, err
	})
	if pools == nil {
		pools = []rpc.FloatingPool{}
	}
	return rpc.FloatingPoolsReply{Pools: pools}, err
}

// AllocateFloatingIP gives a project the lowest free address of a pool,
// within its quota. Only the manager auto-assigns (auto_assign_floating_ip
// in allocate_for_instance): a caller's auto_assigned would skip the
// quota, so it is refused.
func (m *Manager) AllocateFloatingIP(ctx context.Context, req rpc.AllocateFloatingIPRequest) (rpc.FloatingIP, error) {
	if err := checkProject(req.ProjectID, true); err != nil {
		return rpc.FloatingIP{}, err
	}
	if req.AutoAssigned {
		return rpc.FloatingIP{}, badArg("auto_assigned",
			"auto_assigned is set only by the manager, when it auto-assigns an address to an instance (--auto-assign-floating-ip); allocate without it")
	}
	pool, err := m.poolName(req.Pool)
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	var (
		fl       rpc.FloatingIP
		replayed bool
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		// With a request id, a retry gets the address the first request
		// was given: the id is stored with the allocation, in this
		// transaction.
		if replayed, err = m.claimTx(ctx, tx, &fl); replayed || err != nil {
			return err
		}
		_, addr, err := m.allocateFloating(ctx, tx, req.ProjectID, pool, false)
		if err != nil {
			return err
		}
		if fl, err = floatingIP(ctx, tx, addr); err != nil {
			return err
		}
		return storeTx(ctx, tx, fl)
	})
	if err != nil || replayed {
		return fl, err
	}
	m.log.Info("floating IP allocated", zap.String("address", fl.Address), zap.String("project", req.ProjectID))
	return fl, nil
}

// floatingQuota returns a project's floating IP limit and whether it is the
// default.
func (m *Manager) floatingQuota(ctx context.Context, q querier, project string) (int, bool, error) {
	var limit int
	err := q.QueryRow(ctx, `SELECT hard_limit FROM quotas WHERE project_id = $1 AND resource = $2`,
		project, rpc.ResourceFloatingIPs).Scan(&limit)
	if errors.Is(err, pgx.ErrNoRows) {
		return m.cfg.FloatingIPQuota, true, nil
	}
	return limit, false, err
}

// allocateFloating takes the lowest free address of pool for project. The
// quota is checked under a per-project lock, so concurrent allocations by
// one project on any replica cannot pass it; auto-assigned addresses are
// neither counted nor limited, as in nova.
func (m *Manager) allocateFloating(ctx context.Context, tx pgx.Tx, project, pool string, auto bool) (int64, netip.Addr, error) {
	if !auto {
		if err := lockKey(ctx, tx, lockFloatingQuota, project); err != nil {
			return 0, netip.Addr{}, err
		}
		limit, _, err := m.floatingQuota(ctx, tx, project)
		if err != nil {
			return 0, netip.Addr{}, err
		}
		if limit != rpc.QuotaUnlimited {
			var used int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM floating_ips WHERE project_id = $1 AND NOT auto_assigned`,
				project).Scan(&used); err != nil {
				return 0, netip.Addr{}, err
			}
			if used >= limit {
				return 0, netip.Addr{}, rpc.Errorf(rpc.CodeQuotaExceeded,
					"project %s has %d floating IPs and its quota is %d; deallocate one or raise the quota (netadm quota set)",
					project, used, limit)
			}
		}
	}
	var (
		id   int64
		addr netip.Addr
	)
	err := tx.QueryRow(ctx, `
		UPDATE floating_ips SET project_id = $1, auto_assigned = $3, updated_at = now()
		WHERE id = (SELECT id FROM floating_ips WHERE pool = $2 AND project_id IS NULL
			ORDER BY address LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id, address`, project, pool, auto).Scan(&id, &addr)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM floating_ranges WHERE pool = $1)", pool).Scan(&exists); err != nil {
			return 0, netip.Addr{}, err
		}
		if !exists {
			return 0, netip.Addr{}, rpc.Errorf(rpc.CodeNotFound, "floating pool %q not found: create it with netadm floating create", pool)
		}
		return 0, netip.Addr{}, rpc.Errorf(rpc.CodeNoMoreFloatingIPs, "floating pool %s has no free address", pool)
	}
	return id, addr, err
}

// lockedFloating is a floating IP row locked FOR UPDATE, with what it is
// associated with.
type lockedFloating struct {
	id        int64
	project   string
	auto      bool
	fixedID   *int64
	fixedAddr string
	instance  string
	old       []hostTarget // the host that NATs it now, if any
}

func lockFloating(ctx context.Context, tx pgx.Tx, addr netip.Addr) (lockedFloating, error) {
	var (
		l     lockedFloating
		host  string
		netID int64
	)
	err := tx.QueryRow(ctx, `SELECT fl.id, coalesce(fl.project_id, ''), fl.auto_assigned, fl.fixed_ip_id,
			coalesce(host(f.address), ''), coalesce(f.instance_uuid::text, ''), coalesce(fl.host, ''), coalesce(f.network_id, 0)
		FROM floating_ips fl LEFT JOIN fixed_ips f ON f.id = fl.fixed_ip_id
		WHERE fl.address = $1 FOR UPDATE OF fl`, addr).
		Scan(&l.id, &l.project, &l.auto, &l.fixedID, &l.fixedAddr, &l.instance, &host, &netID)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, rpc.Errorf(rpc.CodeNotFound, "floating IP %s not found", addr)
	}
	if host != "" && l.fixedID != nil {
		l.old = []hostTarget{{host: host, network: netID}}
	}
	return l, err
}

func (l lockedFloating) checkProject(addr netip.Addr, project string) error {
	if project != "" && l.project != "" && l.project != project {
		return rpc.Errorf(rpc.CodeConflict, "floating IP %s is allocated to project %s, not %s", addr, l.project, project)
	}
	return nil
}

func (l lockedFloating) checkAuto(addr netip.Addr, affect bool) error {
	if l.auto && !affect {
		return rpc.Errorf(rpc.CodeConflict,
			"floating IP %s was auto-assigned to instance %s and is released with it; pass affect_auto_assigned to change it",
			addr, dashIfEmpty(l.instance))
	}
	return nil
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// DeallocateFloatingIP returns an address to its pool. An associated
// address is refused (disassociate it first, as nova did); a free one is
// not an error, so retries are harmless.
func (m *Manager) DeallocateFloatingIP(ctx context.Context, req rpc.FloatingIPRequest) (rpc.FloatingIP, error) {
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	if err := checkProject(req.ProjectID, false); err != nil {
		return rpc.FloatingIP{}, err
	}
	var (
		fl      rpc.FloatingIP
		project string
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		l, err := lockFloating(ctx, tx, addr)
		if err != nil {
			return err
		}
		project = l.project
		if err := l.checkProject(addr, req.ProjectID); err != nil {
			return err
		}
		if l.fixedID != nil {
			return rpc.Errorf(rpc.CodeConflict, "floating IP %s is associated with fixed IP %s (instance %s); disassociate it first",
				addr, l.fixedAddr, dashIfEmpty(l.instance))
		}
		if err := l.checkAuto(addr, req.AffectAutoAssigned); err != nil {
			return err
		}
		if l.project != "" {
			if _, err := tx.Exec(ctx, `UPDATE floating_ips SET project_id = NULL, auto_assigned = false, host = NULL,
				updated_at = now() WHERE id = $1`, l.id); err != nil {
				return err
			}
		}
		fl, err = floatingIP(ctx, tx, addr)
		return err
	})
	if err == nil && project != "" {
		m.log.Info("floating IP deallocated", zap.Stringer("address", addr), zap.String("project", project))
	}
	return fl, err
}

// AssociateFloatingIP associates a project's floating IP with a fixed IP
// allocated to an instance of that project, and records the host that must
// NAT it: the fixed IP's host on a multi-host network, else the network's.
// The same association again is not an error; moving an address that is
// associated with another fixed IP needs Reassociate, so that of two
// concurrent associations of one address to different fixed IPs exactly
// one succeeds.
func (m *Manager) AssociateFloatingIP(ctx context.Context, req rpc.AssociateFloatingIPRequest) (rpc.FloatingIP, error) {
	faddr, err := parseFixedAddr("floating_address", req.FloatingAddress)
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	xaddr, err := parseFixedAddr("fixed_address", req.FixedAddress)
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	var (
		fl      rpc.FloatingIP
		targets []hostTarget
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		// The instance lock first (deallocate_for_instance takes it, then
		// disassociates): the fixed IP stays allocated until we commit.
		var inst *string
		err := tx.QueryRow(ctx, "SELECT instance_uuid::text FROM fixed_ips WHERE address = $1", xaddr).Scan(&inst)
		if errors.Is(err, pgx.ErrNoRows) {
			return rpc.Errorf(rpc.CodeNotFound, "fixed address %s not found", xaddr)
		} else if err != nil {
			return err
		}
		notAllocated := rpc.Errorf(rpc.CodeConflict, "fixed address %s is not allocated to an instance", xaddr)
		if inst == nil {
			return notAllocated
		}
		if err := lockKey(ctx, tx, lockInstance, *inst); err != nil {
			return err
		}
		var (
			fixedID, netID int64
			allocated      bool
			instNow        string
			vifProject     string
			host           string
		)
		err = tx.QueryRow(ctx, `SELECT f.id, f.network_id, f.allocated AND f.virtual_interface_id IS NOT NULL,
				coalesce(f.instance_uuid::text, ''), coalesce(v.project_id, ''),
				coalesce(CASE WHEN n.multi_host THEN f.host ELSE n.host END, '')
			FROM fixed_ips f JOIN networks n ON n.id = f.network_id
			LEFT JOIN virtual_interfaces v ON v.id = f.virtual_interface_id
			WHERE f.address = $1`, xaddr).Scan(&fixedID, &netID, &allocated, &instNow, &vifProject, &host)
		if err != nil {
			return err
		}
		if !allocated || instNow != *inst {
			return notAllocated
		}
		l, err := lockFloating(ctx, tx, faddr)
		if err != nil {
			return err
		}
		switch {
		case l.project == "":
			return rpc.Errorf(rpc.CodeConflict, "floating IP %s is not allocated to a project; allocate it first", faddr)
		case vifProject == "":
			return rpc.Errorf(rpc.CodeConflict, "the project of instance %s (fixed address %s) is not known; allocate it again to associate floating IPs",
				instNow, xaddr)
		case vifProject != l.project:
			return rpc.Errorf(rpc.CodeConflict, "floating IP %s belongs to project %s, but fixed address %s to instance %s of project %s",
				faddr, l.project, xaddr, instNow, vifProject)
		case l.fixedID != nil && *l.fixedID == fixedID:
			fl, err = floatingIP(ctx, tx, faddr) // already so
			return err
		case l.fixedID != nil && !req.Reassociate:
			return rpc.Errorf(rpc.CodeConflict,
				"floating IP %s is already associated with fixed IP %s (instance %s); disassociate it first or pass reassociate",
				faddr, l.fixedAddr, dashIfEmpty(l.instance))
		}
		if err := l.checkAuto(faddr, req.AffectAutoAssigned); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE floating_ips SET fixed_ip_id = $2, host = $3, updated_at = now() WHERE id = $1`,
			l.id, fixedID, nilIfEmpty(host)); err != nil {
			return err
		}
		targets = l.old
		if host != "" {
			targets = append(targets, hostTarget{host: host, network: netID})
		}
		fl, err = floatingIP(ctx, tx, faddr)
		return err
	})
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	m.notify(rpc.HostMethodRefresh, targets)
	return fl, nil
}

// DisassociateFloatingIP removes an address's association; it stays
// allocated to its project. An address that is not associated is not an
// error. An auto-assigned address (with AffectAutoAssigned) becomes an
// ordinary allocation of its project.
func (m *Manager) DisassociateFloatingIP(ctx context.Context, req rpc.FloatingIPRequest) (rpc.FloatingIP, error) {
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	if err := checkProject(req.ProjectID, false); err != nil {
		return rpc.FloatingIP{}, err
	}
	var (
		fl      rpc.FloatingIP
		targets []hostTarget
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		l, err := lockFloating(ctx, tx, addr)
		if err != nil {
			return err
		}
		if err := l.checkProject(addr, req.ProjectID); err != nil {
			return err
		}
		if l.fixedID != nil {
			if err := l.checkAuto(addr, req.AffectAutoAssigned); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE floating_ips SET fixed_ip_id = NULL, host = NULL, auto_assigned = false,
				updated_at = now() WHERE id = $1`, l.id); err != nil {
				return err
			}
			targets = l.old
		}
		fl, err = floatingIP(ctx, tx, addr)
		return err
	})
	if err != nil {
		return rpc.FloatingIP{}, err
	}
	m.notify(rpc.HostMethodRefresh, targets)
	return fl, nil
}

// releaseInstanceFloating disassociates the floating IPs associated with an
// instance's fixed addresses (only with addr when it is valid) and returns
// the auto-assigned ones to their pool, as nova's deallocate_for_instance.
// It returns the hosts that NATed them.
func releaseInstanceFloating(ctx context.Context, tx pgx.Tx, inst string, addr netip.Addr) ([]hostTarget, error) {
	var only any
	if addr.IsValid() {
		only = addr
	}
	rows, err := tx.Query(ctx, `
		UPDATE floating_ips fl SET fixed_ip_id = NULL, host = NULL, auto_assigned = false, updated_at = now(),
			project_id = CASE WHEN fl.auto_assigned THEN NULL ELSE fl.project_id END
		FROM floating_ips old JOIN fixed_ips f ON f.id = old.fixed_ip_id
		WHERE old.id = fl.id AND f.instance_uuid = $1 AND ($2::inet IS NULL OR f.address = $2)
			-- Rechecked on the row's latest version if a concurrent
			-- re-association moved it away meanwhile: then it is left alone.
			AND fl.fixed_ip_id = old.fixed_ip_id
		RETURNING coalesce(old.host, ''), f.network_id`, inst, only)
	if err != nil {
		return nil, err
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hostTarget, error) {
		var t hostTarget
		err := r.Scan(&t.host, &t.network)
		return t, err
	})
	if err != nil {
		return nil, err
	}
	out := ts[:0]
	for _, t := range ts {
		if t.host != "" {
			out = append(out, t)
		}
	}
	return out, nil
}

// autoAssignFloating allocates a floating IP from the default pool to an
// instance's project and associates it with the instance's first fixed IP.
func (m *Manager) autoAssignFloating(ctx context.Context, tx pgx.Tx, inst, project string) ([]hostTarget, error) {
	var (
		fixedID, netID int64
		host           string
	)
	err := tx.QueryRow(ctx, `SELECT f.id, f.network_id, coalesce(CASE WHEN n.multi_host THEN f.host ELSE n.host END, '')
		FROM virtual_interfaces v JOIN fixed_ips f ON f.virtual_interface_id = v.id JOIN networks n ON n.id = f.network_id
		WHERE v.instance_uuid = $1 ORDER BY v.id + 0, f.address LIMIT 1`, inst).Scan(&fixedID, &netID, &host)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	id, addr, err := m.allocateFloating(ctx, tx, project, m.cfg.DefaultFloatingPool, true)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE floating_ips SET fixed_ip_id = $2, host = $3, updated_at = now() WHERE id = $1`,
		id, fixedID, nilIfEmpty(host)); err != nil {
		return nil, err
	}
	m.log.Info("floating IP auto-assigned", zap.Stringer("address", addr), zap.String("instance", inst))
	if host == "" {
		return nil, nil
	}
	return []hostTarget{{host: host, network: netID}}, nil
}

func (m *Manager) handleGetFloatingIPsByProject(ctx context.Context, data []byte) (any, error) {
	var req rpc.ProjectRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	if err := checkProject(req.ProjectID, true); err != nil {
		return nil, err
	}
	ips, err := floatingIPs(ctx, m.pool, "WHERE fl.project_id = $1 ORDER BY fl.address", req.ProjectID)
	return rpc.FloatingIPsReply{FloatingIPs: ips}, err
}

func (m *Manager) handleGetFloatingIPByAddress(ctx context.Context, data []byte) (any, error) {
	var req rpc.FloatingAddressRef
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return nil, err
	}
	return floatingIP(ctx, m.pool, addr)
}

func (m *Manager) handleGetFloatingIPsByFixedAddress(ctx context.Context, data []byte) (any, error) {
	var req rpc.FixedAddressRef
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	addr, err := parseFixedAddr("fixed_address", req.FixedAddress)
	if err != nil {
		return nil, err
	}
	ips, err := floatingIPs(ctx, m.pool, "WHERE f.address = $1 ORDER BY fl.address", addr)
	if err != nil || len(ips) > 0 {
		return rpc.FloatingIPsReply{FloatingIPs: ips}, err
	}
	if _, err := m.fixedIP(ctx, addr); err != nil {
		return nil, err
	}
	return rpc.FloatingIPsReply{FloatingIPs: ips}, nil
}

func checkResource(s string) error {
	if s != rpc.ResourceFloatingIPs {
		return badArg("resource", "resource %q: want %s (the only quota enforced)", truncate(s), rpc.ResourceFloatingIPs)
	}
	return nil
}

// QuotaSet sets a project's limit on a resource. Lowering it below what
// the project has takes nothing away; further allocations are refused.
func (m *Manager) QuotaSet(ctx context.Context, req rpc.QuotaSetRequest) (rpc.QuotaReply, error) {
	if err := checkProject(req.ProjectID, true); err != nil {
		return rpc.QuotaReply{}, err
	}
	if err := checkResource(req.Resource); err != nil {
		return rpc.QuotaReply{}, err
	}
	if req.Limit == nil {
		return rpc.QuotaReply{}, badArg("limit", "limit is required (-1: unlimited)")
	}
	if *req.Limit < rpc.QuotaUnlimited || *req.Limit > math.MaxInt32 {
		return rpc.QuotaReply{}, badArg("limit", "limit %d: want -1 (unlimited) or 0 to %d", *req.Limit, math.MaxInt32)
	}
	if _, err := m.pool.Exec(ctx, `INSERT INTO quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
		ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = EXCLUDED.hard_limit, updated_at = now()`,
		req.ProjectID, req.Resource, *req.Limit); err != nil {
		return rpc.QuotaReply{}, err
	}
	m.log.Info("quota set", zap.String("project", req.ProjectID), zap.String("resource", req.Resource), zap.Int("limit", *req.Limit))
	return m.QuotaShow(ctx, req.ProjectID)
}

func (m *Manager) handleQuotaShow(ctx context.Context, data []byte) (any, error) {
	var req rpc.ProjectRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	return m.QuotaShow(ctx, req.ProjectID)
}

// QuotaShow returns a project's effective quotas and usage.
func (m *Manager) QuotaShow(ctx context.Context, project string) (rpc.QuotaReply, error) {
	if err := checkProject(project, true); err != nil {
		return rpc.QuotaReply{}, err
	}
	q := rpc.Quota{Resource: rpc.ResourceFloatingIPs}
	var err error
	if q.Limit, q.Default, err = m.floatingQuota(ctx, m.pool, project); err != nil {
		return rpc.QuotaReply{}, err
	}
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT auto_assigned), count(*) FILTER (WHERE auto_assigned)
		FROM floating_ips WHERE project_id = $1`, project).Scan(&q.InUse, &q.AutoAssigned); err != nil {
		return rpc.QuotaReply{}, err
	}
	return rpc.QuotaReply{ProjectID: project, Quotas: []rpc.Quota{q}}, nil
}
