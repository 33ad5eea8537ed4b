package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"novanet/internal/natsconn"
	"novanet/internal/poll"
	"novanet/internal/testcerts"
	"novanet/natsauth"
	"novanet/rpc"
)

// natsDir lays out what nats-server.conf expects in /etc/nats, in a
// temporary directory: the configuration (its paths rewritten), the node
// certificate, the CA, and the authorization file. It returns the
// configuration's path and the CA file.
func natsDir(t *testing.T, authorization string) (conf, ca string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	cas := testcerts.NewCA(t, "nats")
	cert, key := cas.Issue(t, "node")
	for src, dst := range map[string]string{cas.File: "tls/ca.pem", cert: "tls/node.pem", key: "tls/node-key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("nats/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "/etc/nats/", dir+"/")
	for _, line := range strings.Split(text, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && strings.Contains(l, "/etc/") {
			t.Fatalf("nats-server.conf names a file outside /etc/nats/: %s", l)
		}
	}
	conf = filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "novanet-authorization.conf"), []byte(authorization), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, filepath.Join(dir, "tls/ca.pem")
}

// identities issues a manager, an agent and a compute identity as
// "network-manager creds add" does, and returns the generated
// authorization block and the store that holds their seeds.
func identities(t *testing.T) (string, natsauth.Store) {
	t.Helper()
	st := natsauth.Store{Dir: t.TempDir()}
	for _, id := range []struct {
		kind natsauth.Kind
		name string
	}{{natsauth.KindManager, "m1"}, {natsauth.KindHost, "hv1"}, {natsauth.KindCompute, "nova"}} {
		if _, err := st.Add(id.kind, id.name); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(st.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b), st
}

// TestNATSClusterConfig parses deploy/nats/nats-server.conf, with the
// authorization block "network-manager creds" generates, with
// nats-server's own parser, checks what the deployment relies on, and runs
// it as three nodes on loopback (ports and routes moved there): they form
// one cluster over TLS routes, refuse anonymous and plain-text clients, and
// carry requests between identities on different nodes.
func TestNATSClusterConfig(t *testing.T) {
	auth, ids := identities(t)
	conf, caFile := natsDir(t, auth)

	// Node 1 runs on the example environment file, as nats-server.service
	// would read it; the others on their own names.
	example := readEnvFile(t, "nats/nats-server.env.example")
	if len(example) == 0 {
		t.Fatal("nats-server.env.example sets nothing")
	}
	var nodes []*server.Server
	for i := 1; i <= 3; i++ {
		if i == 1 {
			for k, v := range example {
				t.Setenv(k, v)
			}
		} else {
			t.Setenv("NATS_SERVER_NAME", fmt.Sprintf("nats-%d", i))
		}
		opts, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatalf("nats-server.conf: %v", err)
		}
		if i == 1 {
			checkDeployOptions(t, opts)
		}
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", server.RANDOM_PORT
		opts.HTTPPort = 0
		opts.Routes = nil
		if i > 1 {
			opts.Routes = server.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", nodes[0].ClusterAddr().Port))
		}
		opts.NoSigs, opts.NoLog = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("node %d not ready", i)
		}
		nodes = append(nodes, s)
	}
	for i, s := range nodes {
		poll.Until(t, fmt.Sprintf("node %d routed over TLS to both others", i+1), func() bool { return s.NumRemotes() == 2 })
	}

	if nc, err := (natsconn.Options{TLSCA: caFile}).Connect(nodes[0].ClientURL(), "anonymous", nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("anonymous client accepted")
	}
	seed := ids.SeedPath(natsauth.KindCompute, "nova")
	if nc, err := (natsconn.Options{NKey: seed}).Connect(nodes[0].ClientURL(), "plain", nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("client without TLS accepted")
	}
	connect := func(s *server.Server, kind natsauth.Kind, name string) *nats.Conn {
		nc, err := natsconn.Options{NKey: ids.SeedPath(kind, name), TLSCA: caFile}.Connect(s.ClientURL(), name)
		if err != nil {
			t.Fatalf("connect to %s as %s %s: %v", s.Name(), kind, name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	serve := func(nc *nats.Conn, subject, queue string) {
		if _, err := nc.QueueSubscribe(subject, queue, func(m *nats.Msg) { _ = m.Respond([]byte("ok " + subject)) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// The manager on nats-1 serves allocations in its queue group; the
	// agent of hv1 on nats-3 serves its notices; every node learns both.
	mgr := connect(nodes[0], natsauth.KindManager, "m1")
	serve(mgr, rpc.Subject(rpc.MethodAllocateForInstance), rpc.QueueGroup)
	serve(connect(nodes[2], natsauth.KindHost, "hv1"), rpc.HostSubject("hv1", rpc.HostMethodSetup), "")
	for _, s := range nodes {
		poll.Until(t, s.Name()+" to know the manager's and the agent's subscriptions", func() bool {
			acc := s.GlobalAccount()
			return acc.SubscriptionInterest(rpc.Subject(rpc.MethodAllocateForInstance)) &&
				acc.SubscriptionInterest(rpc.HostSubject("hv1", rpc.HostMethodSetup))
		})
	}
	// A compute service on nats-2 reaches the manager on nats-1, and the
	// manager the agent on nats-3: requests, permissions and replies
	// (allow_responses) across the routes.
	for _, c := range []struct {
		nc      *nats.Conn
		subject string
	}{
		{connect(nodes[1], natsauth.KindCompute, "nova"), rpc.Subject(rpc.MethodAllocateForInstance)},
		{mgr, rpc.HostSubject("hv1", rpc.HostMethodSetup)},
	} {
		m, err := c.nc.Request(c.subject, []byte("{}"), 10*time.Second)
		if err != nil || string(m.Data) != "ok "+c.subject {
			t.Errorf("%s from %s: %v, %v", c.subject, c.nc.ConnectedServerName(), m, err)
		}
	}
}

// readEnvFile reads the KEY=value lines of a systemd EnvironmentFile.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	return env
}

// checkDeployOptions asserts what the rest of deploy/ and the docs say of
// the configuration.
func checkDeployOptions(t *testing.T, o *server.Options) {
	t.Helper()
	if o.ServerName != "nats-1" {
		t.Errorf("server_name %q: not taken from NATS_SERVER_NAME", o.ServerName)
	}
	if o.Port != 4222 || o.TLSConfig == nil {
		t.Errorf("clients: port %d, TLS %v; want 4222 with TLS", o.Port, o.TLSConfig != nil)
	}
	if o.HTTPHost != "127.0.0.1" || o.HTTPPort != 8222 {
		t.Errorf("monitoring on %s:%d, want 127.0.0.1:8222", o.HTTPHost, o.HTTPPort)
	}
	if o.Cluster.Name != "novanet" || o.Cluster.Port != 6222 || o.Cluster.TLSConfig == nil {
		t.Errorf("cluster %q port %d TLS %v; want novanet, 6222, TLS", o.Cluster.Name, o.Cluster.Port, o.Cluster.TLSConfig != nil)
	}
	if len(o.Routes) != 3 {
		t.Errorf("routes %v, want the three nodes", o.Routes)
	}
	if o.PingInterval != 20*time.Second || o.MaxPingsOut != 3 {
		t.Errorf("ping every %v, %d unanswered; want 20s and 3, as docs/deploy.md says", o.PingInterval, o.MaxPingsOut)
	}
	if o.MaxPayload != 8<<20 {
		t.Errorf("max_payload %d, want 8 MB as the embedded server", o.MaxPayload)
	}
	if len(o.Nkeys)+len(o.Users) == 0 && o.TrustedOperators == nil {
		t.Error("no users: the authorization file was not included")
	}
}
