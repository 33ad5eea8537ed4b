package deploy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"novanet/internal/natsconn"
	"novanet/natsauth"
	"novanet/rpc"
)

// The deployed nats-server.conf with the authorization file "network-manager
// creds" generates, not a stand-in: clients connect over TLS with the
// shared --nats-tls-ca and --nats-nkey options, and the identities'
// permissions hold.
func TestNATSConfigWithGeneratedAuthorization(t *testing.T) {
	store := natsauth.Store{Dir: t.TempDir()}
	for _, id := range []struct {
		kind natsauth.Kind
		name string
	}{{natsauth.KindManager, "m1"}, {natsauth.KindHost, "hv1"}, {natsauth.KindOperator, "ops"}} {
		if _, err := store.Add(id.kind, id.name); err != nil {
			t.Fatal(err)
		}
	}
	conf, ca := natsDir(t, string(natsauth.Config(mustList(t, store))))
	t.Setenv("NATS_SERVER_NAME", "nats-1")
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server.conf with the generated authorization: %v", err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPPort, opts.Routes = 0, nil
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	connect := func(kind natsauth.Kind, name string) *nats.Conn {
		t.Helper()
		nc, err := natsconn.Options{NKey: store.SeedPath(kind, name), TLSCA: ca}.Connect(s.ClientURL(), name,
			nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatalf("%s %s over TLS: %v", kind, name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	mgr := connect(natsauth.KindManager, "m1")
	if _, err := mgr.QueueSubscribe(rpc.Subject(rpc.MethodListHosts), rpc.QueueGroup, func(m *nats.Msg) { _ = m.Respond([]byte(`{"hosts":[]}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Flush(); err != nil || mgr.LastError() != nil {
		t.Fatalf("the manager's queue subscription: %v %v", err, mgr.LastError())
	}
	if m, err := connect(natsauth.KindOperator, "ops").Request(rpc.Subject(rpc.MethodListHosts), nil, 10*time.Second); err != nil || string(m.Data) != `{"hosts":[]}` {
		t.Fatalf("operator's list_hosts over TLS: %v %v", m, err)
	}
	hv := connect(natsauth.KindHost, "hv1")
	if err := hv.Publish(rpc.Subject(rpc.MethodListHosts), nil); err != nil {
		t.Fatal(err)
	}
	if err := hv.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := hv.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), rpc.Subject(rpc.MethodListHosts)) {
		t.Errorf("hv1 publishing list_hosts: %v, want a permissions violation", err)
	}
	// Without the CA the server's certificate is not trusted.
	if nc, err := (natsconn.Options{NKey: store.SeedPath(natsauth.KindHost, "hv1")}).Connect(s.ClientURL(), "x", nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("connected without TLS")
	}
}

func mustList(t *testing.T, s natsauth.Store) []natsauth.Identity {
	t.Helper()
	ids, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
