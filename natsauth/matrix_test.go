package natsauth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap/zaptest"

	"novanet/agent"
	"novanet/client"
	"novanet/internal/natsconn"
	"novanet/internal/pgtest"
	"novanet/manager"
	"novanet/natsauth"
	"novanet/natsembed"
	"novanet/rpc"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// bus is a real nats-server (in process, random loopback port) configured
// with the generated authorization block, a real manager serving on it as
// the manager identity, and agents hv-a and hv-b served as the agent
// serves (micro, its queue group) with their own identities.
type bus struct {
	t     *testing.T
	url   string
	ns    *natsembed.Server
	store natsauth.Store
	pub   map[string]string // identity short name → public key
	// asyncErrs collects errors the server reported to the serving
	// connections: a permission they lack would show here.
	mu        sync.Mutex
	asyncErrs []string
}

var identities = []struct {
	short string
	kind  natsauth.Kind
	name  string
}{
	{"manager", natsauth.KindManager, "m1"},
	{"agentA", natsauth.KindHost, "hv-a"},
	{"agentB", natsauth.KindHost, "hv-b"},
	{"compute", natsauth.KindCompute, "c1"},
	{"operator", natsauth.KindOperator, "op"},
}

func seedOf(short string) (natsauth.Kind, string) {
	for _, id := range identities {
		if id.short == short {
			return id.kind, id.name
		}
	}
	panic(short)
}

