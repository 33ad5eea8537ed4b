package manager_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"novanet/internal/poll"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// TestNoticesCoalesced: notices for one (host, network) asked for while
// one is in flight reach the agent as one more notice, not one each; a
// notice for another network is not held up behind them.
func TestNoticesCoalesced(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	nc := env.Connect(t)
	release := make(chan struct{})
	var (
		mu   sync.Mutex
		got  = map[int64]int{}
		seen = make(chan int64, 1000)
	)
	sub, err := nc.Subscribe(rpc.HostPrefix+".hv1.>", func(m *nats.Msg) {
		var req rpc.HostNetworkRequest
		if err := rpc.Decode(m.Data, &req); err != nil {
			t.Errorf("notice %s: %v", m.Subject, err)
		}
		mu.Lock()
		got[req.NetworkID]++
		first := req.NetworkID == 5 && got[5] == 1
		mu.Unlock()
		seen <- req.NetworkID
		if first {
			<-release // the agent is busy with network 5's first notice
		}
		_ = m.Respond([]byte(`{"changes":[]}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	env.Manager.Notify(rpc.HostMethodSetup, "hv1", 5)
	if id := waitNotice(t, seen); id != 5 {
		t.Fatalf("first notice for network %d, want 5", id)
	}
	for range 200 {
		env.Manager.Notify(rpc.HostMethodRefresh, "hv1", 5)
	}
	close(release)
	poll.Until(t, "every notice sent", func() bool { return env.Manager.NoticesPending() == 0 })
	mu.Lock()
	n := got[5]
	mu.Unlock()
	if n != 2 {
		t.Errorf("network 5: %d notices reached the agent for 201 asked, want 2 (the first, and one after it)", n)
	}
}

func waitNotice(t *testing.T, seen <-chan int64) int64 {
	t.Helper()
	select {
	case id := <-seen:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no notice reached the agent in 10s")
	}
	return 0
}
