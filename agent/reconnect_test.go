package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"novanet/internal/poll"
	"novanet/natsembed"
	"novanet/rpc"
)

// countingManager counts full desired-state reads: one per convergence.
type countingManager struct {
	*fakeManager
	full atomic.Int32
}

func (m *countingManager) HostState(ctx context.Context, host string, id int64) (rpc.HostState, error) {
	if id == 0 {
		m.full.Add(1)
	}
	return m.fakeManager.HostState(ctx, host, id)
}

// Notices sent while the agent's NATS connection is down are lost; the
// agent converges in full as soon as it is back, on another node of the
// cluster here.
func TestConvergeAfterReconnect(t *testing.T) {
	var nodes []*natsembed.Server
	for _, name := range []string{"n1", "n2"} {
		cl := natsembed.Cluster{Name: "agent-test", Listen: "127.0.0.1:0"}
		if len(nodes) > 0 {
			cl.Routes = []string{nodes[0].RouteURL()}
		}
		s, err := natsembed.Start("127.0.0.1:0", natsembed.WithServerName(name), natsembed.WithCluster(cl))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		nodes = append(nodes, s)
	}
	nc, err := nats.Connect(nodes[0].ClientURL()+","+nodes[1].ClientURL(), nats.DontRandomize(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	mgr := &countingManager{fakeManager: &fakeManager{}}
	drv := &fakeDriver{t: t, made: map[int64]string{}, fail: map[int64]bool{}}
	a, err := New(Config{Host: "hv1", Driver: "flatdhcp", Version: "0.0.0-test", StateDir: t.TempDir(),
		HeartbeatInterval: time.Hour, ConvergeInterval: time.Hour, ReconnectSpread: 50 * time.Millisecond},
		zap.NewNop(), mgr, drv, &fakeHost{})
	if err != nil {
		t.Fatal(err)
	}
	drv.store = a.store
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nc) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	poll.Until(t, "the first convergence", func() bool { return mgr.full.Load() == 1 })

	nodes[0].Shutdown()
	poll.Until(t, "a convergence after the reconnection to n2", func() bool {
		return mgr.full.Load() == 2 && nc.ConnectedServerName() == "n2"
	})
}

// flakyManager fails the heartbeats numbered in fail (from 1), as a
// manager restarting or overloaded would, and counts them.
type flakyManager struct {
	*countingManager
	beats atomic.Int32
	fail  map[int32]bool
}

func (m *flakyManager) RegisterHost(ctx context.Context, req rpc.RegisterHostRequest) (rpc.HostInfo, error) {
	if m.fail[m.beats.Add(1)] {
		return rpc.HostInfo{}, rpc.Errorf(rpc.CodeUnavailable, "no reply in time")
	}
	return m.countingManager.RegisterHost(ctx, req)
}

// A heartbeat that fails (a manager restarting, a timeout) does not make
// the next one converge the whole host: only a host not yet converged
// since its start does so.
func TestFailedHeartbeatDoesNotConverge(t *testing.T) {
	s, err := natsembed.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	mgr := &flakyManager{countingManager: &countingManager{fakeManager: &fakeManager{}},
		fail: map[int32]bool{2: true, 3: true, 5: true}}
	drv := &fakeDriver{t: t, made: map[int64]string{}, fail: map[int64]bool{}}
	a, err := New(Config{Host: "hv1", Driver: "flatdhcp", Version: "0.0.0-test", StateDir: t.TempDir(),
		HeartbeatInterval: 5 * time.Millisecond, ConvergeInterval: time.Hour}, zap.NewNop(), mgr, drv, &fakeHost{})
	if err != nil {
		t.Fatal(err)
	}
	drv.store = a.store
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nc) }()
	poll.Until(t, "ten heartbeats", func() bool { return mgr.beats.Load() >= 10 })
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if n := mgr.full.Load(); n != 1 {
		t.Errorf("%d full convergences over 10 heartbeats of which 3 failed, want 1 (at start)", n)
	}
}
