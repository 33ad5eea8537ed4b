package manager

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"novanet/netcalc"
	"novanet/rpc"
)

// Advisory lock classes (the first key of pg_advisory_xact_lock(int, int)).
// Every transaction takes at most one instance lock, then at most one
// project lock, then at most one floating IP quota lock, always in that
// order, so they cannot deadlock. Row locks on floating_ips come after
// them.
const (
	lockInstance      = 1
	lockProject       = 2
	lockFloatingQuota = 3 // per project: allocate_floating_ip counts, then takes
)

func lockKey(ctx context.Context, tx pgx.Tx, class int, key string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", class, key)
	return err
}

// freeAddr is the condition for a fixed IP that may be handed out.
const freeAddr = `instance_uuid IS NULL AND NOT reserved AND NOT leased AND NOT allocated`

func (m *Manager) handleDeallocateForInstance(ctx context.Context, data []byte) (any, error) {
	var req rpc.InstanceRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	return rpc.Empty{}, m.DeallocateForInstance(ctx, req.InstanceUUID)
}

func (m *Manager) handleRemoveFixedIP(ctx context.Context, data []byte) (any, error) {
	var req rpc.RemoveFixedIPRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	return m.RemoveFixedIPFromInstance(ctx, req.InstanceUUID, req.Address)
}

func (m *Manager) handleGetInstanceNWInfo(ctx context.Context, data []byte) (any, error) {
	var req rpc.InstanceRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	inst, err := parseInstance(req.InstanceUUID)
	if err != nil {
		return nil, err
	}
	info, err := instanceNWInfo(ctx, m.pool, inst)
	if err != nil {
		return nil, err
	}
	if len(info.VIFs) == 0 {
		return nil, rpc.Errorf(rpc.CodeNotFound, "instance %s has no network", inst)
	}
	return info, nil
}

type allocNet struct {
	id    int64
	label string
	addr  netip.Addr // requested address, if any
	start int64      // the network's first address, as a number
	size  int64      // its number of addresses
}

// allocNetColumns are what scanAllocNet reads, of networks n.
const allocNetColumns = `n.id, n.label, host(n.cidr)::inet - '0.0.0.0'::inet, 1::bigint << (32 - masklen(n.cidr))`

func scanAllocNet(r pgx.CollectableRow) (allocNet, error) {
	var n allocNet
	err := r.Scan(&n.id, &n.label, &n.start, &n.size)
	return n, err
}

// defaultNetworks is the query of an instance's networks when it requests
// none: the project's in VLAN mode, else every network without a project.
func (m *Manager) defaultNetworks(project string) (string, []any) {
	if m.cfg.Mode == ModeVLAN {
		return "SELECT " + allocNetColumns + " FROM networks n WHERE n.project_id = $1 ORDER BY n.priority NULLS LAST, n.id", []any{project}
	}
	return "SELECT " + allocNetColumns + " FROM networks n WHERE n.project_id IS NULL ORDER BY n.priority NULLS LAST, n.id", nil
}

// AllocateForInstance gives an instance one virtual interface with a fixed
// IP on each of its networks, in one transaction. An instance that already
// has interfaces gets them back unchanged, so a retried call is harmless.
func (m *Manager) AllocateForInstance(ctx context.Context, req rpc.AllocateForInstanceRequest) (rpc.NetworkInfo, error) {
	inst, err := parseInstance(req.InstanceUUID)
	if err != nil {
		return rpc.NetworkInfo{}, err
	}
	if err := checkProject(req.ProjectID, true); err != nil {
		return rpc.NetworkInfo{}, err
	}
	if err := checkHost(req.Host); err != nil {
		return rpc.NetworkInfo{}, err
	}
	macs := make([]string, len(req.MACs))
	for i, s := range req.MACs {
		if macs[i], err = parseMAC(s); err != nil {
			return rpc.NetworkInfo{}, err
		}
	}
	tries := m.cfg.MACRetries
	if len(macs) > 0 {
		tries = 1
	}
	for i := 0; ; i++ {
		info, targets, floating, err := m.allocateForInstance(ctx, inst, req, macs)
		if errors.Is(err, errMACTaken) {
			m.metrics.macCollisions.Inc()
			if i+1 < tries {
				continue // another random MAC, in a new transaction
			}
			if len(macs) > 0 {
				return rpc.NetworkInfo{}, rpc.Errorf(rpc.CodeConflict, "a MAC of %v is already in use", macs)
			}
			return rpc.NetworkInfo{}, rpc.Errorf(rpc.CodeInternal, "no unique MAC after %d tries", tries)
		}
		if err != nil {
			return rpc.NetworkInfo{}, err
		}
		m.notify(rpc.HostMethodSetup, targets)
		m.notify(rpc.HostMethodRefresh, floating)
		return info, nil
	}
}

