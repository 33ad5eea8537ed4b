package manager_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"novanet/internal/dbfill"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/natsembed"
	"novanet/rpc"
)

// TestReplyTooLarge: a reply past the connection's max payload (the state
// of a host serving a network of 20,000 instances, about 2 MB, against an
// external nats-server's default of 1 MiB) reaches its caller as too_large, not as silence until the
// caller's timeout; the manager still answers after it.
func TestReplyTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a network with 20,000 interfaces")
	}
	env := testenv.StartNATS(t, manager.Config{Mode: manager.ModeFlatDHCP}, natsembed.WithMaxPayload(1<<20))
	net := create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/16", NumNetworks: 1, NetworkSize: 65536,
		Bridge: "br100", BridgeInterface: "eth1"})[0]
	if _, err := env.Client.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Pool.Exec(ctx, `UPDATE networks SET host = 'hv1' WHERE id = $1`, net.ID); err != nil {
		t.Fatal(err)
	}
	if err := dbfill.Interfaces(ctx, env.Pool, net.ID, "p", 20000); err != nil {
		t.Fatal(err)
	}
	_, err := env.Client.HostState(ctx, "hv1", 0)
	wantCode(t, "get_host_state of 20,000 DHCP hosts", err, rpc.CodeTooLarge)
	if err != nil && !strings.Contains(err.Error(), "max payload") {
		t.Errorf("too_large error %q does not say what the limit is", err)
	}
	// A smaller reply of the same method is sent.
	if _, err := env.Client.HostState(ctx, "hv2", 0); err != nil {
		t.Errorf("get_host_state of an empty host after too_large: %v", err)
	}
}

// TestShedWhenQueueFull: with one worker busy and the one queue slot
// taken, further requests are answered unavailable at once (the worker
// is still blocked when they come back), and the requests taken are
// served once the worker is free.
func TestShedWhenQueueFull(t *testing.T) {
	env := testenv.StartConfig(t, manager.Config{Mode: manager.ModeFlatDHCP, Workers: 1, Queue: 1})
	tx, err := env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// get_all_networks waits for this lock: the worker stays busy.
	if _, err := tx.Exec(ctx, "LOCK TABLE networks IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	nc := env.Connect(t)
	const sent = 5
	replies := make(chan *nats.Msg, sent)
	inbox := nats.NewInbox()
	sub, err := nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck
	for i := 0; i < sent; i++ {
		if err := nc.PublishRequest(rpc.Subject(rpc.MethodGetAllNetworks), inbox, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// At most two are taken (one running, one queued): the other three
	// come back while the lock is held.
	for i := 0; i < sent-2; i++ {
		select {
		case m := <-replies:
			var e rpc.Error
			if m.Header.Get(rpc.HeaderErrorCode) != "503" || json.Unmarshal(m.Data, &e) != nil ||
				e.Code != rpc.CodeUnavailable || !strings.Contains(e.Message, "overloaded") {
				t.Fatalf("reply %d while the worker is busy: %s %q, want unavailable (overloaded)", i, m.Header, m.Data)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d requests shed in 20s, want %d", i, sent, sent-2)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var ok, shed int
	for ok+shed < sent-(sent-2) {
		select {
		case m := <-replies:
			if m.Header.Get(rpc.HeaderErrorCode) == "" {
				ok++
			} else {
				shed++
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no reply to the requests taken within 20s of the lock's release (%d ok, %d shed)", ok, shed)
		}
	}
	if ok == 0 {
		t.Errorf("no request taken while the worker was busy was served after (%d shed)", shed)
	}
}
