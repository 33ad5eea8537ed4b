package manager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"novanet/rpc"
)

// Request ids (the Novanet-Request-Id header) make retries of the methods
// that are not idempotent by nature safe: the first request with an id
// runs and stores its reply under (method, id) in rpc_requests, in the
// transaction that makes its change (claimTx first, storeTx last); a
// request with the same method and id gets that reply and changes
// nothing. A duplicate that comes while the first is still running waits
// for it on the table's unique index: if the first commits, the duplicate
// reads its reply; if it fails, nothing was stored and the duplicate runs.
//
// The other methods need no id: they are keyed by what they change
// (allocate_for_instance by the instance, lease and release by the
// address, associate by the pair, quota_set by the project), or a repeat
// finds nothing left to do (deallocate_for_instance, deallocate and
// disassociate of a floating IP), or they only read.
var requestIDs = map[string]bool{
	rpc.MethodAllocateFloatingIP:        true,
	rpc.MethodCreateFloatingIPs:         true,
	rpc.MethodDeleteFloatingIPs:         true,
	rpc.MethodCreateNetworks:            true,
	rpc.MethodDeleteNetwork:             true,
	rpc.MethodAddFixedIPToInstance:      true,
	rpc.MethodRemoveFixedIPFromInstance: true,
}

type requestKey struct {
	method, id string
	sum        [sha256.Size]byte
}

type requestKeyCtx struct{}

func withRequestKey(ctx context.Context, method, id string, body []byte) context.Context {
	return context.WithValue(ctx, requestKeyCtx{}, requestKey{method: method, id: id, sum: sha256.Sum256(body)})
}

// claim takes (method, id) in tx. It returns the stored reply when a
// request with that id already committed one; then the caller returns it
// and does nothing else. A request with the same id but another body is
// a conflict: an id names one request.
func claim(ctx context.Context, tx pgx.Tx, k requestKey) ([]byte, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO rpc_requests (method, request_id, body_sha256) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, k.method, k.id, k.sum[:])
	if err != nil || tag.RowsAffected() == 1 {
		return nil, err
	}
	var sum, reply []byte
	err = tx.QueryRow(ctx, `SELECT body_sha256, reply FROM rpc_requests WHERE method = $1 AND request_id = $2`,
		k.method, k.id).Scan(&sum, &reply)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && reply == nil {
		// Swept meanwhile, or stored without a reply: should not happen.
		return nil, rpc.Errorf(rpc.CodeUnavailable, "request id %q of %s is being forgotten; retry", k.id, k.method)
	} else if err != nil {
		return nil, err
	}
	if !bytes.Equal(sum, k.sum[:]) {
		return nil, rpc.Errorf(rpc.CodeConflict, "request id %q was used for another %s request (a different body); use a new id for a new request",
			k.id, k.method)
	}
	return reply, nil
}

func store(ctx context.Context, tx pgx.Tx, k requestKey, reply []byte) error {
	_, err := tx.Exec(ctx, `UPDATE rpc_requests SET reply = $3 WHERE method = $1 AND request_id = $2`, k.method, k.id, reply)
	return err
}

// claimTx is claim in the method's transaction, with the request key the dispatcher put in ctx. With no key (no request id, or a
// direct call) it returns false. With a stored reply it decodes it into
// reply and returns true: the method returns that and does nothing else.
func (m *Manager) claimTx(ctx context.Context, tx pgx.Tx, reply any) (bool, error) {
	k, ok := ctx.Value(requestKeyCtx{}).(requestKey)
	if !ok {
		return false, nil
	}
	b, err := claim(ctx, tx, k)
	if err != nil || b == nil {
		return false, err
	}
	if err := json.Unmarshal(b, reply); err != nil {
		return false, err
	}
	m.metrics.replays.WithLabelValues(k.method).Inc()
	m.log.Info("request id seen before: stored reply", zap.String("method", k.method), zap.String("request_id", k.id))
	return true, nil
}

// storeTx stores reply in tx for the request key in ctx, if any.
func storeTx(ctx context.Context, tx pgx.Tx, reply any) error {
	k, ok := ctx.Value(requestKeyCtx{}).(requestKey)
	if !ok {
		return nil
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	return store(ctx, tx, k, b)
}

// SweepRequestIDs deletes stored replies older than RequestIDWindow and
// returns how many.
func (m *Manager) SweepRequestIDs(ctx context.Context) (int64, error) {
	tag, err := m.pool.Exec(ctx, `DELETE FROM rpc_requests WHERE created_at < now() - $1::interval`,
		m.cfg.RequestIDWindow.String())
	if err != nil {
		return 0, err
	}
	if n := tag.RowsAffected(); n > 0 {
		m.log.Info("request ids forgotten", zap.Int64("count", n), zap.Duration("window", m.cfg.RequestIDWindow))
	}
	return tag.RowsAffected(), nil
}
