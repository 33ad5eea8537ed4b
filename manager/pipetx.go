package manager

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pipeTx is a transaction started by a BEGIN sent in a batch with its
// first statements, so that starting it costs no round trip of its own,
// and that may be committed by a COMMIT at the end of its last batch. It
// is a pgx.Tx so that the code of the slow paths runs in it unchanged.
type pipeTx struct {
	conn   *pgxpool.Conn
	closed bool
}

var errNested = errors.New("nested transactions are not supported here")

// beginBatch acquires a connection and sends BEGIN followed by b's
// statements in one round trip. The BEGIN's result is read; the caller
// reads the others from the returned results and closes them, then ends
// the transaction with Commit or Rollback (safe to call after Commit)
// and calls release.
func beginBatch(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) (*pipeTx, pgx.BatchResults, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	full := &pgx.Batch{QueuedQueries: append([]*pgx.QueuedQuery{{SQL: "BEGIN"}}, b.QueuedQueries...)}
	br := conn.SendBatch(ctx, full)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		conn.Release()
		return nil, nil, err
	}
	return &pipeTx{conn: conn}, br, nil
}

// release ends the transaction if it is still open and returns the
// connection to the pool (which drops it if it is still in a
// transaction).
func (t *pipeTx) release(ctx context.Context) {
	_ = t.Rollback(ctx)
	t.conn.Release()
}

// committed records that a COMMIT sent in a batch succeeded.
func (t *pipeTx) committed() { t.closed = true }

func (t *pipeTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNested }

func (t *pipeTx) Commit(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	tag, err := t.conn.Exec(ctx, "COMMIT")
	if err == nil && tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return err
}

func (t *pipeTx) Rollback(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	_, err := t.conn.Exec(ctx, "ROLLBACK")
	return err
}

func (t *pipeTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return t.conn.CopyFrom(ctx, table, cols, src)
}

func (t *pipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.conn.SendBatch(ctx, b)
}

func (t *pipeTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

func (t *pipeTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Conn().Prepare(ctx, name, sql)
}

func (t *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.conn.Exec(ctx, sql, args...)
}

func (t *pipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.conn.Query(ctx, sql, args...)
}

func (t *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.conn.QueryRow(ctx, sql, args...)
}

func (t *pipeTx) Conn() *pgx.Conn { return t.conn.Conn() }
