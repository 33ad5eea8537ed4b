package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"novanet/client"
	"novanet/db/migrations"
	"novanet/internal/natsconn"
	"novanet/internal/pgtest"
	"novanet/rpc"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

type served struct {
	httpAddr net.Addr
	natsURL  string
	credsDir string
	stderr   *bytes.Buffer
	cancel   context.CancelFunc
	done     chan int
}

// serve runs "network-manager serve" in-process until the test ends.
func serve(t *testing.T, vars map[string]string, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if vars["NOVANET_CREDS_DIR"] == "" {
		// The embedded server's identities; managers given the same vars
		// share them, as the nodes of a cluster must.
		vars["NOVANET_CREDS_DIR"] = t.TempDir()
	}
	s := &served{stderr: &bytes.Buffer{}, cancel: cancel, done: make(chan int, 1), credsDir: vars["NOVANET_CREDS_DIR"]}
	readyc := make(chan struct{})
	go func() {
		s.done <- run(ctx, append([]string{"serve"}, args...), io.Discard, s.stderr, env(vars), func(a net.Addr, u string) {
			s.httpAddr, s.natsURL = a, u
			close(readyc)
		})
	}()
	select {
	case <-readyc:
	case code := <-s.done:
		t.Fatalf("serve exited %d before ready: %s", code, s.stderr)
	case <-time.After(30 * time.Second):
		t.Fatal("serve not ready after 30s")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *served) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code, ok := <-s.done:
		if ok {
			close(s.done)
			return code
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of SIGTERM")
		return -1
	}
}

// connect connects to the embedded server as its operator.
func (s *served) connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Options{NKey: filepath.Join(s.credsDir, "operator.admin.nk")}.Connect(s.natsURL, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeEmbeddedNATS(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	s := serve(t, map[string]string{"NOVANET_DATABASE_URL": dbURL, "NOVANET_NETWORK_MODE": "vlan"},
		"--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "console")

	if nc, err := nats.Connect(s.natsURL); err == nil {
		nc.Close()
		t.Fatal("the embedded server let an anonymous client in")
	}
	c := client.New(s.connect(t), 10*time.Second)
	nets, err := c.CreateNetworks(context.Background(), rpc.CreateNetworksRequest{CIDR: "10.0.0.0/8", NumNetworks: 2, NetworkSize: 16})
	if err != nil || len(nets) != 2 || nets[1].VLAN != 101 {
		t.Fatalf("create over embedded NATS: %+v %v", nets, err)
	}

	base := "http://" + s.httpAddr.String()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `novanet_manager_requests_total{code="ok",method="create_networks"} 1`) {
		t.Errorf("/metrics = %d, no create_networks count:\n%.2000s", code, body)
	}

	if code := s.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM: %s", code, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "stopped") {
		t.Errorf("no clean stop in log: %s", s.stderr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.Networks(sctx, ""); err == nil {
		t.Error("manager still answers after shutdown")
	}
}

// Two managers whose embedded nats-servers form a cluster: a client of
// either node reaches the other.
func TestServeEmbeddedCluster(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	vars := map[string]string{"NOVANET_DATABASE_URL": dbURL}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	routes := ln.Addr().String()
	ln.Close()
	s1 := serve(t, vars, "--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "", "--log-format", "console",
		"--embedded-nats-name", "m1", "--embedded-nats-cluster-listen", routes)
	s2 := serve(t, vars, "--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "", "--log-format", "console",
		"--embedded-nats-name", "m2", "--embedded-nats-cluster-listen", "127.0.0.1:0",
		"--embedded-nats-routes", "nats-route://"+routes+",nats-route://route-user:route-secret@127.0.0.1:1")
	if log := s2.stderr.String(); !strings.Contains(log, `"cluster": "novanet"`) || strings.Contains(log, "route-secret") ||
		!strings.Contains(log, "route-user:xxxxx@127.0.0.1:1") {
		t.Errorf("no cluster in the log, or a route's password: %s", log)
	}

	// On m1's node as a manager (only managers may subscribe to manager
	// subjects, in their queue group), on m2's as the operator.
	nc1, err := natsconn.Options{NKey: filepath.Join(s1.credsDir, "manager.embedded.nk")}.Connect(s1.natsURL, "1")
	if err != nil {
		t.Fatal(err)
	}
	defer nc1.Close()
	nc2, err := natsconn.Options{NKey: filepath.Join(s2.credsDir, "operator.admin.nk")}.Connect(s2.natsURL, "2")
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	const across = "novanet.manager.cluster_probe"
	sub, err := nc1.QueueSubscribeSync(across, rpc.QueueGroup)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc1.Flush(); err != nil {
		t.Fatal(err)
	}
	// Until the route is up and carries the subscription, m2's node drops
	// the message: publish until one arrives.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := nc2.Publish(across, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(50 * time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no message from m2's node to m1's: not clustered")
		}
	}
	if nc2.ConnectedServerName() != "m2" || nc1.ConnectedServerName() != "m1" {
		t.Errorf("servers named %q and %q, want m1 and m2", nc1.ConnectedServerName(), nc2.ConnectedServerName())
	}
}

