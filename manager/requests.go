package manager

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"novanet/rpc"
)

// Request ids (the Novanet-Request-Id header) make retries of methods that
// are not idempotent by nature safe: the first request with an id runs,
// and its reply is stored under (method, id) in rpc_requests; a request
// with the same method and id gets that reply and changes nothing. Two
// ways, by method:
//
//   - idInTx: the method stores the reply in its own transaction (claimTx
//     and storeTx), atomically with the change it answers for.
//   - idHeld: the dispatcher holds the id in a transaction of its own (on
//     the held pool) while the method runs in its transactions, and stores
//     the reply right after the method returns. A replica that dies between
//     the method's commit and that store has the id forgotten, so the retry
//     runs again; the gap is one round trip.
//
// Either way a duplicate that comes while the first is still running waits
// for it (PostgreSQL's unique index does the waiting): if the first fails,
// nothing is stored and the duplicate runs itself.
//
// Methods that are idempotent by nature need no id: they are keyed by
// what they change (allocate_for_instance by the instance, lease and
// release by the address, associate by the pair, quota_set by the
// project), or a repeat finds nothing left to do (deallocate_for_instance,
// deallocate and disassociate of a floating IP).
type idMode int

const (
	idIgnored idMode = iota
	idInTx
	idHeld
)

var requestIDs = map[string]idMode{
	rpc.MethodAllocateFloatingIP: idInTx,
	rpc.MethodCreateFloatingIPs:  idInTx,
	rpc.MethodDeleteFloatingIPs:  idInTx,

	rpc.MethodCreateNetworks:            idHeld,
	rpc.MethodDeleteNetwork:             idHeld,
	rpc.MethodAddFixedIPToInstance:      idHeld,
	rpc.MethodRemoveFixedIPFromInstance: idHeld,
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

// claimTx is claim for a method in its own transaction (idInTx), with the
// request key the dispatcher put in ctx. With no key (no request id, or a
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

// once runs an idHeld method for a request with an id.
func (m *Manager) once(ctx context.Context, method, id string, data []byte, h handlerFunc) ([]byte, error) {
	k := requestKey{method: method, id: id, sum: sha256.Sum256(data)}
	tx, err := m.held.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		// Also after ctx ends: a rollback that cannot be sent ends with
		// the connection, which ends the transaction too.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = tx.Rollback(rctx)
		cancel()
	}()
	if b, err := claim(ctx, tx, k); err != nil || b != nil {
		if b != nil {
			m.metrics.replays.WithLabelValues(method).Inc()
			m.log.Info("request id seen before: stored reply", zap.String("method", method), zap.String("request_id", id))
		}
		return b, err
	}
	res, err := h(ctx, data)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	// The change is made: whatever happens to the store, the caller gets
	// the reply. Without the store a retry runs again.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := store(sctx, tx, k, b); err != nil {
		m.log.Warn("request id not stored", zap.String("method", method), zap.String("request_id", id), zap.Error(err))
	} else if err := tx.Commit(sctx); err != nil {
		m.log.Warn("request id not stored", zap.String("method", method), zap.String("request_id", id), zap.Error(err))
	}
	return b, nil
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
