package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// GrantRuntime gives role, the database role network-manager serves with,
// exactly what serving needs and nothing more
// (docs/decisions/012-runtime-role.md): SELECT, INSERT, UPDATE and DELETE
// on every table of the schema (SELECT only on the migrations' own version
// table), USAGE on its sequences and on the schema, EXECUTE on its functions
// (novanet_analyze, which runs ANALYZE as the owner); whatever else it was
// granted on them is revoked. It owns nothing, so it can run no DDL. Run
// it, as the role that owns the schema, after every migration: Up's new
// tables need it too.
//
// It refuses a role that is the one running it, a member of it (which
// would inherit its ownership) or a superuser. The role must exist:
// creating roles is the database administrator's.
func GrantRuntime(ctx context.Context, pool *pgxpool.Pool, role string) (tables int, err error) {
	if role == "" {
		return 0, errors.New("runtime role: empty name")
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var (
			exists, super, member bool
			owner, schema         string
		)
		if err := tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
			       coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = $1), false),
			       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AND pg_has_role($1, current_user, 'MEMBER'),
			       current_user, current_schema()`, role).Scan(&exists, &super, &member, &owner, &schema); err != nil {
			return err
		}
		switch {
		case !exists:
			return fmt.Errorf("runtime role %q does not exist: create it first (CREATE ROLE %s LOGIN PASSWORD '...')",
				role, pgx.Identifier{role}.Sanitize())
		case role == owner:
			return fmt.Errorf("runtime role %q is the role that runs the migrations: give serving a role of its own", role)
		case super:
			return fmt.Errorf("runtime role %q is a superuser: give serving a role without privileges of its own", role)
		case member:
			return fmt.Errorf("runtime role %q is a member of %q, the owner of the schema, and could run DDL as it", role, owner)
		}
		r, s := pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()
		for _, q := range []string{
			"GRANT USAGE ON SCHEMA " + s + " TO " + r,
			"REVOKE ALL ON ALL TABLES IN SCHEMA " + s + " FROM " + r,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + s + " TO " + r,
			"REVOKE INSERT, UPDATE, DELETE ON " + s + ".schema_migrations FROM " + r,
			"REVOKE ALL ON ALL SEQUENCES IN SCHEMA " + s + " FROM " + r,
			"GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + s + " TO " + r,
			// novanet_analyze, and the trigger functions, which PUBLIC
			// may run anyway.
			"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA " + s + " TO " + r,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, schema).Scan(&tables)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return 0, fmt.Errorf("runtime role %q: %w (run migrations as the role that owns the schema)", role, err)
	}
	if err != nil {
		return 0, fmt.Errorf("runtime role %q: %w", role, err)
	}
	return tables, nil
}