func TestServeRefusesOldSchema(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	vars := map[string]string{"NOVANET_DATABASE_URL": dbURL}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"migrate", "down"}, &out, &errb, env(vars), nil); code != 0 {
		t.Fatalf("migrate down: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "database schema version 0") {
		t.Errorf("migrate down printed %q", out.String())
	}
	errb.Reset()
	code := run(context.Background(), []string{"serve", "--embedded-nats-listen", "127.0.0.1:0", "--http-listen", ""},
		io.Discard, &errb, env(vars), nil)
	if code != 1 || !strings.Contains(errb.String(), fmt.Sprintf(`database schema is at version 0 (dirty: false), this binary needs %d: run "network-manager migrate up"`, migrations.Version)) {
		t.Errorf("serve on old schema: %d %q", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"migrate", "up"}, &out, &errb, env(vars), nil); code != 0 ||
		!strings.Contains(out.String(), fmt.Sprintf("database schema version %d (dirty: false)", migrations.Version)) {
		t.Fatalf("migrate up: %d %q %s", code, out.String(), errb.String())
	}
	// Down then serve --migrate brings it back too.
	run(context.Background(), []string{"migrate", "down"}, io.Discard, io.Discard, env(vars), nil)
	serve(t, vars, "--migrate", "--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "")
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"serve"}, nil, "no database: set --database-url or NOVANET_DATABASE_URL"},
		{[]string{"serve", "--network-mode", "hub"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x"}, `network mode "hub"`},
		{[]string{"serve"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x", "NOVANET_WORKERS": "lots"}, `NOVANET_WORKERS="lots"`},
		{[]string{"serve", "--log-level", "loud"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x"}, `log level "loud"`},
		{[]string{"migrate", "down", "x"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x"}, `steps "x"`},
		{[]string{"serve", "--quota-floating-ips", "0"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x"}, `--quota-floating-ips 0: want -1 (unlimited) or at least 1`},
		{[]string{"serve"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x", "NOVANET_AUTO_ASSIGN_FLOATING_IP": "maybe"}, `NOVANET_AUTO_ASSIGN_FLOATING_IP="maybe"`},
		{[]string{"serve", "--embedded-nats-routes", "nats-route://n2:6222"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x"},
			"--embedded-nats-routes needs --embedded-nats-cluster-listen"},
		{[]string{"serve", "--embedded-nats-cluster-listen", ":6222"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x",
			"NOVANET_EMBEDDED_NATS_ROUTES": "nats-route://n2:6222,http://n3"}, `route "http://n3"`},
		{[]string{"serve", "--nats-url", "nats://n1:4222", "--embedded-nats-cluster-listen", ":6222"}, map[string]string{"NOVANET_DATABASE_URL": "postgres:///x"},
			"which --nats-url turns off"},
	} {
		var errb bytes.Buffer
		code := run(context.Background(), tc.args, io.Discard, &errb, env(tc.vars), nil)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d %q, want %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// TestReadyzHidesDatabaseError drops the manager's database under it: /readyz
// must answer 503 without the user, database and host that the driver's
// error names, and the log must have them.
func TestReadyzHidesDatabaseError(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	s := serve(t, map[string]string{"NOVANET_DATABASE_URL": dbURL},
		"--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--log-format", "console")
	base := "http://" + s.httpAddr.String()
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %q before the database went away", code, body)
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(context.Background(), pgtest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	// The first probes may fail on a pooled connection the drop broke; each
	// such failure discards it, so past the pool's size (--db-max-conns,
	// 8) one has had to connect anew and been told the database is gone.
	for range 10 {
		code, body := get(t, base+"/readyz")
		if code != http.StatusServiceUnavailable || body != "database unavailable\n" {
			t.Errorf("/readyz = %d %q, want 503 \"database unavailable\"", code, body)
		}
	}
	s.stop(t)
	if log := s.stderr.String(); !strings.Contains(log, "not ready: database unreachable") ||
		!strings.Contains(log, "user="+cfg.User) || !strings.Contains(log, cfg.Database) {
		t.Errorf("the log does not have the database error:\n%s", log)
	}
}

// creds runs "network-manager creds ..." in-process.
func creds(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append(append([]string{"creds"}, args...), "--creds-dir", dir), &out, &errb, env(nil), nil)
	return code, out.String(), errb.String()
}

// An operator adds a hypervisor in one step and revokes it: the embedded
// server (this process, through its pid file and SIGHUP) reloads, the new
// agent connects, and once revoked it is disconnected and refused.
func TestCredsAddRevokeReloadsTheEmbeddedServer(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	s := serve(t, map[string]string{"NOVANET_DATABASE_URL": dbURL}, "--embedded-nats-listen", "127.0.0.1:0", "--http-listen", "")
	if _, err := os.Stat(filepath.Join(s.credsDir, "nats.pid")); err != nil {
		t.Fatalf("no pid file: %v", err)
	}
	code, out, errs := creds(t, s.credsDir, "add", "host", "hv1")
	if code != 0 || !strings.Contains(out, "added host hv1") || !strings.Contains(out, "to reload it") {
		t.Fatalf("creds add: %d %q %q", code, out, errs)
	}
	seed := filepath.Join(s.credsDir, "host.hv1.nk")
	connect := func() (*nats.Conn, error) {
		return natsconn.Options{NKey: seed}.Connect(s.natsURL, "hv1", nats.MaxReconnects(0))
	}
	var nc *nats.Conn
	// The reload runs on the manager's SIGHUP goroutine: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if nc, err = connect(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hv1 cannot connect after creds add: %v\n%s", err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer nc.Close()
	c := client.New(nc, 10*time.Second)
	if _, err := c.RegisterHost(context.Background(), rpc.RegisterHostRequest{Host: "hv1", Driver: "flatdhcp"}); err != nil {
		t.Fatalf("hv1 registers: %v", err)
	}
	if _, err := c.RegisterHost(context.Background(), rpc.RegisterHostRequest{Host: "hv2", Driver: "flatdhcp"}); err == nil {
		t.Error("hv1 registered as hv2")
	}
	if code, out, _ := creds(t, s.credsDir, "list"); code != 0 || !strings.Contains(out, "host      hv1") && !strings.Contains(out, "host\thv1") && !strings.Contains(out, "hv1") {
		t.Errorf("creds list: %d %q", code, out)
	}
	if code, _, errs := creds(t, s.credsDir, "add", "host", "hv1"); code != 1 || !strings.Contains(errs, "identity exists") {
		t.Errorf("second add: %d %q", code, errs)
	}
	if code, _, errs := creds(t, s.credsDir, "add", "host", "hv.1"); code != 1 || !strings.Contains(errs, `"hv.1"`) {
		t.Errorf("bad name: %d %q", code, errs)
	}
	if code, _, errs := creds(t, s.credsDir, "add", "admin", "x"); code != 1 || !strings.Contains(errs, `kind "admin"`) {
		t.Errorf("bad kind: %d %q", code, errs)
	}

	if code, out, errs := creds(t, s.credsDir, "revoke", "host", "hv1"); code != 0 || !strings.Contains(out, "revoked host hv1") {
		t.Fatalf("creds revoke: %d %q %q", code, out, errs)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !nc.IsClosed() {
		if time.Now().After(deadline) {
			t.Fatalf("hv1 still connected after its revocation: %s\n%s", nc.Status(), s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if nc2, err := connect(); err == nil {
		nc2.Close()
		t.Error("revoked hv1 connects again")
	}
	if _, err := os.Stat(seed); !os.IsNotExist(err) {
		t.Errorf("seed left behind: %v", err)
	}
	if code, _, errs := creds(t, s.credsDir, "revoke", "host", "hv1"); code != 1 || !strings.Contains(errs, "no such identity") {
		t.Errorf("second revoke: %d %q", code, errs)
	}
}

// A password in --nats-url is masked in what serve prints.
func TestServeMasksTheNATSPassword(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	var errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "--nats-url", "nats://alice:s3cret@127.0.0.1:1", "--http-listen", ""},
		io.Discard, &errb, env(map[string]string{"NOVANET_DATABASE_URL": dbURL}), nil)
	if code != 1 || !strings.Contains(errb.String(), "connect to NATS at nats://alice:xxxxx@127.0.0.1:1") || strings.Contains(errb.String(), "s3cret") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
}
