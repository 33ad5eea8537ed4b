// Package testenv starts what integration tests need: a fresh PostgreSQL
// database (see pgtest), an in-process nats-server on a random port, and
// manager replicas serving on it.
package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap/zaptest"

	"novanet/client"
	"novanet/internal/pgtest"
	"novanet/manager"
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

// StartOn is StartConfig on a database the test made (on a server of its
// own, say: pgtest.NewServer).
func StartOn(t testing.TB, cfg manager.Config, pool *pgxpool.Pool, dbURL string) *Env {
	t.Helper()
	mode := cfg.Mode
	ns, err := natsembed.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e := &Env{Pool: pool, DBURL: dbURL, NATSURL: ns.ClientURL(), Mode: mode, Config: cfg}
	e.Manager = e.AddManager(t, "")
	e.Client = client.New(e.Connect(t), 20*time.Second)
	return e
}

// Connect opens a NATS connection closed at the end of the test.
func (e *Env) Connect(t testing.TB) *nats.Conn {
	t.Helper()
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
	svc, err := m.Serve(ctx, e.Connect(t))
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
