package manager

import "github.com/jackc/pgx/v5/pgxpool"

// TunePool sets what the manager's queries want of every connection of
// cfg, in the connection's startup parameters (no extra round trip): JIT
// compilation off, since it costs milliseconds and the manager's queries
// take microseconds; a plan whose estimated cost crosses jit_above_cost
// would otherwise be compiled on every call. A value the database URL sets
// is kept.
func TunePool(cfg *pgxpool.Config) {
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
}
