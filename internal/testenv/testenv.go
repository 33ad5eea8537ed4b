// Package testenv starts what integration tests need: a fresh PostgreSQL
// database (see pgtest), an in-process nats-server on a random port, and
// manager replicas serving on it. StartSecure's server refuses anonymous
// clients and applies natsauth's permissions, as deployed; Start's lets
// anyone do anything, for tests that watch or stand in for the manager.
package testenv

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap/zaptest"

	"novanet/client"
	"novanet/internal/natsconn"
	"novanet/internal/pgtest"
	"novanet/manager"
	"novanet/natsauth"
	"novanet/natsembed"
)

// Env is one test's service: database, NATS and managers.
type Env struct {
	Pool    *pgxpool.Pool
	DBURL   string
	NATSURL string
	Client  *client.Client
	Mode    manager.Mode
	// Config is what every manager replica of the env gets (Mode aside).
	Config manager.Config
	// Manager is the first replica, for calls tests make directly.
	Manager *manager.Manager

	// With StartSecure: the identities, and the server that reloads them.
	creds *natsauth.Store
	ns    *natsembed.Server
	mu    sync.Mutex
}

// StartSecure is Start on a server with natsauth's identities and
// permissions: the managers connect as a manager identity, Client and
// Connect as an operator, and NKey issues more (an agent's, say).
func StartSecure(t testing.TB, mode manager.Mode) *Env {
	t.Helper()
	pool, dbURL := pgtest.NewDB(t)
	store := &natsauth.Store{Dir: t.TempDir()}
	for _, id := range []struct {
		kind natsauth.Kind
		name string
	}{{natsauth.KindManager, "m"}, {natsauth.KindOperator, "test"}} {
		if _, err := store.Add(id.kind, id.name); err != nil {
			t.Fatal(err)
		}
	}
	return start(t, manager.Config{Mode: mode}, pool, dbURL, store)
}

// NKey returns the seed file of identity kind.name, issuing it (and
// reloading the server) the first time; "" on a Start server, which needs
// none.
func (e *Env) NKey(t testing.TB, kind natsauth.Kind, name string) string {
	t.Helper()
	if e.creds == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := os.Stat(e.creds.PubPath(kind, name)); err == nil {
		return e.creds.SeedPath(kind, name)
	}
	if _, err := e.creds.Add(kind, name); err != nil {
		t.Fatal(err)
	}
	if err := e.ns.Reload(); err != nil {
		t.Fatal(err)
	}
	return e.creds.SeedPath(kind, name)
}

// ConnectAs opens a connection as identity kind.name (see NKey), closed at
// the end of the test.
func (e *Env) ConnectAs(t testing.TB, kind natsauth.Kind, name string) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Options{NKey: e.NKey(t, kind, name)}.Connect(e.NATSURL, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Start gives the test a database, a NATS server and one manager in mode.
func Start(t testing.TB, mode manager.Mode) *Env {
	t.Helper()
	return StartConfig(t, manager.Config{Mode: mode})
}

// StartConfig is Start with a manager configuration; its Version is
// ignored.
func StartConfig(t testing.TB, cfg manager.Config) *Env {
	t.Helper()
	pool, dbURL := pgtest.NewDB(t)
	return StartOn(t, cfg, pool, dbURL)
}

// StartNATS is StartConfig with options for its NATS server (a smaller
// max payload, say).
func StartNATS(t testing.TB, cfg manager.Config, nopts ...natsembed.Option) *Env {
	t.Helper()
	pool, dbURL := pgtest.NewDB(t)
	return start(t, cfg, pool, dbURL, nil, nopts...)
}

// StartOn is StartConfig on a database the test made (on a server of its
// own, say: pgtest.NewServer).
func StartOn(t testing.TB, cfg manager.Config, pool *pgxpool.Pool, dbURL string) *Env {
	t.Helper()
	return start(t, cfg, pool, dbURL, nil)
}

func start(t testing.TB, cfg manager.Config, pool *pgxpool.Pool, dbURL string, creds *natsauth.Store, nopts ...natsembed.Option) *Env {
	t.Helper()
	mode := cfg.Mode
	opts := append([]natsembed.Option(nil), nopts...)
	if creds != nil {
		opts = append(opts, natsembed.WithAuthFile(creds.ConfigPath()))
	}
	ns, err := natsembed.Start("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e := &Env{Pool: pool, DBURL: dbURL, NATSURL: ns.ClientURL(), Mode: mode, Config: cfg, creds: creds, ns: ns}
	e.Manager = e.AddManager(t, "")
	e.Client = client.New(e.Connect(t), 20*time.Second)
	return e
}

// Connect opens a NATS connection closed at the end of the test: an
// operator's with StartSecure.
func (e *Env) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	if e.creds != nil {
		return e.ConnectAs(t, natsauth.KindOperator, "test")
	}
	nc, err := nats.Connect(e.NATSURL, nats.Name(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// AddManager starts one more manager replica on its own NATS connection
// and database pool; version distinguishes replicas in discovery.
func (e *Env) AddManager(t testing.TB, version string) *manager.Manager {
	t.Helper()
	pcfg, err := pgxpool.ParseConfig(e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	manager.TunePool(pcfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := e.Config
	cfg.Mode, cfg.Version = e.Mode, version
	m, err := manager.New(pool, zaptest.NewLogger(t), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var nc *nats.Conn
	if e.creds != nil {
		nc = e.ConnectAs(t, natsauth.KindManager, "m")
	} else {
		nc = e.Connect(t)
	}
	svc, err := m.Serve(ctx, nc)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("stop manager: %v", err)
		}
		cancel()
	})
	return m
}
