package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"novanet/db/migrations"
	"novanet/manager"
)

// The manager uses two database roles (docs/decisions/012-runtime-role.md):
// the owner of the schema, which runs migrations (--migrate-database-url),
// and a runtime role with DML only, which serves (--database-url). With
// only --database-url, one role does both.

// openPool connects to --database-url, the runtime role's.
func openPool(ctx context.Context, o options) (*pgxpool.Pool, error) {
	if o.databaseURL == "" {
		return nil, errors.New("no database: set --database-url or NOVANET_DATABASE_URL")
	}
	return connect(ctx, o.databaseURL, "database url", o.dbMaxConns, manager.TunePool)
}

// openMigratePool connects as the role that migrates: --migrate-database-url,
// or --database-url without it.
func openMigratePool(ctx context.Context, o options) (*pgxpool.Pool, error) {
	if o.migrateURL == "" {
		return openPool(ctx, o)
	}
	return connect(ctx, o.migrateURL, "migrate database url", 2, nil)
}

func connect(ctx context.Context, rawURL, what string, maxConns int, tune func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	if tune != nil {
		tune(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}

// withMigratePool runs f on a pool of the migrating role.
func withMigratePool(ctx context.Context, o options, f func(*pgxpool.Pool) error) error {
	pool, err := openMigratePool(ctx, o)
	if err != nil {
		return err
	}
	defer pool.Close()
	return f(pool)
}

// runtimeRole is the role migrate up grants to: --runtime-role, or else the
// user of --database-url when --migrate-database-url names another user;
// empty when one role does both.
func runtimeRole(o options) (string, error) {
	if o.runtimeRole != "" || o.migrateURL == "" || o.databaseURL == "" {
		return o.runtimeRole, nil
	}
	rt, err := pgx.ParseConfig(o.databaseURL)
	if err != nil {
		return "", fmt.Errorf("database url: %w", err)
	}
	owner, err := pgx.ParseConfig(o.migrateURL)
	if err != nil {
		return "", fmt.Errorf("migrate database url: %w", err)
	}
	if rt.User == owner.User {
		return "", nil
	}
	return rt.User, nil
}

// migrateUp applies the pending migrations and grants the runtime role its
// privileges on what they made, telling report what it granted.
func migrateUp(ctx context.Context, pool *pgxpool.Pool, o options, report func(string)) error {
	role, err := runtimeRole(o)
	if err != nil {
		return err
	}
	if err := migrations.Up(ctx, pool); err != nil {
		return err
	}
	if role == "" {
		return nil
	}
	n, err := migrations.GrantRuntime(ctx, pool, role)
	if err != nil {
		return err
	}
	report(fmt.Sprintf("runtime role %s: SELECT, INSERT, UPDATE, DELETE on %d tables (SELECT only on schema_migrations), USAGE on their sequences", role, n))
	return nil
}

// warnIfOwner logs a warning when the role the manager serves with could
// change the schema: it owns a table of it, may create in it, or is a
// superuser.
func warnIfOwner(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) {
	var (
		user       string
		owns, free bool
	)
	err := pool.QueryRow(ctx, `
		SELECT current_user,
		       EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tableowner = current_user),
		       has_schema_privilege(current_schema(), 'CREATE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)`).
		Scan(&user, &owns, &free)
	if err != nil {
		log.Warn("could not check the database role's privileges", zap.Error(err))
		return
	}
	if owns || free {
		log.Warn("the database role serves with DDL rights: give --database-url a DML-only role and --migrate-database-url the owner (docs/security.md)",
			zap.String("role", user), zap.Bool("owns_tables", owns))
	}
}
