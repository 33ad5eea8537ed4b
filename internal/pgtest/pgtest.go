// Package pgtest gives tests a real PostgreSQL server: the one named by
// NOVANET_TEST_DATABASE_URL or the libpq environment (as pg_virtualenv sets
// it), or else a throwaway cluster it starts itself from Debian's
// PostgreSQL binaries. Each test gets its own database with the schema
// applied.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"novanet/db/migrations"
)

const template = "novanet_test_template"

var (
	mu      sync.Mutex
	srv     *Server
	srvErr  error
	counter atomic.Int64
)

// Server is one PostgreSQL server used by every test of a package.
type Server struct {
	adminURL string
	cmd      *exec.Cmd // nil when the server is not ours
	exited   chan error
	dir      string
	cred     *syscall.Credential
	bin      string
	tcpPort  int      // StartTCP's servers only
	settings []string // postgres -c settings of StartTCP's servers
}

// Main runs the tests and stops the server this package started, if any.
// Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	return code
}

// NewDB creates an empty database with the novanet schema applied and
// returns a pool on it and its URL. Both are closed and dropped when the
// test ends.
func NewDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	s, err := get()
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return newDB(t, s)
}

func newDB(t testing.TB, s *Server) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("novanet_test_%d_%d", os.Getpid(), counter.Add(1))
	dbURL, err := s.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Error(err)
		}
	})
	return pool, dbURL
}

// Start returns a server for a program that is not a test (benchmarks):
// the same choice of server as for tests. Call Stop when done.
func Start() (*Server, error) {
	s, err := start()
	if err != nil {
		return nil, err
	}
	if err := prepareTemplate(s.adminURL); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// AdminURL is a superuser connection URL for the server.
func (s *Server) AdminURL() string { return s.adminURL }

// CreateDatabase makes database name, with the schema applied, and returns
// its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	admin, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+template); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return withDatabase(s.adminURL, name), nil
}

// DropDatabase removes database name, disconnecting its sessions.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// AdminURL returns the URL of a superuser connection to the server.
func AdminURL(t testing.TB) string {
	t.Helper()
	s, err := get()
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return s.adminURL
}

func get() (*Server, error) {
	mu.Lock()
	defer mu.Unlock()
	if srv != nil || srvErr != nil {
		return srv, srvErr
	}
	srv, srvErr = start()
	if srvErr == nil {
		srvErr = prepareTemplate(srv.adminURL)
	}
	return srv, srvErr
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

func prepareTemplate(adminURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	// Serialise template creation between test binaries that share a server.
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		return err
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock(4242)") //nolint:errcheck
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", template).Scan(&exists); err != nil {
		return err
	}
	if exists {
		// A template from an older schema is rebuilt.
		pool, err := pgxpool.New(ctx, withDatabase(adminURL, template))
		if err != nil {
			return err
		}
		st, err := migrations.Current(ctx, pool)
		pool.Close()
		if err == nil && st.Version == migrations.Version && !st.Dirty {
			return nil
		}
		if _, err := admin.Exec(ctx, "DROP DATABASE "+template+" WITH (FORCE)"); err != nil {
			return err
		}
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+template); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, withDatabase(adminURL, template))
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrations.Up(ctx, pool)
}

func start() (*Server, error) {
	if u := os.Getenv("NOVANET_TEST_DATABASE_URL"); u != "" {
		return &Server{adminURL: u}, nil
	}
	if os.Getenv("PGHOST") != "" || os.Getenv("PGPORT") != "" {
		// pg_virtualenv and friends: libpq environment.
		return &Server{adminURL: "postgres:///postgres"}, nil
	}
	return startLocal(localOptions{})
}

// Options are for a server of a test's own (StartTCP).
type Options struct {
	// TLSCertPEM and TLSKeyPEM, when both set, turn on ssl with this server
	// certificate and key, and then only TLS connections are accepted over
	// TCP.
	TLSCertPEM, TLSKeyPEM []byte
}

// StartTCP starts a server of t's own that listens on 127.0.0.1, on a free
// port, as well as on its Unix socket (AdminURL), with trust
// authentication, and stops it when t ends. It is for tests of what only
// TCP has, such as TLS; the shared server of NewDB listens on a Unix socket
// only, and is faster to share. Like NewServer, it uses Debian's binaries
// whatever the environment says.
func StartTCP(t testing.TB, o Options) *Server {
	t.Helper()
	if (o.TLSCertPEM == nil) != (o.TLSKeyPEM == nil) {
		t.Fatal("pgtest: TLS needs both a certificate and a key")
	}
	var (
		s   *Server
		err error
	)
	// The free port is picked before postgres binds it: should another
	// process take it in between, try another.
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		s, err = startLocal(localOptions{Options: o, tcpPort: port})
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(s.Stop)
	if err := prepareTemplate(s.adminURL); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return s
}

