package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"novanet/client"
	"novanet/natsembed"
	"novanet/rpc"
)

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := natsembed.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// fake answers a manager method with the replies in turn (nil: success
// with {}), and records each request's headers.
type fake struct {
	mu      sync.Mutex
	replies []*rpc.Error
	ids     []string
}

func (f *fake) serve(t *testing.T, nc *nats.Conn, method string) {
	t.Helper()
	_, err := nc.Subscribe(rpc.Subject(method), func(m *nats.Msg) {
		f.mu.Lock()
		f.ids = append(f.ids, m.Header.Get(rpc.HeaderRequestID))
		var e *rpc.Error
		if len(f.replies) > 0 {
			e, f.replies = f.replies[0], f.replies[1:]
		}
		f.mu.Unlock()
		if _, err := rpc.ParseDeadline(m.Header.Get(rpc.HeaderDeadline)); err != nil || m.Header.Get(rpc.HeaderDeadline) == "" {
			e = rpc.Errorf(rpc.CodeInvalidArgument, "deadline %q", m.Header.Get(rpc.HeaderDeadline))
		}
		if e != nil {
			_ = m.RespondMsg(rpc.ErrorMsg(m.Reply, e))
			return
		}
		b, _ := json.Marshal(rpc.FloatingIP{Address: "203.0.113.1"})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestRetryUnavailable: unavailable is retried with the same request id;
// other codes are answers, returned at once.
func TestRetryUnavailable(t *testing.T) {
	nc := connect(t)
	f := &fake{replies: []*rpc.Error{rpc.Errorf(rpc.CodeUnavailable, "db"), rpc.Errorf(rpc.CodeUnavailable, "db")}}
	f.serve(t, nc, rpc.MethodAllocateFloatingIP)
	c := client.New(nc, 20*time.Second)
	fl, err := c.AllocateFloatingIP(context.Background(), rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
	if err != nil || fl.Address != "203.0.113.1" {
		t.Fatalf("allocate: %+v, %v", fl, err)
	}
	if _, err := uuid.Parse(f.ids[0]); err != nil || len(f.ids) != 3 || f.ids[1] != f.ids[0] || f.ids[2] != f.ids[0] {
		t.Fatalf("attempts' request ids %v: want three of one UUID", f.ids)
	}

	f2 := &fake{replies: []*rpc.Error{rpc.Errorf(rpc.CodeQuotaExceeded, "quota")}}
	f2.serve(t, nc, rpc.MethodQuotaShow)
	_, err = c.QuotaShow(context.Background(), "p1")
	if !errors.Is(err, rpc.ErrQuotaExceeded) || len(f2.ids) != 1 {
		t.Fatalf("quota_exceeded: %v after %d attempts, want it after 1", err, len(f2.ids))
	}
	// A second call is a new request: a new id.
	if _, err := c.AllocateFloatingIP(context.Background(), rpc.AllocateFloatingIPRequest{ProjectID: "p1"}); err != nil || f.ids[3] == f.ids[0] {
		t.Fatalf("second call: %v, ids %v", err, f.ids)
	}
}

// TestNoManager: with nothing subscribed the call ends unavailable after
// about one attempt's timeout of no responders, well before its own
// deadline.
func TestNoManager(t *testing.T) {
	c := client.New(connect(t), 0, client.WithAttemptTimeout(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Networks(ctx, "")
	if !errors.Is(err, rpc.ErrUnavailable) || !strings.Contains(err.Error(), "no network-manager answers") {
		t.Fatalf("no manager: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the call used its whole minute")
	}
}
