package manager

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"novanet/rpc"
)

// TestErrorClasses: what the database or the connection says maps to the
// code that tells the caller what to do.
func TestErrorClasses(t *testing.T) {
	m := &Manager{log: zap.NewNop()}
	pg := func(code string) error {
		return fmt.Errorf("allocate: %w", &pgconn.PgError{Code: code, Message: "msg " + code})
	}
	for _, tc := range []struct {
		err  error
		want rpc.Code
	}{
		{pg("57P01"), rpc.CodeUnavailable}, // admin_shutdown: a restart
		{pg("57P02"), rpc.CodeUnavailable}, // crash_shutdown
		{pg("57P03"), rpc.CodeUnavailable}, // cannot_connect_now: starting up
		{pg("08006"), rpc.CodeUnavailable}, // connection_failure
		{pg("40001"), rpc.CodeUnavailable}, // serialization_failure
		{pg("40P01"), rpc.CodeUnavailable}, // deadlock_detected
		{pg("53300"), rpc.CodeUnavailable}, // too_many_connections
		{pg("57014"), rpc.CodeUnavailable}, // query_canceled
		{pg("25006"), rpc.CodeUnavailable}, // read_only_sql_transaction
		{fmt.Errorf("commit: %w", io.ErrUnexpectedEOF), rpc.CodeUnavailable},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), rpc.CodeUnavailable},
		{fmt.Errorf("query: %w", pgconn.ErrConnClosed), rpc.CodeUnavailable},
		{fmt.Errorf("tx: %w", context.DeadlineExceeded), rpc.CodeUnavailable},
		{pg("23505"), rpc.CodeConflict},
		{pg("22P02"), rpc.CodeInvalidArgument},
		{pg("42P01"), rpc.CodeInternal}, // undefined_table: a bug
		{fmt.Errorf("something else"), rpc.CodeInternal},
		{rpc.Errorf(rpc.CodeNotFound, "x"), rpc.CodeNotFound},
	} {
		if got := m.toRPCError("m", tc.err); got.Code != tc.want {
			t.Errorf("%v: %s (%s), want %s", tc.err, got.Code, got.Message, tc.want)
		}
	}
	got := m.toRPCError("allocate_floating_ip", pg("57P01"))
	if want := "database unavailable (database restarting: msg 57P01); retry"; got.Message != want {
		t.Errorf("message %q, want %q", got.Message, want)
	}
}
