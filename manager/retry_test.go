package manager_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"novanet/client"
	"novanet/internal/pgtest"
	"novanet/internal/testenv"
	"novanet/manager"
	"novanet/rpc"
)

// rawReply is one reply to a request sent with send.
type rawReply struct {
	fl  rpc.FloatingIP
	err *rpc.Error
}

// send publishes body to method with the given request id and deadline
// (either may be empty) and returns a channel with the reply.
func send(t *testing.T, env *testenv.Env, method, id string, deadline time.Time, body string) <-chan rawReply {
	t.Helper()
	nc := env.Connect(t)
	msg := nats.NewMsg(rpc.Subject(method))
	msg.Data = []byte(body)
	if id != "" {
		msg.Header.Set(rpc.HeaderRequestID, id)
	}
	if !deadline.IsZero() {
		msg.Header.Set(rpc.HeaderDeadline, rpc.FormatDeadline(deadline))
	}
	ch := make(chan rawReply, 1)
	go func() {
		var r rawReply
		resp, err := nc.RequestMsg(msg, 30*time.Second)
		switch {
		case err != nil:
			r.err = rpc.Errorf(rpc.CodeInternal, "request: %v", err)
		case resp.Header.Get(rpc.HeaderErrorCode) != "":
			r.err = &rpc.Error{}
			_ = json.Unmarshal(resp.Data, r.err)
		default:
			if err := json.Unmarshal(resp.Data, &r.fl); err != nil {
				r.err = rpc.Errorf(rpc.CodeInternal, "reply %q: %v", resp.Data, err)
			}
		}
		ch <- r
	}()
	return ch
}

func receive(t *testing.T, what string, ch <-chan rawReply) rawReply {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(40 * time.Second):
		t.Fatalf("%s: no reply", what)
		return rawReply{}
	}
}

// holdQuotas locks the quotas table in a transaction of the test's own, so
// that allocate_floating_ip blocks after taking its request id and quota
// lock; the returned function releases it.
func holdQuotas(t *testing.T, env *testenv.Env) func() {
	t.Helper()
	tx, err := env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE quotas IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { _ = tx.Commit(ctx) }) }
	t.Cleanup(release)
	return release
}