func startBus(t *testing.T) *bus {
	t.Helper()
	b := &bus{t: t, store: natsauth.Store{Dir: t.TempDir()}, pub: map[string]string{}}
	for _, id := range identities {
		got, err := b.store.Add(id.kind, id.name)
		if err != nil {
			t.Fatal(err)
		}
		b.pub[id.short] = got.PublicKey
	}
	ns, err := natsembed.Start("127.0.0.1:0", natsembed.WithAuthFile(b.store.ConfigPath()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	b.ns, b.url = ns, ns.ClientURL()

	// The real manager, as the manager identity.
	pool, _ := pgtest.NewDB(t)
	m, err := manager.New(pool, zaptest.NewLogger(t), manager.Config{Mode: manager.ModeFlatDHCP}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := m.Serve(context.Background(), b.serving("manager"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	// The agents' services, configured as agent.Serve configures them.
	for _, a := range []string{"agentA", "agentB"} {
		_, host := seedOf(a)
		s, err := micro.AddService(b.serving(a), micro.Config{Name: agent.ServiceName, Version: "0.1.0",
			QueueGroup: agent.ServiceName + "." + host})
		if err != nil {
			t.Fatal(err)
		}
		g := s.AddGroup(rpc.HostPrefix + "." + host)
		for _, method := range rpc.HostMethods {
			if err := g.AddEndpoint(method, micro.HandlerFunc(func(r micro.Request) { _ = r.RespondJSON(rpc.HostActionReply{}) })); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = s.Stop() })
	}
	return b
}

// connect opens a connection as one identity ("" for anonymous).
func (b *bus) connect(short string, opts ...nats.Option) (*nats.Conn, error) {
	var o natsconn.Options
	if short != "" {
		kind, name := seedOf(short)
		o.NKey = b.store.SeedPath(kind, name)
	}
	return o.Connect(b.url, short, append([]nats.Option{nats.MaxReconnects(0)}, opts...)...)
}

// serving is a connection that serves; its asynchronous errors fail the test.
func (b *bus) serving(short string) *nats.Conn {
	b.t.Helper()
	nc, err := b.connect(short, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		b.mu.Lock()
		b.asyncErrs = append(b.asyncErrs, short+": "+err.Error())
		b.mu.Unlock()
	}))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(nc.Close)
	return nc
}

type op string

const (
	pub   op = "publish"
	sub   op = "subscribe"
	queue op = "queue-join"
	req   op = "request"
)

type check struct {
	who     string
	op      op
	subject string
	queue   string // for queue-join
	allowed bool
}

// try makes one check on a fresh connection and returns nil when the
// outcome is the expected one. A denial must be the server's permissions
// violation for that very subject.
func (b *bus) try(c check) error {
	nc, err := b.connect(c.who, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		return err
	}
	defer nc.Close()
	var reply *nats.Msg
	switch c.op {
	case pub:
		err = nc.Publish(c.subject, []byte("{}"))
	case sub:
		_, err = nc.SubscribeSync(c.subject)
	case queue:
		_, err = nc.QueueSubscribeSync(c.subject, c.queue)
	case req:
		if c.allowed {
			reply, err = nc.Request(c.subject, []byte("{}"), 10*time.Second)
			if err != nil {
				return errors.New("no reply: " + err.Error())
			}
		} else {
			// A denied request is a denied publish of it (with its reply
			// subject): the server drops it and says so.
			err = nc.PublishRequest(c.subject, nc.NewRespInbox(), []byte("{}"))
		}
	}
	if err != nil {
		return err
	}
	// The server handles PUB/SUB before the PING of Flush, and the client
	// records its -ERR before the PONG: LastError is settled.
	if err := nc.Flush(); err != nil {
		return err
	}
	last := nc.LastError()
	switch {
	case c.allowed && last != nil:
		return errors.New("refused: " + last.Error())
	case c.allowed:
		if c.op == req && reply == nil {
			return errors.New("no reply")
		}
		return nil
	case last == nil:
		return errors.New("allowed, want a permissions violation")
	case !errors.Is(last, nats.ErrPermissionViolation) || !strings.Contains(last.Error(), `"`+c.subject+`"`):
		return errors.New("want a permissions violation for this subject, got " + last.Error())
	}
	return nil
}

func TestPermissionMatrix(t *testing.T) {
	b := startBus(t)
	m := func(method string) string { return rpc.Subject(method) }
	hm := func(host, method string) string { return rpc.HostManagerSubject(host, method) }
	ag := func(host, method string) string { return rpc.HostSubject(host, method) }
	inbox := func(who string) string { return natsconn.InboxPrefix(b.pub[who]) + ".>" }
	inboxMsg := func(who string) string { return natsconn.InboxPrefix(b.pub[who]) + ".x.y" }
	const (
		mgrAll = rpc.ManagerPrefix + ".>"
		allIn  = "_INBOX.>"
		mq     = rpc.QueueGroup
	)
	qA, qB := agent.ServiceName+".hv-a", agent.ServiceName+".hv-b"
	checks := []check{
		// The manager: serves its subjects in its queue group only, tells
		// agents of changes, reads its own replies only.
		{"manager", queue, mgrAll, mq, true},
		{"manager", sub, mgrAll, "", false},
		{"manager", queue, mgrAll, "intruders", false},
		{"manager", req, ag("hv-a", rpc.HostMethodSetup), "", true},
		{"manager", req, ag("hv-b", rpc.HostMethodRefresh), "", true},
		{"manager", pub, m(rpc.MethodCreateNetworks), "", false},
		{"manager", sub, "novanet.host.hv-a.>", "", false},
		{"manager", queue, "novanet.host.hv-a.>", qA, false},
		{"manager", sub, inbox("manager"), "", true},
		{"manager", sub, inbox("operator"), "", false},
		{"manager", sub, allIn, "", false},
		{"manager", pub, inboxMsg("compute"), "", false},
		{"manager", sub, "$SRV.PING", "", true},
		{"manager", sub, "$SRV.INFO.novanet-host", "", false},

		// Agent A: its own host's manager methods and subjects only.
		{"agentA", req, hm("hv-a", rpc.MethodRegisterHost), "", true},
		{"agentA", req, hm("hv-a", rpc.MethodGetHostState), "", true},
		{"agentA", req, hm("hv-a", rpc.MethodLeaseFixedIP), "", true},
		{"agentA", req, hm("hv-a", rpc.MethodReportConvergence), "", true},
		{"agentA", pub, hm("hv-b", rpc.MethodReportConvergence), "", false},
		{"agentA", pub, hm("hv-b", rpc.MethodRegisterHost), "", false},
		{"agentA", pub, hm("hv-b", rpc.MethodGetHostState), "", false},
		{"agentA", pub, hm("hv-b", rpc.MethodLeaseFixedIP), "", false},
		{"agentA", pub, hm("hv-b", rpc.MethodReleaseFixedIP), "", false},
		{"agentA", pub, m(rpc.MethodAllocateForInstance), "", false},
		{"agentA", pub, m(rpc.MethodGetAllNetworks), "", false},
		{"agentA", pub, m(rpc.MethodListHosts), "", false},
		{"agentA", pub, m(rpc.MethodLeaseFixedIP), "", false},
		{"agentA", pub, ag("hv-b", rpc.HostMethodSetup), "", false},
		{"agentA", pub, ag("hv-a", rpc.HostMethodConverge), "", false},
		{"agentA", sub, "novanet.host.hv-a.>", "", true},
		{"agentA", queue, "novanet.host.hv-a.>", qA, true},
		{"agentA", sub, "novanet.host.hv-b.>", "", false},
		{"agentA", queue, "novanet.host.hv-b.>", qB, false},
		{"agentA", sub, "novanet.host.*.>", "", false},
		{"agentA", queue, mgrAll, mq, false},
		{"agentA", sub, mgrAll, "", false},
		{"agentA", sub, inbox("agentA"), "", true},
		{"agentA", sub, inbox("agentB"), "", false},
		{"agentA", sub, inbox("manager"), "", false},
		{"agentA", sub, allIn, "", false},
		{"agentA", pub, inboxMsg("manager"), "", false},

		// Agent B: the mirror image.
		{"agentB", req, hm("hv-b", rpc.MethodRegisterHost), "", true},
		{"agentB", pub, hm("hv-a", rpc.MethodRegisterHost), "", false},
		{"agentB", pub, hm("hv-a", rpc.MethodGetHostState), "", false},
		{"agentB", sub, "novanet.host.hv-a.>", "", false},
		{"agentB", queue, "novanet.host.hv-a.>", qA, false},
		{"agentB", queue, "novanet.host.hv-b.>", qB, true},

		// Compute: allocation and floating methods only.
		{"compute", req, m(rpc.MethodAllocateForInstance), "", true},
		{"compute", req, m(rpc.MethodGetInstanceNWInfo), "", true},
		{"compute", req, m(rpc.MethodAssociateFloatingIP), "", true},
		{"compute", req, m(rpc.MethodAllocateFloatingIP), "", true},
		{"compute", pub, m(rpc.MethodCreateNetworks), "", false},
		{"compute", pub, m(rpc.MethodStopNetwork), "", false},
		{"compute", pub, m(rpc.MethodStartNetwork), "", false},
		{"compute", pub, m(rpc.MethodGetAllNetworks), "", false},
		{"compute", pub, m(rpc.MethodQuotaSet), "", false},
		{"compute", pub, m(rpc.MethodCreateFloatingIPs), "", false},
		{"compute", pub, m(rpc.MethodLeaseFixedIP), "", false},
		{"compute", pub, hm("hv-a", rpc.MethodRegisterHost), "", false},
		{"compute", pub, ag("hv-a", rpc.HostMethodSetup), "", false},
		{"compute", pub, "$SRV.PING", "", false},
		{"compute", queue, mgrAll, mq, false},
		{"compute", sub, mgrAll, "", false},
		{"compute", sub, "novanet.host.hv-a.>", "", false},
		{"compute", sub, inbox("compute"), "", true},
		{"compute", sub, inbox("operator"), "", false},
		{"compute", sub, allIn, "", false},

		// Operator: every method, discovery; it serves and eavesdrops on
		// nothing.
		{"operator", req, m(rpc.MethodCreateNetworks), "", true},
		{"operator", req, m(rpc.MethodGetAllNetworks), "", true},
		{"operator", req, m(rpc.MethodStopNetwork), "", true},
		{"operator", req, m(rpc.MethodStartNetwork), "", true},
		{"operator", req, m(rpc.MethodQuotaSet), "", true},
		{"operator", req, m(rpc.MethodListHosts), "", true},
		{"operator", req, hm("hv-a", rpc.MethodGetHostState), "", true},
		{"operator", req, ag("hv-a", rpc.HostMethodConverge), "", true},
		{"operator", req, "$SRV.PING." + rpc.ServiceName, "", true},
		{"operator", req, "$SRV.INFO." + agent.ServiceName, "", true},
		{"operator", queue, mgrAll, mq, false},
		{"operator", sub, mgrAll, "", false},
		{"operator", sub, "novanet.host.hv-a.>", "", false},
		{"operator", queue, "novanet.host.hv-a.>", qA, false},
		{"operator", sub, "$SRV.PING", "", false},
		{"operator", sub, inbox("operator"), "", true},
		{"operator", sub, inbox("compute"), "", false},
		{"operator", sub, allIn, "", false},
		{"operator", pub, inboxMsg("compute"), "", false},
	}
	for _, c := range checks {
		name := c.who + " " + string(c.op) + " " + c.subject
		if c.queue != "" {
			name += " (queue " + c.queue + ")"
		}
		want := "denied"
		if c.allowed {
			want = "allowed"
		}
		if err := b.try(c); err != nil {
			t.Errorf("%s: want %s: %v", name, want, err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.asyncErrs {
		t.Errorf("a serving connection was refused something: %s", e)
	}
}

// An agent's real client calls work on its own subjects and are refused
// for another host; replies come back on the identity's inbox.
func TestAgentClientSpeaksForItsHostOnly(t *testing.T) {
	b := startBus(t)
	nc, err := b.connect("agentA")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := client.New(nc, 10*time.Second)
	ctx := context.Background()
	if _, err := c.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv-a", Driver: "flatdhcp"}); err != nil {
		t.Fatalf("hv-a registers: %v", err)
	}
	if st, err := c.HostState(ctx, "hv-a", 0); err != nil || st.Host != "hv-a" {
		t.Fatalf("hv-a's state: %+v %v", st, err)
	}
	if _, err := c.RegisterHost(ctx, rpc.RegisterHostRequest{Host: "hv-b", Driver: "flatdhcp"}); err == nil {
		t.Error("hv-a registered as hv-b")
	}
	op, err := b.connect("operator")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	hs, err := client.New(op, 10*time.Second).ListHosts(ctx)
	if err != nil || len(hs) != 1 || hs[0].Name != "hv-a" {
		t.Errorf("hosts: %+v %v", hs, err)
	}
}

// Anonymous clients and keys the configuration does not list are refused.
func TestStrangersAreRefused(t *testing.T) {
	b := startBus(t)
	if nc, err := nats.Connect(b.url); err == nil {
		nc.Close()
		t.Error("anonymous connection accepted")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Errorf("anonymous: %v, want an authorization violation", err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	if nc, err := nats.Connect(b.url, nats.Nkey(pub, kp.Sign)); err == nil {
		nc.Close()
		t.Error("a key the configuration does not list connected")
	}
	if nc, err := nats.Connect(b.url, nats.UserInfo("novanet", "novanet")); err == nil {
		nc.Close()
		t.Error("a user and password connected")
	}
}

// Revoking agent B and reloading disconnects it and refuses it from then
// on; agent A carries on.
func TestRevokeAndReload(t *testing.T) {
	b := startBus(t)
	ncB, err := b.connect("agentB")
	if err != nil {
		t.Fatal(err)
	}
	defer ncB.Close()
	ncA, err := b.connect("agentA")
	if err != nil {
		t.Fatal(err)
	}
	defer ncA.Close()
	if err := b.store.Revoke(natsauth.KindHost, "hv-b"); err != nil {
		t.Fatal(err)
	}
	if err := b.ns.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ncB.IsClosed() {
		if time.Now().After(deadline) {
			t.Fatalf("agent B still connected after revocation and reload: %s", ncB.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if nc, err := b.connect("agentB"); err == nil {
		nc.Close()
		t.Error("revoked agent B connected again")
	}
	if _, err := client.New(ncA, 10*time.Second).RegisterHost(context.Background(),
		rpc.RegisterHostRequest{Host: "hv-a", Driver: "flatdhcp"}); err != nil {
		t.Errorf("agent A after B's revocation: %v", err)
	}
	// A new hypervisor added the same way connects after the reload.
	if _, err := b.store.Add(natsauth.KindHost, "hv-c"); err != nil {
		t.Fatal(err)
	}
	if err := b.ns.Reload(); err != nil {
		t.Fatal(err)
	}
	nc, err := natsconn.Options{NKey: b.store.SeedPath(natsauth.KindHost, "hv-c")}.Connect(b.url, "hv-c")
	if err != nil {
		t.Fatalf("added hv-c: %v", err)
	}
	nc.Close()
}

func TestHostServiceName(t *testing.T) {
	if natsauth.HostServiceName != agent.ServiceName {
		t.Errorf("natsauth.HostServiceName %q, agent.ServiceName %q", natsauth.HostServiceName, agent.ServiceName)
	}
}