// allocateForInstance is one attempt of AllocateForInstance, in one
// transaction. The common case costs two round trips to the database:
// BEGIN, the instance lock, its state and its networks in one batch; the
// allocations, the host assignment, the read-back and COMMIT in another.
// Requested networks, a project's first network, a MAC that collides with
// another on one of several networks and automatic floating IPs take the
// general path, statement by statement, in the same transaction.
func (m *Manager) allocateForInstance(ctx context.Context, inst string, req rpc.AllocateForInstanceRequest,
	macs []string) (info rpc.NetworkInfo, targets, floating []hostTarget, err error) {
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1, hashtext($2))", lockInstance, inst)
	b.Queue(instanceStateSQL, inst)
	defaultNets := len(req.RequestedNetworks) == 0
	if defaultNets {
		q, args := m.defaultNetworks(req.ProjectID)
		b.Queue(q, args...)
	}
	tx, br, err := beginBatch(ctx, m.pool, b)
	if err != nil {
		return info, nil, nil, err
	}
	defer tx.release(ctx)
	var (
		have  bool
		owner string
		nets  []allocNet
	)
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&have, &owner)
	}
	if err == nil && defaultNets {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			nets, err = pgx.CollectRows(rows, scanAllocNet)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return info, nil, nil, err
	}
	if owner != "" && owner != req.ProjectID {
		return info, nil, nil, projectConflict(inst, owner, req.ProjectID)
	}
	if have {
		// A retry: the instance's interfaces as they are.
		info, err = readAndCommit(ctx, tx, inst)
		return info, nil, nil, err
	}
	if len(nets) == 0 {
		if nets, err = m.networksFor(ctx, tx, req.ProjectID, req.RequestedNetworks); err != nil {
			return info, nil, nil, err
		}
	}
	if len(macs) > 0 && len(macs) != len(nets) {
		return info, nil, nil, badArg("macs", "%d MACs given for %d interfaces", len(macs), len(nets))
	}
	fast := !m.cfg.AutoAssignFloatingIP
	for _, n := range nets {
		fast = fast && !n.addr.IsValid()
	}
	if fast {
		// One batch: each allocation fails the batch (and so the
		// COMMIT at its end) when it cannot be made.
		b := &pgx.Batch{}
		for i, n := range nets {
			mac := randomMAC()
			if len(macs) > 0 {
				mac = macs[i]
			}
			b.Queue(allocFreeSQL, m.allocArgs(inst, req.Host, req.ProjectID, n, mac, true)...)
		}
		b.Queue(assignHostsSQL, netIDs(nets), req.Host, aliveWindow.Seconds(), inst)
		info, targets, err = fastAllocate(ctx, tx, inst, b)
		if err != nil {
			return info, nil, nil, allocError(err, nets)
		}
		return info, targets, nil, nil
	}
	for i, n := range nets {
		mac := ""
		if len(macs) > 0 {
			mac = macs[i]
		}
		if err := m.allocateOn(ctx, tx, inst, req.Host, req.ProjectID, n, mac); err != nil {
			return info, nil, nil, err
		}
	}
	if targets, err = assignHostsAndTargets(ctx, tx, netIDs(nets), req.Host, inst); err != nil {
		return info, nil, nil, err
	}
	if m.cfg.AutoAssignFloatingIP {
		if floating, err = m.autoAssignFloating(ctx, tx, inst, req.ProjectID); err != nil {
			return info, nil, nil, err
		}
	}
	info, err = readAndCommit(ctx, tx, inst)
	return info, targets, floating, err
}

// errMACTaken: the interface's MAC is another interface's.
var errMACTaken = errors.New("MAC already in use")

// SQLSTATEs that allocFreeSQL raises (through novanet_raise) when it
// cannot allocate; the message is the network's id.
const (
	stateNoAddress = "NV001"
	stateMACTaken  = "NV002"
)

// allocError turns the errors the fast path's allocations raise into the
// API's.
func allocError(err error, nets []allocNet) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case stateMACTaken:
		return errMACTaken
	case stateNoAddress:
		label := pe.Message
		for _, n := range nets {
			if strconv.FormatInt(n.id, 10) == pe.Message {
				label = n.label
			}
		}
		return rpc.Errorf(rpc.CodeNoMoreAddresses, "network %s has no free fixed address", label)
	}
	return err
}

// fastAllocate sends b (the allocations and assignHostsSQL), the
// read-back and COMMIT in one batch and returns what they returned.
func fastAllocate(ctx context.Context, tx *pipeTx, inst string, b *pgx.Batch) (rpc.NetworkInfo, []hostTarget, error) {
	allocs := b.Len() - 1
	b.Queue(nwInfoSQL, inst)
	b.Queue("COMMIT")
	br := tx.SendBatch(ctx, b)
	var (
		info    rpc.NetworkInfo
		targets []hostTarget
		err     error
	)
	for i := 0; i < allocs && err == nil; i++ {
		_, err = br.Exec()
	}
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			targets, err = pgx.CollectRows(rows, scanTarget)
		}
	}
	if err == nil {
		info, err = readNWInfo(br, inst)
	}
	if err == nil {
		err = commitResult(br, tx)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return info, targets, err
}