// waitLockWaiters polls until n sessions of the test's database wait for a
// lock.
func waitLockWaiters(t *testing.T, env *testenv.Env, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got int
		err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND backend_type = 'client backend'`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func projectFloating(t *testing.T, env *testenv.Env, project string) []string {
	t.Helper()
	rows, err := env.Pool.Query(ctx, "SELECT host(address) FROM floating_ips WHERE project_id = $1 ORDER BY address", project)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// TestFloatingRetryOneAddress: allocate_floating_ip sent again with the
// same request id, while the first is still running or after it finished,
// gives the project one address, the first one's.
func TestFloatingRetryOneAddress(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	env.AddManager(t, "0.1.1") // the retry may reach another replica
	createFloating(t, env, "nova", "203.0.113.0/24")
	body := `{"project_id":"p1"}`

	// The first is slow (it waits for a lock) when its retry comes.
	release := holdQuotas(t, env)
	first := send(t, env, rpc.MethodAllocateFloatingIP, "req-1", time.Time{}, body)
	waitLockWaiters(t, env, 1)
	retry := send(t, env, rpc.MethodAllocateFloatingIP, "req-1", time.Time{}, body)
	waitLockWaiters(t, env, 2) // the retry waits for the first's request id
	release()
	r1, r2 := receive(t, "first", first), receive(t, "retry", retry)
	if r1.err != nil || r2.err != nil || r1.fl != r2.fl || r1.fl.Address == "" {
		t.Fatalf("first %+v %v, retry %+v %v: want the same address", r1.fl, r1.err, r2.fl, r2.err)
	}
	// Long after the first finished (its reply lost, say).
	r3 := receive(t, "late retry", send(t, env, rpc.MethodAllocateFloatingIP, "req-1", time.Time{}, body))
	if r3.err != nil || r3.fl != r1.fl {
		t.Fatalf("late retry %+v %v, want %+v", r3.fl, r3.err, r1.fl)
	}
	if got := projectFloating(t, env, "p1"); len(got) != 1 || got[0] != r1.fl.Address {
		t.Fatalf("p1 holds %v, want [%s]", got, r1.fl.Address)
	}
	// Another id is another allocation; the same id with another body is
	// refused.
	r4 := receive(t, "new id", send(t, env, rpc.MethodAllocateFloatingIP, "req-2", time.Time{}, body))
	if r4.err != nil || r4.fl.Address == r1.fl.Address {
		t.Fatalf("new id: %+v %v", r4.fl, r4.err)
	}
	r5 := receive(t, "reused id", send(t, env, rpc.MethodAllocateFloatingIP, "req-1", time.Time{}, `{"project_id":"p2"}`))
	if r5.err == nil || r5.err.Code != rpc.CodeConflict || !strings.Contains(r5.err.Message, "used for another allocate_floating_ip request") {
		t.Fatalf("reused id: %+v %v, want conflict", r5.fl, r5.err)
	}
	if got := projectFloating(t, env, "p2"); len(got) != 0 {
		t.Fatalf("p2 holds %v", got)
	}
}

// TestClientRetriesAfterTimeout: the Go client's attempts time out while the
// manager is slow; it sends the call again with the same request id until
// one answers, and the project gets one address.
func TestClientRetriesAfterTimeout(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createFloating(t, env, "nova", "203.0.113.0/24")
	c := client.New(env.Connect(t), 30*time.Second, client.WithAttemptTimeout(500*time.Millisecond))

	// Every attempt is seen by a plain subscriber too.
	seen, err := env.Connect(t).SubscribeSync(rpc.Subject(rpc.MethodAllocateFloatingIP))
	if err != nil {
		t.Fatal(err)
	}
	release := holdQuotas(t, env)
	done := make(chan error, 1)
	var fl rpc.FloatingIP
	go func() {
		var err error
		fl, err = c.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
		done <- err
	}()
	var ids []string
	for len(ids) < 3 {
		msg, err := seen.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("attempt %d: %v", len(ids)+1, err)
		}
		d, err := rpc.ParseDeadline(msg.Header.Get(rpc.HeaderDeadline))
		if err != nil || d.IsZero() || time.Until(d) > 500*time.Millisecond {
			t.Fatalf("attempt deadline %q (%v)", msg.Header.Get(rpc.HeaderDeadline), err)
		}
		ids = append(ids, msg.Header.Get(rpc.HeaderRequestID))
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if _, err := uuid.Parse(ids[0]); err != nil || ids[1] != ids[0] || ids[2] != ids[0] {
		t.Fatalf("request ids of the attempts: %v, want one UUID", ids)
	}
	if got := projectFloating(t, env, "p1"); len(got) != 1 || got[0] != fl.Address {
		t.Fatalf("p1 holds %v, want [%s]", got, fl.Address)
	}
}

// TestClientRetriesPastSilentReplica: a replica that takes requests and
// never answers (killed mid-call) costs the Go client one attempt's timeout,
// not the whole call's: every call succeeds, through the live replica.
func TestClientRetriesPastSilentReplica(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	createFloating(t, env, "nova", "203.0.113.0/24")
	if _, err := env.Client.QuotaSet(ctx, "p1", rpc.ResourceFloatingIPs, -1); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		ids []string
	)
	silent := env.Connect(t)
	_, err := silent.QueueSubscribe(rpc.Subject(rpc.MethodAllocateFloatingIP), rpc.QueueGroup, func(m *nats.Msg) {
		mu.Lock()
		ids = append(ids, m.Header.Get(rpc.HeaderRequestID))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	swallowed := func() int { mu.Lock(); defer mu.Unlock(); return len(ids) }
	c := client.New(env.Connect(t), 30*time.Second, client.WithAttemptTimeout(time.Second))
	calls := 0
	// The queue group picks either subscriber: call until the silent one
	// took two attempts.
	for ; swallowed() < 2 && calls < 60; calls++ {
		if _, err := c.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"}); err != nil {
			t.Fatalf("allocation %d: %v", calls+1, err)
		}
	}
	if swallowed() < 2 {
		t.Fatalf("the silent replica took %d of %d calls' attempts", swallowed(), calls)
	}
	if got := projectFloating(t, env, "p1"); len(got) != calls {
		t.Fatalf("p1 holds %d addresses after %d calls", len(got), calls)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if _, err := uuid.Parse(id); err != nil {
			t.Fatalf("request id %q", id)
		}
	}
}

// TestExpiredRequestNotRun: a request whose caller's deadline passes while
// it waits for a worker is answered unavailable and not run.
func TestExpiredRequestNotRun(t *testing.T) {
	env := testenv.StartConfig(t, manager.Config{Mode: manager.ModeFlatDHCP, Workers: 1})
	createFloating(t, env, "nova", "203.0.113.0/24")
	release := holdQuotas(t, env)
	busy := send(t, env, rpc.MethodAllocateFloatingIP, "", time.Time{}, `{"project_id":"p0"}`)
	waitLockWaiters(t, env, 1) // the only worker is busy
	deadline := time.Now().Add(300 * time.Millisecond)
	late := send(t, env, rpc.MethodAllocateFloatingIP, "late-1", deadline, `{"project_id":"p1"}`)
	time.Sleep(time.Until(deadline) + 10*time.Millisecond) // the caller's deadline passes
	release()
	if r := receive(t, "busy", busy); r.err != nil {
		t.Fatalf("busy: %v", r.err)
	}
	r := receive(t, "late", late)
	if r.err == nil || r.err.Code != rpc.CodeUnavailable || !strings.Contains(r.err.Message, "not run: the caller's deadline passed") {
		t.Fatalf("late: %+v %v, want unavailable, not run", r.fl, r.err)
	}
	if got := projectFloating(t, env, "p1"); len(got) != 0 {
		t.Fatalf("the late request ran: p1 holds %v", got)
	}
	// A deadline already past on arrival, and a malformed one.
	r = receive(t, "past", send(t, env, rpc.MethodAllocateFloatingIP, "", time.Now().Add(-time.Second), `{"project_id":"p1"}`))
	if r.err == nil || r.err.Code != rpc.CodeUnavailable {
		t.Fatalf("past deadline: %+v %v", r.fl, r.err)
	}
	msg := nats.NewMsg(rpc.Subject(rpc.MethodAllocateFloatingIP))
	msg.Data = []byte(`{"project_id":"p1"}`)
	msg.Header.Set(rpc.HeaderDeadline, "tomorrow")
	msg.Header.Set(rpc.HeaderRequestID, "a b")
	resp, err := env.Connect(t).RequestMsg(msg, 20*time.Second)
	if err != nil || resp.Header.Get(rpc.HeaderErrorCode) != "400" {
		t.Fatalf("malformed headers: %v %v", resp, err)
	}
	if got := projectFloating(t, env, "p1"); len(got) != 0 {
		t.Fatalf("p1 holds %v", got)
	}
}

// TestPostgresRestart: a call under way when PostgreSQL restarts is
// unavailable, not internal, and the Go client's retry succeeds once the
// server is back.
func TestPostgresRestart(t *testing.T) {
	srv := pgtest.NewServer(t)
	pool, dbURL := srv.NewDB(t)
	env := testenv.StartOn(t, manager.Config{Mode: manager.ModeFlatDHCP}, pool, dbURL)
	createFloating(t, env, "nova", "203.0.113.0/24")

	// The call blocks on a lock held by a prepared transaction: it
	// outlives the restart, so the call cannot go on in the moment
	// between the holder's end and its own, whatever order the server
	// ends sessions in.
	t.Cleanup(func() { _, _ = env.Pool.Exec(ctx, "ROLLBACK PREPARED 'hold-quotas'") })
	if _, err := env.Pool.Exec(ctx, "BEGIN; LOCK TABLE quotas IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'hold-quotas'"); err != nil {
		t.Fatal(err)
	}
	inflight := send(t, env, rpc.MethodAllocateFloatingIP, "", time.Time{}, `{"project_id":"p1"}`)
	waitLockWaiters(t, env, 1)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	r := receive(t, "in flight", inflight)
	if r.err == nil || r.err.Code != rpc.CodeUnavailable || !strings.Contains(r.err.Message, "database unavailable") {
		t.Fatalf("call under way at the restart: %+v %v, want unavailable", r.fl, r.err)
	}
	env.Pool.Reset() // the test's own connections died with the server
	if _, err := env.Pool.Exec(ctx, "COMMIT PREPARED 'hold-quotas'"); err != nil {
		t.Fatal(err)
	}
	fl, err := env.Client.AllocateFloatingIP(ctx, rpc.AllocateFloatingIPRequest{ProjectID: "p1"})
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if got := projectFloating(t, env, "p1"); len(got) != 1 || got[0] != fl.Address {
		t.Fatalf("p1 holds %v, want [%s]", got, fl.Address)
	}
}

// TestRequestIDsOtherMethods: create_networks, add_fixed_ip_to_instance,
// remove_fixed_ip_from_instance and delete_network, which would answer
// conflict or not_found when repeated, answer a retry with the same
// request id with the first reply.
func TestRequestIDsOtherMethods(t *testing.T) {
	env := testenv.Start(t, manager.ModeFlatDHCP)
	nc := env.Connect(t)
	call := func(method, id, body string) (string, string) {
		t.Helper()
		msg := nats.NewMsg(rpc.Subject(method))
		msg.Data = []byte(body)
		msg.Header.Set(rpc.HeaderRequestID, id)
		resp, err := nc.RequestMsg(msg, 20*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return resp.Header.Get(rpc.HeaderErrorCode), string(resp.Data)
	}
	create := `{"cidr":"10.0.0.0/24","num_networks":2,"network_size":16}`
	code1, r1 := call(rpc.MethodCreateNetworks, "net-1", create)
	code2, r2 := call(rpc.MethodCreateNetworks, "net-1", create)
	if code1 != "" || code2 != "" || r1 != r2 {
		t.Fatalf("create %s %s, retry %s %s: want the same success", code1, r1, code2, r2)
	}
	if code, r := call(rpc.MethodCreateNetworks, "net-2", create); code != "409" {
		t.Fatalf("create with a new id: %s %s, want conflict", code, r)
	}
	var nets rpc.NetworksReply
	if err := json.Unmarshal([]byte(r1), &nets); err != nil || len(nets.Networks) != 2 {
		t.Fatalf("create reply %s: %v", r1, err)
	}
	inst := uuid.NewString()
	add := `{"instance_uuid":"` + inst + `","network":"` + nets.Networks[1].CIDR + `"}`
	code1, r1 = call(rpc.MethodAddFixedIPToInstance, "add-1", add)
	code2, r2 = call(rpc.MethodAddFixedIPToInstance, "add-1", add)
	if code1 != "" || code2 != "" || r1 != r2 {
		t.Fatalf("add %s %s, retry %s %s: want the same success", code1, r1, code2, r2)
	}
	if code, r := call(rpc.MethodAddFixedIPToInstance, "add-2", add); code != "409" {
		t.Fatalf("add with a new id: %s %s, want conflict", code, r)
	}
	var info rpc.NetworkInfo
	if err := json.Unmarshal([]byte(r1), &info); err != nil || len(info.VIFs) != 1 {
		t.Fatalf("add reply %s: %v", r1, err)
	}
	remove := `{"instance_uuid":"` + inst + `","address":"` + info.VIFs[0].FixedIPs[0].Address + `"}`
	code1, r1 = call(rpc.MethodRemoveFixedIPFromInstance, "rm-1", remove)
	code2, r2 = call(rpc.MethodRemoveFixedIPFromInstance, "rm-1", remove)
	if code1 != "" || code2 != "" || r1 != r2 {
		t.Fatalf("remove %s %s, retry %s %s: want the same success", code1, r1, code2, r2)
	}
	if code, r := call(rpc.MethodRemoveFixedIPFromInstance, "rm-2", remove); code != "404" {
		t.Fatalf("remove with a new id: %s %s, want not_found", code, r)
	}
	del := `{"network":"` + nets.Networks[0].UUID + `"}`
	code1, r1 = call(rpc.MethodDeleteNetwork, "del-1", del)
	code2, r2 = call(rpc.MethodDeleteNetwork, "del-1", del)
	if code1 != "" || code2 != "" || r1 != r2 {
		t.Fatalf("delete %s %s, retry %s %s: want the same success", code1, r1, code2, r2)
	}
	if code, r := call(rpc.MethodDeleteNetwork, "del-2", del); code != "404" {
		t.Fatalf("delete with a new id: %s %s, want not_found", code, r)
	}
	var n int
	if err := env.Pool.QueryRow(ctx, "SELECT count(*) FROM rpc_requests").Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d stored replies (%v), want 4: failed requests store none", n, err)
	}
	// Past the window (24 hours) they are forgotten.
	if n, err := env.Manager.SweepRequestIDs(ctx); err != nil || n != 0 {
		t.Fatalf("sweep of fresh ids: %d, %v", n, err)
	}
	if _, err := env.Pool.Exec(ctx, "UPDATE rpc_requests SET created_at = now() - interval '25 hours' WHERE request_id = 'net-1'"); err != nil {
		t.Fatal(err)
	}
	if n, err := env.Manager.SweepRequestIDs(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v; want 1", n, err)
	}
}

// TestLateAllocateDoesNotUndoDeallocate: the caller's allocate waited in a
// busy replica's queue past its deadline; the caller went on and the
// instance was deallocated on another replica. The late allocate must not
// run then, which would leave a deallocated instance holding an address.
func TestLateAllocateDoesNotUndoDeallocate(t *testing.T) {
	env := testenv.StartConfig(t, manager.Config{Mode: manager.ModeFlatDHCP, Workers: 1})
	create(t, env, rpc.CreateNetworksRequest{CIDR: "10.0.0.0/24", NumNetworks: 1, NetworkSize: 16})
	createFloating(t, env, "nova", "203.0.113.0/24")
	inst := uuid.NewString()

	release := holdQuotas(t, env)
	busy := send(t, env, rpc.MethodAllocateFloatingIP, "", time.Time{}, `{"project_id":"p0"}`)
	waitLockWaiters(t, env, 1) // the replica's only worker is busy
	deadline := time.Now().Add(300 * time.Millisecond)
	late := send(t, env, rpc.MethodAllocateForInstance, "alloc-1", deadline,
		`{"instance_uuid":"`+inst+`","project_id":"p1","host":"compute-1"}`)
	time.Sleep(time.Until(deadline) + 10*time.Millisecond) // the caller gives up
	other := env.AddManager(t, "0.1.1")
	if err := other.DeallocateForInstance(ctx, inst); err != nil {
		t.Fatalf("deallocate on the other replica: %v", err)
	}
	release()
	receive(t, "busy", busy)
	if r := receive(t, "late allocate", late); r.err == nil || r.err.Code != rpc.CodeUnavailable {
		t.Fatalf("late allocate: %v, want unavailable (not run)", r.err)
	}
	var vifs, held int
	if err := env.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM virtual_interfaces WHERE instance_uuid = $1),
		(SELECT count(*) FROM fixed_ips WHERE instance_uuid = $1)`, inst).Scan(&vifs, &held); err != nil {
		t.Fatal(err)
	}
	if vifs != 0 || held != 0 {
		t.Fatalf("after deallocate, the instance has %d interfaces and %d fixed IPs", vifs, held)
	}
}
