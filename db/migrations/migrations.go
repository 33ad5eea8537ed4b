// Package migrations holds novanet's SQL schema migrations, embedded in the
// binary, and applies them with golang-migrate.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

//go:embed *.sql
var files embed.FS

// Version is the schema version the migrations in this binary end at.
const Version = 10

// Status describes the schema version a database is at.
type Status struct {
	Version uint `json:"version"`
	Dirty   bool `json:"dirty"`
}

func open(pool *pgxpool.Pool) (*migrate.Migrate, func(), error) {
	src, err := iofs.New(files, ".")
	if err != nil {
		return nil, nil, fmt.Errorf("migration source: %w", err)
	}
	// Connections of their own, not the pool's: when the driver fails to
	// set up (the role may not create the version table, say), it keeps
	// the connection it took, and a pool connection never given back would
	// hang the pool's Close for ever.
	db := stdlib.OpenDB(*pool.Config().ConnConfig)
	drv, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migration driver: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return m, func() { _, _ = m.Close() }, nil
}

// Up applies every migration not yet applied, then refreshes the
// planner's statistics (ANALYZE) so that the new schema's queries are
// planned from what the tables hold. A database that is already current is
// not an error.
func Up(ctx context.Context, pool *pgxpool.Pool) error {
	applied := false
	err := run(ctx, pool, func(m *migrate.Migrate) error {
		err := m.Up()
		applied = err == nil
		return err
	})
	if err != nil || !applied {
		return err
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze after migrating: %w", err)
	}
	return nil
}

// Down reverts steps migrations (all of them when steps <= 0).
func Down(ctx context.Context, pool *pgxpool.Pool, steps int) error {
	return run(ctx, pool, func(m *migrate.Migrate) error {
		if steps <= 0 {
			return m.Down()
		}
		return m.Steps(-steps)
	})
}

// Current reports the schema version the database is at (0 when empty).
func Current(ctx context.Context, pool *pgxpool.Pool) (Status, error) {
	var st Status
	err := run(ctx, pool, func(m *migrate.Migrate) error {
		v, dirty, err := m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return nil
		}
		st = Status{Version: v, Dirty: dirty}
		return err
	})
	return st, err
}

func run(ctx context.Context, pool *pgxpool.Pool, f func(*migrate.Migrate) error) error {
	m, closeFn, err := open(pool)
	if err != nil {
		return err
	}
	defer closeFn()
	done := make(chan error, 1)
	go func() { done <- f(m) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		m.GracefulStop <- true
		err = <-done
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
