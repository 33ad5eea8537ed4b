package manager

import (
	"context"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"novanet/rpc"
)

func (m *Manager) handleSetNetworkStopped(stopped bool) handlerFunc {
	return func(ctx context.Context, data []byte) (any, error) {
		var req rpc.NetworkRef
		if err := rpc.Decode(data, &req); err != nil {
			return nil, err
		}
		return m.SetNetworkStopped(ctx, req.Network, stopped)
	}
}

// SetNetworkStopped stops a network (stopped true) or starts it again.
// A stopped network keeps its addresses, interfaces and host; get_host_state
// leaves it out, so the agents that have it tear it down when told, and
// set it up again after start. Stopping a stopped network (or starting a
// started one) changes nothing, and tells the agents again.
func (m *Manager) SetNetworkStopped(ctx context.Context, ref string, stopped bool) (rpc.Network, error) {
	var (
		n       rpc.Network
		targets []hostTarget
		changed bool
	)
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		id, err := resolveNetwork(ctx, tx, ref)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE networks SET stopped = $2, updated_at = now() WHERE id = $1 AND stopped <> $2", id, stopped)
		if err != nil {
			return err
		}
		changed = tag.RowsAffected() == 1
		nets, err := m.listNetworks(ctx, tx, "WHERE n.id = $1", "", id)
		if err != nil {
			return err
		}
		if len(nets) == 0 {
			return rpc.Errorf(rpc.CodeNotFound, "network %q not found", ref)
		}
		n = nets[0]
		targets, err = networkTargets(ctx, tx, id)
		return err
	})
	if err != nil {
		return rpc.Network{}, err
	}
	method, what := rpc.HostMethodSetup, "network started"
	if stopped {
		method, what = rpc.HostMethodTeardown, "network stopped"
	}
	if changed {
		m.log.Info(what, zap.String("uuid", n.UUID), zap.String("cidr", n.CIDR), zap.Int("hosts", len(targets)))
	}
	m.notify(method, targets)
	return n, nil
}

// networkTargets returns every agent that has (or, started, would have)
// network id: its host, and the hosts of the instances with an address on
// it (multi-host networks, and the layer 2 of single-host ones).
func networkTargets(ctx context.Context, tx pgx.Tx, id int64) ([]hostTarget, error) {
	rows, err := tx.Query(ctx, `
		SELECT host, $1::bigint FROM networks WHERE id = $1 AND host IS NOT NULL
		UNION
		SELECT DISTINCT f.host, $1::bigint FROM fixed_ips f
		WHERE f.network_id = $1 AND f.host IS NOT NULL AND f.instance_uuid IS NOT NULL`, id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanTarget)
}