// Port is the TCP port of a server from StartTCP (0 for the others).
func (s *Server) Port() int { return s.tcpPort }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var errPortTaken = errors.New("port taken")

type localOptions struct {
	Options
	tcpPort int // 0: Unix socket only
}

// startLocal runs initdb and postgres from Debian's packages in a temporary
// directory, listening on a Unix socket there, and on 127.0.0.1 when
// o.tcpPort is set.
func startLocal(o localOptions) (*Server, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "novanet-pgtest-")
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port := socketPort
	var settings []string
	if o.tcpPort != 0 {
		port = o.tcpPort
		if settings, err = writeTCPConfig(dir, data, o.Options, cred); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	s := &Server{
		adminURL: fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d", url.QueryEscape(dir), port),
		dir:      dir,
		cred:     cred,
		bin:      bin,
		tcpPort:  o.tcpPort,
		settings: settings,
	}
	if err := s.launch(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// socketPort only names the socket file in the server's directory; a
// server that listens on TCP too uses its TCP port for both.
const socketPort = 5432

// launch starts postgres on the server's data directory and waits until it
// accepts connections.
func (s *Server) launch() error {
	port, listen := socketPort, ""
	if s.tcpPort != 0 {
		port, listen = s.tcpPort, "127.0.0.1"
	}
	pg := exec.Command(filepath.Join(s.bin, "postgres"), append([]string{"-D", filepath.Join(s.dir, "data"), "-k", s.dir,
		"-p", strconv.Itoa(port), "-c", "listen_addresses=" + listen, "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=128MB",
		"-c", "max_prepared_transactions=10"}, s.settings...)...)
	pg.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	pg.Dir = s.dir
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	pg.Stdout, pg.Stderr = logf, logf
	if err := pg.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.cmd = pg
	s.exited = make(chan error, 1)
	exited := s.exited
	go func() { exited <- pg.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, s.adminURL)
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			if s.tcpPort != 0 && strings.Contains(string(log), "could not bind") {
				return fmt.Errorf("%w: %d: %s", errPortTaken, s.tcpPort, log)
			}
			return fmt.Errorf("postgres exited: %v: %s", werr, log)
		case <-time.After(50 * time.Millisecond): // poll interval, not a readiness guess
		}
		if time.Now().After(deadline) {
			_ = pg.Process.Kill()
			<-exited
			return fmt.Errorf("postgres did not accept connections: %w", err)
		}
	}
}

// NewServer starts a PostgreSQL server of the test's own, from Debian's
// binaries whatever the environment says, for tests that restart it; it
// is stopped when the test ends. NewDB on it gives databases.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := startLocal(localOptions{})
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(s.Stop)
	if err := prepareTemplate(s.adminURL); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return s
}

// NewDB is the package's NewDB on this server.
func (s *Server) NewDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	return newDB(t, s)
}

// Restart stops the server as an operator's restart does (a fast
// shutdown: every session is ended with SQLSTATE 57P01, transactions under
// way are rolled back) and starts it again on the same data. Only for a
// server started by NewServer.
func (s *Server) Restart() error {
	if s.cmd == nil {
		return errors.New("restart: not a server of this test")
	}
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	<-s.exited
	return s.launch()
}

func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		// Wait for the postmaster to be gone before removing its files.
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

func pgBinDir() (string, error) {
	if d := os.Getenv("NOVANET_PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries: install Debian's postgresql package")
}

// writeTCPConfig writes pg_hba.conf for a server that also listens on
// 127.0.0.1: trust on the Unix socket and over TCP, TCP over TLS only when
// o has a certificate, which it writes to dir for postgres to read. It
// returns the extra postgres settings.
func writeTCPConfig(dir, data string, o Options, cred *syscall.Credential) ([]string, error) {
	hba := "local all all trust\nhost all all 127.0.0.1/32 trust\n"
	var settings []string
	if o.TLSCertPEM != nil {
		hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
		cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
		for _, f := range []struct {
			path string
			pem  []byte
		}{{cert, o.TLSCertPEM}, {key, o.TLSKeyPEM}} {
			// postgres refuses a key that others may read.
			if err := os.WriteFile(f.path, f.pem, 0o600); err != nil {
				return nil, err
			}
			if cred != nil {
				if err := os.Chown(f.path, int(cred.Uid), int(cred.Gid)); err != nil {
					return nil, err
				}
			}
		}
		settings = []string{"-c", "ssl=on", "-c", "ssl_cert_file=" + cert, "-c", "ssl_key_file=" + key}
	}
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(filepath.Join(data, "pg_hba.conf"), int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	return settings, nil
}