// readAndCommit reads an instance's network info and commits, in one
// round trip.
func readAndCommit(ctx context.Context, tx *pipeTx, inst string) (rpc.NetworkInfo, error) {
	b := &pgx.Batch{}
	b.Queue(nwInfoSQL, inst)
	b.Queue("COMMIT")
	br := tx.SendBatch(ctx, b)
	info, err := readNWInfo(br, inst)
	if err == nil {
		err = commitResult(br, tx)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return info, err
}

func readNWInfo(br pgx.BatchResults, inst string) (rpc.NetworkInfo, error) {
	rows, err := br.Query()
	if err != nil {
		return rpc.NetworkInfo{}, err
	}
	return scanNWInfo(rows, inst)
}

// commitResult reads the result of a COMMIT queued in a batch.
func commitResult(br pgx.BatchResults, tx *pipeTx) error {
	tag, err := br.Exec()
	if err != nil {
		return err
	}
	tx.committed()
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// instanceStateSQL reads whether an instance ($1) has interfaces, and the
// project it was allocated for: its interfaces' or, when its last
// interface was removed, the one remembered in instance_projects (” when
// unknown).
const instanceStateSQL = `SELECT EXISTS (SELECT 1 FROM virtual_interfaces WHERE instance_uuid = $1),
	coalesce((SELECT project_id FROM virtual_interfaces WHERE instance_uuid = $1 AND project_id IS NOT NULL
			ORDER BY id + 0 LIMIT 1),
		(SELECT project_id FROM instance_projects WHERE instance_uuid = $1), '')`

func projectConflict(inst, owner, project string) error {
	return rpc.Errorf(rpc.CodeConflict, "instance %s was allocated for project %s, not %s: deallocate it first",
		inst, truncate(owner), truncate(project))
}

func netIDs(nets []allocNet) []int64 {
	ids := make([]int64, len(nets))
	for i, n := range nets {
		ids[i] = n.id
	}
	return ids
}

// networksFor picks the networks of a new instance as nova-network did:
// the requested ones; else in VLAN mode the project's networks, giving the
// project a free network on its first allocation; else every network not
// tied to a project.
func (m *Manager) networksFor(ctx context.Context, tx pgx.Tx, project string, requested []rpc.RequestedNetwork) ([]allocNet, error) {
	if len(requested) > 0 {
		out := make([]allocNet, 0, len(requested))
		seen := map[int64]bool{}
		for _, r := range requested {
			id, err := resolveNetwork(ctx, tx, r.Network)
			if err != nil {
				return nil, err
			}
			if seen[id] {
				return nil, badArg("requested_networks", "network %q requested twice", r.Network)
			}
			seen[id] = true
			n := allocNet{id: id}
			var owner string
			if err := tx.QueryRow(ctx, "SELECT "+allocNetColumns+", coalesce(n.project_id, '') FROM networks n WHERE n.id = $1", id).
				Scan(&n.id, &n.label, &n.start, &n.size, &owner); err != nil {
				return nil, err
			}
			if owner != "" && owner != project {
				return nil, badArg("requested_networks", "network %s belongs to another project", n.label)
			}
			if r.Address != "" {
				a, err := parseFixedAddr("address", r.Address)
				if err != nil {
					return nil, err
				}
				n.addr = a
			}
			out = append(out, n)
		}
		return out, nil
	}
	query, args := m.defaultNetworks(project)
	nets, err := collectNets(ctx, tx, query, args...)
	if err != nil || len(nets) > 0 {
		return nets, err
	}
	if m.cfg.Mode != ModeVLAN {
		return nil, rpc.Errorf(rpc.CodeNotFound, "no network to allocate from: create one with netadm network create")
	}
	// The project's first allocation: give it a free network, once.
	if err := lockKey(ctx, tx, lockProject, project); err != nil {
		return nil, err
	}
	if nets, err = collectNets(ctx, tx, query, args...); err != nil || len(nets) > 0 {
		return nets, err
	}
	nets, err = collectNets(ctx, tx, `
		UPDATE networks n SET project_id = $1, updated_at = now()
		WHERE id = (SELECT id FROM networks WHERE project_id IS NULL AND vlan IS NOT NULL
			ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+allocNetColumns, project)
	if err != nil {
		return nil, err
	}
	if len(nets) == 0 {
		return nil, rpc.Errorf(rpc.CodeNoMoreNetworks, "no free network left for project %s: create more with netadm network create", project)
	}
	m.log.Info("network associated with project", zap.String("project", project), zap.String("network", nets[0].label))
	return nets, nil
}

func collectNets(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]allocNet, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanAllocNet)
}

// smallNetwork: on a network of at most this many addresses the lowest
// free one is taken; on a larger one, the first free one from a random
// point (wrapping at the end), so that concurrent allocations on one
// network do not all walk, and queue at, the head of its free-address
// index, and the walk does not lengthen as the network fills up.
const smallNetwork = 256

// pickFree chooses a free address of network $3 at or after address
// number $6 (see smallNetwork), else the first before it. Both order by
// the expression of fixed_ips_free_idx (see migration 1), which only that
// index provides, so each is a range scan of it; the second runs only when
// the first finds none.
const pickFree = `SELECT coalesce(
		(SELECT id FROM fixed_ips WHERE network_id = $3 AND ` + freeAddr + ` AND address - '0.0.0.0'::inet >= $6
			ORDER BY address - '0.0.0.0'::inet LIMIT 1 FOR UPDATE SKIP LOCKED),
		(SELECT id FROM fixed_ips WHERE network_id = $3 AND ` + freeAddr + ` AND address - '0.0.0.0'::inet < $6
			ORDER BY address - '0.0.0.0'::inet LIMIT 1 FOR UPDATE SKIP LOCKED)) AS id`

// pickAddr chooses the requested address $6 of network $3 if it is free.
const pickAddr = `SELECT id FROM fixed_ips WHERE network_id = $3 AND address = $6 AND ` + freeAddr + ` FOR UPDATE`

// allocSQL creates an interface (MAC $1, instance $2, network $3, project
// $5) with the address pick chooses, held for host $4, in one statement:
// the interface row is only written when an address was found. It returns
// whether an address was found and whether the interface was made (not
// when the MAC is taken); with $7 true it raises stateNoAddress or
// stateMACTaken instead of returning a failure.
func allocSQL(pick string) string {
	return `
		WITH ip AS (` + pick + `),
		vif AS (
			INSERT INTO virtual_interfaces (address, instance_uuid, network_id, project_id)
			SELECT $1, $2, $3, $5::text WHERE EXISTS (SELECT 1 FROM ip WHERE id IS NOT NULL)
			ON CONFLICT (address) DO NOTHING
			RETURNING id),
		upd AS (
			UPDATE fixed_ips f SET instance_uuid = $2, virtual_interface_id = vif.id, allocated = true,
				host = $4, updated_at = now()
			FROM vif, ip WHERE f.id = ip.id
			RETURNING f.address),
		r AS (SELECT EXISTS (SELECT 1 FROM ip WHERE id IS NOT NULL) AS found, EXISTS (SELECT 1 FROM upd) AS done)
		SELECT found, done FROM r
		WHERE done OR NOT $7::boolean
			OR novanet_raise(CASE WHEN found THEN '` + stateMACTaken + `' ELSE '` + stateNoAddress + `' END, $3::text)`
}

var (
	allocFreeSQL = allocSQL(pickFree)
	allocAddrSQL = allocSQL(pickAddr)
)

// allocArgs are allocSQL's arguments for network n.
func (m *Manager) allocArgs(inst, host, project string, n allocNet, mac string, raise bool) []any {
	var at any = n.start
	if n.addr.IsValid() {
		at = n.addr
	} else if n.size > smallNetwork {
		at = n.start + mrand.Int64N(n.size)
	}
	return []any{mac, inst, n.id, nilIfEmpty(host), nilIfEmpty(project), at, raise}
}

// allocateOn creates an interface on network n with a fixed IP (see
// allocSQL). A random MAC that collides is replaced, up to cfg.MACRetries
// times.
func (m *Manager) allocateOn(ctx context.Context, tx pgx.Tx, inst, host, project string, n allocNet, mac string) error {
	q := allocFreeSQL
	if n.addr.IsValid() {
		q = allocAddrSQL
	}
	tries := m.cfg.MACRetries
	if mac != "" {
		tries = 1
	}
	for i := 0; i < tries; i++ {
		try := mac
		if mac == "" {
			try = randomMAC()
		}
		var found, done bool
		if err := tx.QueryRow(ctx, q, m.allocArgs(inst, host, project, n, try, false)...).Scan(&found, &done); err != nil {
			return err
		}
		switch {
		case done:
			return nil
		case !found && n.addr.IsValid():
			return m.whyNotFree(ctx, tx, n)
		case !found:
			return rpc.Errorf(rpc.CodeNoMoreAddresses, "network %s has no free fixed address", n.label)
		}
		// The MAC is taken: try another.
		m.metrics.macCollisions.Inc()
	}
	if mac != "" {
		return rpc.Errorf(rpc.CodeConflict, "MAC %s is already in use", mac)
	}
	return rpc.Errorf(rpc.CodeInternal, "no unique MAC after %d tries", tries)
}

// whyNotFree explains why a requested address could not be had.
func (m *Manager) whyNotFree(ctx context.Context, tx pgx.Tx, n allocNet) error {
	var reserved, used bool
	err := tx.QueryRow(ctx, `SELECT reserved, NOT reserved FROM fixed_ips WHERE network_id = $1 AND address = $2`,
		n.id, n.addr).Scan(&reserved, &used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return badArg("address", "address %s is not in network %s", n.addr, n.label)
	case err != nil:
		return err
	case reserved:
		return rpc.Errorf(rpc.CodeConflict, "address %s of network %s is reserved", n.addr, n.label)
	default:
		return rpc.Errorf(rpc.CodeInUse, "address %s of network %s is in use", n.addr, n.label)
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// deallocate_for_instance's statements for instance $1: its addresses stay
// held (instance_uuid) until their release, its interfaces go.
const (
	deallocFixedSQL = `UPDATE fixed_ips SET allocated = false, virtual_interface_id = NULL, updated_at = now()
		WHERE instance_uuid = $1 AND (allocated OR virtual_interface_id IS NOT NULL)`
	deallocVIFsSQL = "DELETE FROM virtual_interfaces WHERE instance_uuid = $1"
)

// DeallocateForInstance removes an instance's interfaces. Its addresses
// stay held, not allocated, until the DHCP release arrives or the
// disassociate timeout passes. An instance with nothing allocated is not an
// error, so retries are harmless.
func (m *Manager) DeallocateForInstance(ctx context.Context, instance string) error {
	inst, err := parseInstance(instance)
	if err != nil {
		return err
	}
	var targets []hostTarget
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if err := lockKey(ctx, tx, lockInstance, inst); err != nil {
			return err
		}
		// Floating IPs first: their association is what the hosts NAT.
		floating, err := releaseInstanceFloating(ctx, tx, inst, netip.Addr{})
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, deallocFixedSQL, inst)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, deallocVIFsSQL, inst); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM instance_projects WHERE instance_uuid = $1", inst); err != nil {
			return err
		}
		if tag.RowsAffected() > 0 {
			targets, err = instanceTargets(ctx, tx, inst)
		}
		targets = append(targets, floating...)
		return err
	})
	if err == nil {
		m.notify(rpc.HostMethodRefresh, targets)
	}
	return err
}

// AddFixedIPToInstance gives an instance one more interface, on network.
func (m *Manager) AddFixedIPToInstance(ctx context.Context, req rpc.AddFixedIPRequest) (rpc.NetworkInfo, error) {
	inst, err := parseInstance(req.InstanceUUID)
	if err != nil {
		return rpc.NetworkInfo{}, err
	}
	if err := checkHost(req.Host); err != nil {
		return rpc.NetworkInfo{}, err
	}
	var (
		info     rpc.NetworkInfo
		targets  []hostTarget
		replayed bool
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		// A retry with the request id of an add that committed gets its
		// reply (requests.go), not a conflict with its own interface.
		if replayed, err = m.claimTx(ctx, tx, &info); replayed || err != nil {
			return err
		}
		if err := lockKey(ctx, tx, lockInstance, inst); err != nil {
			return err
		}
		id, err := resolveNetwork(ctx, tx, req.Network)
		if err != nil {
			return err
		}
		n := allocNet{id: id}
		var has bool
		if err := tx.QueryRow(ctx, `SELECT label, EXISTS (SELECT 1 FROM virtual_interfaces WHERE instance_uuid = $2 AND network_id = $1)
			FROM networks WHERE id = $1`, id, inst).Scan(&n.label, &has); err != nil {
			return err
		}
		if has {
			return rpc.Errorf(rpc.CodeConflict, "instance %s already has an interface on network %s", inst, n.label)
		}
		if req.Address != "" {
			if n.addr, err = parseFixedAddr("address", req.Address); err != nil {
				return err
			}
		}
		// The instance's project, as its other interfaces record it (or
		// instance_projects, once the last one was removed), else the
		// network's.
		var (
			have    bool
			project string
		)
		if err := tx.QueryRow(ctx, instanceStateSQL, inst).Scan(&have, &project); err != nil {
			return err
		}
		if project == "" {
			if err := tx.QueryRow(ctx, "SELECT coalesce(project_id, '') FROM networks WHERE id = $1", id).Scan(&project); err != nil {
				return err
			}
		}
		if err := m.allocateOn(ctx, tx, inst, req.Host, project, n, ""); err != nil {
			return err
		}
		if targets, err = assignHostsAndTargets(ctx, tx, []int64{id}, req.Host, inst); err != nil {
			return err
		}
		if info, err = instanceNWInfo(ctx, tx, inst); err != nil {
			return err
		}
		return storeTx(ctx, tx, info)
	})
	if err == nil && !replayed {
		m.notify(rpc.HostMethodSetup, targets)
	}
	return info, err
}

// RemoveFixedIPFromInstance frees one of an instance's addresses (held as
// after deallocate) and removes its interface.
func (m *Manager) RemoveFixedIPFromInstance(ctx context.Context, instance, address string) (rpc.NetworkInfo, error) {
	inst, err := parseInstance(instance)
	if err != nil {
		return rpc.NetworkInfo{}, err
	}
	addr, err := parseFixedAddr("address", address)
	if err != nil {
		return rpc.NetworkInfo{}, err
	}
	var (
		info     rpc.NetworkInfo
		targets  []hostTarget
		replayed bool
	)
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		// A retry with the request id of a remove that committed gets its
		// reply (requests.go), not not_found.
		if replayed, err = m.claimTx(ctx, tx, &info); replayed || err != nil {
			return err
		}
		if err := lockKey(ctx, tx, lockInstance, inst); err != nil {
			return err
		}
		floating, err := releaseInstanceFloating(ctx, tx, inst, addr)
		if err != nil {
			return err
		}
		var vif *int64
		err = tx.QueryRow(ctx, `UPDATE fixed_ips f SET allocated = false, virtual_interface_id = NULL, updated_at = now()
			FROM fixed_ips old WHERE old.id = f.id AND f.address = $1 AND f.instance_uuid = $2 AND f.virtual_interface_id IS NOT NULL
			RETURNING old.virtual_interface_id`, addr, inst).Scan(&vif)
		if errors.Is(err, pgx.ErrNoRows) {
			return rpc.Errorf(rpc.CodeNotFound, "instance %s has no fixed address %s", inst, addr)
		} else if err != nil {
			return err
		}
		// The instance keeps its project when this was its last interface.
		if _, err := tx.Exec(ctx, `WITH v AS (DELETE FROM virtual_interfaces WHERE id = $1 RETURNING instance_uuid, project_id)
			INSERT INTO instance_projects (instance_uuid, project_id) SELECT instance_uuid, project_id FROM v
			WHERE project_id IS NOT NULL ON CONFLICT (instance_uuid) DO NOTHING`, vif); err != nil {
			return err
		}
		if info, err = instanceNWInfo(ctx, tx, inst); err != nil {
			return err
		}
		if targets, err = instanceTargets(ctx, tx, inst); err != nil {
			return err
		}
		targets = append(targets, floating...)
		return storeTx(ctx, tx, info)
	})
	if err == nil && !replayed {
		m.notify(rpc.HostMethodRefresh, targets)
	}
	return info, err
}

// instanceNWInfo reads an instance's interfaces, networks and addresses.
func instanceNWInfo(ctx context.Context, q querier, inst string) (rpc.NetworkInfo, error) {
	rows, err := q.Query(ctx, nwInfoSQL, inst)
	if err != nil {
		return rpc.NetworkInfo{}, err
	}
	return scanNWInfo(rows, inst)
}

// nwInfoSQL reads the interfaces of instance $1 in id order, each with its
// network and fixed IPs, through the (instance_uuid, network_id) key.
const nwInfoSQL = `
		SELECT v.id, v.uuid::text, v.address::text, n.id, n.uuid::text, n.label, coalesce(n.bridge, ''),
			coalesce(n.bridge_interface, ''), coalesce(n.vlan, 0), n.multi_host, coalesce(n.mtu, 0), n.cidr::text,
			coalesce(n.cidr_v6::text, ''), coalesce(host(n.gateway_v6), ''), coalesce(n.host, ''),
			array_remove(ARRAY[host(n.dns1), host(n.dns2)], NULL),
			coalesce(host(f.address), ''), host(n.netmask), coalesce(host(n.gateway), ''), host(n.broadcast),
			coalesce(host(n.dhcp_server), ''),
			coalesce(ARRAY(SELECT host(fl.address) FROM floating_ips fl WHERE fl.fixed_ip_id = f.id ORDER BY fl.address), '{}')
		FROM virtual_interfaces v
		JOIN networks n ON n.id = v.network_id
		-- OFFSET 0 keeps this a per-interface index lookup: a generic plan
		-- may otherwise hash-join every fixed IP.
		LEFT JOIN LATERAL (SELECT id, address FROM fixed_ips WHERE virtual_interface_id = v.id OFFSET 0) f ON true
		WHERE v.instance_uuid = $1
		-- v.id + 0: no index gives this order, so no plan walks the
		-- primary key for it; an instance has a few interfaces to sort.
		ORDER BY v.id + 0, f.address`

func scanNWInfo(rows pgx.Rows, inst string) (rpc.NetworkInfo, error) {
	info := rpc.NetworkInfo{InstanceUUID: inst, VIFs: []rpc.VIF{}}
	var (
		v    rpc.VIF
		ip   rpc.IPInfo
		dns  []string
		gwV6 string
	)
	_, err := pgx.ForEachRow(rows, []any{&v.ID, &v.UUID, &v.MAC, &v.Network.ID, &v.Network.UUID, &v.Network.Label,
		&v.Network.Bridge, &v.Network.BridgeInterface, &v.Network.VLAN, &v.Network.MultiHost, &v.Network.MTU,
		&v.Network.CIDR, &v.Network.CIDRv6, &gwV6, &v.Network.Host, &dns, &ip.Address, &ip.Netmask, &ip.Gateway,
		&ip.Broadcast, &ip.DHCPServer, &ip.FloatingIPs}, func() error {
		if len(info.VIFs) == 0 || info.VIFs[len(info.VIFs)-1].ID != v.ID {
			v.Network.DNS = dns
			v.FixedIPs = []rpc.IPInfo{}
			if a, ok := slaacInfo(v.Network.CIDRv6, gwV6, v.MAC); ok {
				v.FixedIPv6s = []rpc.IPv6Info{a}
			}
			info.VIFs = append(info.VIFs, v)
		}
		if ip.Address != "" {
			ip.DNS = dns
			last := &info.VIFs[len(info.VIFs)-1]
			last.FixedIPs = append(last.FixedIPs, ip)
		}
		v, ip, dns, gwV6 = rpc.VIF{}, rpc.IPInfo{}, nil, ""
		return nil
	})
	return info, err
}

// slaacInfo is the SLAAC address (EUI-64 of mac) of an interface on a
// network with the IPv6 /64 cidrV6; false when the network has none (or
// one that SLAAC cannot use).
func slaacInfo(cidrV6, gatewayV6, mac string) (rpc.IPv6Info, bool) {
	p, err := netip.ParsePrefix(cidrV6)
	if err != nil {
		return rpc.IPv6Info{}, false
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return rpc.IPv6Info{}, false
	}
	a, err := netcalc.EUI64(p, hw)
	if err != nil {
		return rpc.IPv6Info{}, false
	}
	return rpc.IPv6Info{Address: a.String(), CIDR: p.String(), Gateway: gatewayV6, Mode: "slaac"}, true
}

// LeaseFixedIP records that DHCP handed out address.
func (m *Manager) LeaseFixedIP(ctx context.Context, req rpc.AddressRequest) (rpc.FixedIP, error) {
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return rpc.FixedIP{}, err
	}
	var inst *string
	var allocated bool
	err = m.pool.QueryRow(ctx, `UPDATE fixed_ips SET leased = true, updated_at = now() WHERE address = $1
		RETURNING instance_uuid::text, allocated`, addr).Scan(&inst, &allocated)
	if errors.Is(err, pgx.ErrNoRows) {
		return rpc.FixedIP{}, rpc.Errorf(rpc.CodeNotFound, "fixed address %s not found", addr)
	} else if err != nil {
		return rpc.FixedIP{}, err
	}
	if inst == nil || !allocated {
		m.log.Warn("lease of an address that is not allocated", zap.Stringer("address", addr), zap.String("mac", req.MAC))
	}
	return m.fixedIP(ctx, addr)
}

// ReleaseFixedIP records that DHCP released address; an address no longer
// allocated to an instance becomes free.
func (m *Manager) ReleaseFixedIP(ctx context.Context, req rpc.AddressRequest) (rpc.FixedIP, error) {
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return rpc.FixedIP{}, err
	}
	// A multi-host network is served by the hosts with an instance address
	// on it: freeing the last one on a host means the host should tear the
	// network down, so that host is told.
	var (
		oldHost *string
		network int64
		freed   bool
	)
	err = m.pool.QueryRow(ctx, `
		WITH old AS (
			SELECT f.id, f.host, f.network_id, n.multi_host FROM fixed_ips f JOIN networks n ON n.id = f.network_id
			WHERE f.address = $1 FOR UPDATE OF f)
		UPDATE fixed_ips f SET leased = false, updated_at = now(),
			instance_uuid = CASE WHEN f.allocated THEN f.instance_uuid END,
			host = CASE WHEN f.allocated THEN f.host END
		FROM old WHERE f.id = old.id
		RETURNING CASE WHEN old.multi_host THEN old.host END, old.network_id, f.host IS NULL`, addr).Scan(&oldHost, &network, &freed)
	if errors.Is(err, pgx.ErrNoRows) {
		return rpc.FixedIP{}, rpc.Errorf(rpc.CodeNotFound, "fixed address %s not found", addr)
	} else if err != nil {
		return rpc.FixedIP{}, err
	}
	if oldHost != nil && freed {
		m.notify(rpc.HostMethodRefresh, []hostTarget{{host: *oldHost, network: network}})
	}
	return m.fixedIP(ctx, addr)
}

// SweepStale frees addresses deallocated more than the disassociate
// timeout ago whose DHCP release never came. It returns how many it freed.
func (m *Manager) SweepStale(ctx context.Context) (int64, error) {
	tag, err := m.pool.Exec(ctx, `UPDATE fixed_ips SET instance_uuid = NULL, host = NULL, leased = false, updated_at = now()
		WHERE NOT allocated AND instance_uuid IS NOT NULL AND virtual_interface_id IS NULL
			AND updated_at < now() - $1::interval`, m.cfg.DisassociateTimeout.String())
	if err != nil {
		return 0, err
	}
	if n := tag.RowsAffected(); n > 0 {
		m.log.Info("stale fixed IPs freed", zap.Int64("count", n), zap.Duration("timeout", m.cfg.DisassociateTimeout))
	}
	return tag.RowsAffected(), nil
}

// RunSweeper calls SweepStale and SweepRequestIDs every interval until ctx
// ends.
func (m *Manager) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.SweepStale(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("sweep stale fixed IPs", zap.Error(err))
			}
			if _, err := m.SweepRequestIDs(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("sweep request ids", zap.Error(err))
			}
		}
	}
}

const fixedIPColumns = `host(f.address), f.network_id, n.label, coalesce(f.instance_uuid::text, ''),
	coalesce(v.address::text, ''), coalesce(f.host, ''), f.allocated, f.leased, f.reserved, f.updated_at`

const fixedIPFrom = ` FROM fixed_ips f JOIN networks n ON n.id = f.network_id
	LEFT JOIN virtual_interfaces v ON v.id = f.virtual_interface_id `

func scanFixedIP(r pgx.CollectableRow) (rpc.FixedIP, error) {
	var f rpc.FixedIP
	var updated time.Time
	err := r.Scan(&f.Address, &f.NetworkID, &f.NetworkLabel, &f.InstanceUUID, &f.VIFAddress, &f.Host,
		&f.Allocated, &f.Leased, &f.Reserved, &updated)
	f.UpdatedAt = updated.UTC().Format(time.RFC3339)
	return f, err
}

func (m *Manager) listFixedIPs(ctx context.Context, where string, args ...any) ([]rpc.FixedIP, error) {
	rows, err := m.pool.Query(ctx, "SELECT "+fixedIPColumns+fixedIPFrom+where, args...)
	if err != nil {
		return nil, err
	}
	ips, err := pgx.CollectRows(rows, scanFixedIP)
	if ips == nil {
		ips = []rpc.FixedIP{}
	}
	return ips, err
}

func (m *Manager) fixedIP(ctx context.Context, addr netip.Addr) (rpc.FixedIP, error) {
	ips, err := m.listFixedIPs(ctx, "WHERE f.address = $1", addr)
	if err != nil {
		return rpc.FixedIP{}, err
	}
	if len(ips) == 0 {
		return rpc.FixedIP{}, rpc.Errorf(rpc.CodeNotFound, "fixed address %s not found", addr)
	}
	return ips[0], nil
}

func (m *Manager) handleGetFixedIPByAddress(ctx context.Context, data []byte) (any, error) {
	var req rpc.AddressRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return nil, err
	}
	return m.fixedIP(ctx, addr)
}

func (m *Manager) handleGetFixedIPsByInstance(ctx context.Context, data []byte) (any, error) {
	var req rpc.InstanceRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	inst, err := parseInstance(req.InstanceUUID)
	if err != nil {
		return nil, err
	}
	ips, err := m.listFixedIPs(ctx, "WHERE f.instance_uuid = $1 ORDER BY f.address", inst)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, rpc.Errorf(rpc.CodeNotFound, "instance %s has no fixed address", inst)
	}
	return rpc.FixedIPsReply{FixedIPs: ips}, nil
}

func (m *Manager) handleListFixedIPs(ctx context.Context, data []byte) (any, error) {
	var req rpc.ListFixedIPsRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	var after *netip.Addr
	if req.Cursor != "" {
		a, err := parseFixedAddr("cursor", req.Cursor)
		if err != nil {
			return nil, err
		}
		after = &a
	}
	var netID *int64
	if req.Network != "" {
		id, err := resolveNetwork(ctx, m.pool, req.Network)
		if err != nil {
			return nil, err
		}
		netID = &id
	}
	var inst *string
	if req.Instance != "" {
		s, err := parseInstance(req.Instance)
		if err != nil {
			return nil, err
		}
		inst = &s
	}
	ips, err := m.listFixedIPs(ctx, `WHERE ($1::bigint IS NULL OR f.network_id = $1)
		AND ($2::uuid IS NULL OR f.instance_uuid = $2)
		AND ($3 OR f.instance_uuid IS NOT NULL OR f.allocated OR f.leased OR f.reserved)
		AND ($5::inet IS NULL OR f.address > $5)
		ORDER BY f.address LIMIT $4`, netID, inst, req.All, limit+1, after)
	if err != nil {
		return nil, err
	}
	r := rpc.FixedIPsReply{FixedIPs: ips}
	if len(ips) > limit {
		r.FixedIPs = ips[:limit]
		r.NextCursor = ips[limit-1].Address
	}
	return r, nil
}

// pageLimit checks a page's limit: 0 for the default, rpc.MaxPage, up to
// that.
func pageLimit(limit int) (int, error) {
	if limit < 0 || limit > rpc.MaxPage {
		return 0, badArg("limit", "limit %d: want 1 to %d (and the next_cursor of a reply for more)", limit, rpc.MaxPage)
	}
	if limit == 0 {
		return rpc.MaxPage, nil
	}
	return limit, nil
}

func (m *Manager) handleReserveFixedIP(ctx context.Context, data []byte) (any, error) {
	return m.setReserved(ctx, data, true)
}

func (m *Manager) handleUnreserveFixedIP(ctx context.Context, data []byte) (any, error) {
	return m.setReserved(ctx, data, false)
}

// setReserved reserves a free address or unreserves one; doing it twice is
// not an error. An address in use cannot be reserved, and a network's own
// addresses (network, gateway, broadcast, VPN, DHCP server) stay reserved.
func (m *Manager) setReserved(ctx context.Context, data []byte, reserve bool) (any, error) {
	var req rpc.AddressRequest
	if err := rpc.Decode(data, &req); err != nil {
		return nil, err
	}
	addr, err := parseFixedAddr("address", req.Address)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		var (
			inst          *string
			allocated     bool
			leased, infra bool
			label         string
		)
		err := tx.QueryRow(ctx, `SELECT f.instance_uuid::text, f.allocated, f.leased, n.label,
				f.address IN (host(n.cidr)::inet, n.broadcast, coalesce(n.gateway, '0.0.0.0'),
					coalesce(n.vpn_private_address, '0.0.0.0'), coalesce(n.dhcp_server, '0.0.0.0'))
			FROM fixed_ips f JOIN networks n ON n.id = f.network_id WHERE f.address = $1 FOR UPDATE OF f`, addr).
			Scan(&inst, &allocated, &leased, &label, &infra)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return rpc.Errorf(rpc.CodeNotFound, "fixed address %s not found", addr)
		case err != nil:
			return err
		case reserve && (inst != nil || allocated || leased):
			owner := "leased"
			if inst != nil {
				owner = "held by instance " + *inst
			}
			return rpc.Errorf(rpc.CodeInUse, "fixed address %s is %s", addr, owner)
		case !reserve && infra:
			return rpc.Errorf(rpc.CodeConflict, "fixed address %s is the network, gateway, broadcast, VPN or DHCP address of network %s and stays reserved", addr, label)
		}
		_, err = tx.Exec(ctx, "UPDATE fixed_ips SET reserved = $2, updated_at = now() WHERE address = $1", addr, reserve)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m.fixedIP(ctx, addr)
}
