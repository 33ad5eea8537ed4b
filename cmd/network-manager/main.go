// Command network-manager is novanet's central service: it keeps network
// state in PostgreSQL and answers RPC over NATS.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"novanet/db/migrations"
	"novanet/internal/envflags"
	"novanet/internal/natsconn"
	"novanet/internal/redact"
	"novanet/manager"
	"novanet/natsembed"
	"novanet/rpc"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

const envPrefix = "NOVANET_"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv, nil)
	stop()
	os.Exit(code)
}

// readyFunc is told where the service listens once it is ready (tests).
type readyFunc func(httpAddr net.Addr, natsURL string)

type options struct {
	databaseURL   string
	migrateURL    string // owner role's URL for migrations; empty: databaseURL
	runtimeRole   string
	natsURL       string
	nats          natsconn.Options
	embeddedNATS  string
	credsDir      string
	embeddedName  string
	cluster       natsembed.Cluster
	httpListen    string
	migrate       bool
	mode          string
	workers       int
	queue         int
	disassociate  time.Duration
	sweepEvery    time.Duration
	reqTimeout    time.Duration
	reqIDWindow   time.Duration
	autoAssign    bool
	floatingPool  string
	floatingQuota int
	dbMaxConns    int
	logLevel      string
	logFormat     string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool), ready readyFunc) int {
	root := newRoot(lookupEnv, ready)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "network-manager: %v\n", err)
		return 1
	}
	return 0
}

func newRoot(lookupEnv func(string) (string, bool), ready readyFunc) *cobra.Command {
	var o options
	root := &cobra.Command{
		Use:   "network-manager",
		Short: "novanet's central network service",
		Long: `network-manager keeps all of novanet's network state in PostgreSQL -
networks, fixed IPs, virtual interfaces, floating IPs - and answers RPC over
NATS as the micro service "novanet-manager" on subjects novanet.manager.*.
Several replicas may run at once against one database: they share a NATS
queue group, so each request reaches one of them.

Two database roles keep a compromised manager from changing the schema:
serve connects with --database-url, a role that may only read and write
rows; migrate (and serve --migrate) with --migrate-database-url, the role
that owns the schema, and "migrate up" then grants the runtime role
(--runtime-role, by default --database-url's user) exactly SELECT, INSERT,
UPDATE and DELETE on every table. Use sslmode=verify-full and sslrootcert
in both URLs where the network to the database is not trusted.

Every flag can also be set from the environment: --database-url from
NOVANET_DATABASE_URL, --nats-url from NOVANET_NATS_URL, and so on.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return envflags.Apply(cmd.Flags(), envPrefix, lookupEnv)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.databaseURL, "database-url", "",
		"PostgreSQL URL the manager serves with, e.g. postgres://novanet_app@db/novanet?sslmode=verify-full (required)")
	pf.StringVar(&o.migrateURL, "migrate-database-url", "",
		"PostgreSQL URL of the role that owns the schema, for migrate and serve --migrate (default --database-url)")
	pf.StringVar(&o.runtimeRole, "runtime-role", "",
		"role that migrate up grants DML on every table to (default: --database-url's user, when --migrate-database-url names another)")
	pf.StringVar(&o.credsDir, "creds-dir", "",
		"NATS identities: the embedded server's own (made at its first start) and those \"creds\" issues (default: novanet/nats in the user's configuration directory, ~/.config)")
	pf.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	pf.IntVar(&o.dbMaxConns, "db-max-conns", 8,
		"most database connections this replica opens; a few per database core serve best, more only contend")

	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the manager until SIGINT or SIGTERM",
		Long: `Run the manager. Without --nats-url it runs an embedded nats-server
in-process on --embedded-nats-listen, so one machine needs nothing else; with
--nats-url it joins an external NATS cluster. With
--embedded-nats-cluster-listen (and --embedded-nats-routes) the embedded
server is itself a node of a NATS cluster: several manager machines then
need no separate NATS deployment, and each replica keeps working when
another's node dies. On SIGINT or SIGTERM it stops taking requests,
finishes those under way and exits.

The embedded server refuses anonymous clients: it serves the identities of
--creds-dir (see "network-manager creds"), making a manager identity for
itself and an operator identity for netadm there at its first start, and
reloads them on SIGHUP. With --nats-url, give the manager's identity with
--nats-nkey or --nats-creds (docs/security.md).

The database schema must be current: run "network-manager migrate up" first,
or pass --migrate to apply pending migrations, and the runtime role's
grants, at start (safe with several replicas: migrations take a database
lock).

HTTP on --http-listen: /healthz (the process is up), /readyz (database and
NATS reachable; the reason when not, never the database's error, which is
logged) and /metrics (Prometheus). They have no authentication: keep them
on loopback, or behind a proxy or firewall that lets only monitoring in.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serveCmd(cmd.Context(), o, cmd.ErrOrStderr(), ready)
		},
	}
	f := serve.Flags()
	f.StringVar(&o.natsURL, "nats-url", "", "NATS server URL(s), comma-separated; empty runs an embedded server")
	o.nats.AddFlags(f)
	f.StringVar(&o.embeddedNATS, "embedded-nats-listen", "127.0.0.1:4222", "where the embedded nats-server listens (port 0: any free port)")
	f.StringVar(&o.embeddedName, "embedded-nats-name", "",
		"the embedded nats-server's name, unique in its cluster (default: "+natsembed.DefaultServerName+" alone, the host name in a cluster)")
	f.StringVar(&o.cluster.Listen, "embedded-nats-cluster-listen", "",
		"host:port where the embedded nats-server listens for routes from other cluster nodes; empty: it stays alone")
	f.StringVar(&o.cluster.Name, "embedded-nats-cluster-name", "novanet", "name of the NATS cluster the embedded server joins, the same on every node")
	f.StringSliceVar(&o.cluster.Routes, "embedded-nats-routes", nil,
		"route URLs of the other cluster nodes, comma-separated: nats-route://nats-2:6222,nats-route://nats-3:6222")
	f.StringVar(&o.cluster.TLS.Cert, "embedded-nats-route-tls-cert", "", "PEM certificate the embedded server presents on routes (TLS routes need all three files)")
	f.StringVar(&o.cluster.TLS.Key, "embedded-nats-route-tls-key", "", "PEM key of --embedded-nats-route-tls-cert")
	f.StringVar(&o.cluster.TLS.CA, "embedded-nats-route-tls-ca", "", "PEM CA that signed the other nodes' route certificates; routes from others are refused")
	f.StringVar(&o.httpListen, "http-listen", "127.0.0.1:9696", "address for /healthz, /readyz and /metrics; empty disables HTTP")
	f.BoolVar(&o.migrate, "migrate", false, "apply pending database migrations at start")
	f.StringVar(&o.mode, "network-mode", "flatdhcp", "network mode of the deployment: flat, flatdhcp or vlan")
	f.IntVar(&o.workers, "workers", 64, "requests this replica handles at once")
	f.IntVar(&o.queue, "queue", 0, "requests that may wait for a worker; past it a request is answered unavailable at once (0: 64 per worker)")
	f.DurationVar(&o.disassociate, "disassociate-timeout", 10*time.Minute,
		"free a deallocated fixed IP whose DHCP release never came after this long")
	f.DurationVar(&o.sweepEvery, "sweep-interval", time.Minute, "how often to look for such fixed IPs (and forget old request ids)")
	f.DurationVar(&o.reqTimeout, "request-timeout", 30*time.Second,
		"longest a request may take from when it reaches this replica, also when the caller's deadline is later")
	f.DurationVar(&o.reqIDWindow, "request-id-window", 24*time.Hour,
		"how long replies to requests with a request id are kept: a retry with the same id within it gets the same reply")
	f.BoolVar(&o.autoAssign, "auto-assign-floating-ip", false,
		"give every new instance a floating IP from --default-floating-pool, associated with its first fixed IP")
	f.StringVar(&o.floatingPool, "default-floating-pool", rpc.DefaultFloatingPool, "floating pool of requests that name none")
	f.IntVar(&o.floatingQuota, "quota-floating-ips", rpc.DefaultFloatingIPQuota,
		"floating IPs a project may hold without a quota of its own (-1: unlimited)")
	envflags.Annotate(f, envPrefix)

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, revert or show database schema migrations",
	}
	migrate.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration (a current schema is not an error)",
		Long: `Apply every pending migration, as --migrate-database-url's role (the
owner of the schema; --database-url's without it). A current schema is not
an error.

With a runtime role (--runtime-role, or --database-url's user when it is not
the migrating one) it then grants that role exactly USAGE on the schema,
SELECT, INSERT, UPDATE and DELETE on every table (SELECT only on
schema_migrations) and USAGE on the sequences, revoking anything else it had
on them. The role must exist, and may not be the migrating role, a member of
it, or a superuser.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMigratePool(cmd.Context(), o, func(pool *pgxpool.Pool) error {
				if err := migrateUp(cmd.Context(), pool, o, func(msg string) { fmt.Fprintln(cmd.OutOrStdout(), msg) }); err != nil {
					return err
				}
				return printVersion(cmd, pool)
			})
		},
	}, &cobra.Command{
		Use:   "down [N]",
		Short: "Revert the last N migrations (all of them without N): this drops data",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			steps := 0
			if len(args) == 1 {
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 1 {
					return fmt.Errorf("steps %q: want a whole number of at least 1", args[0])
				}
				steps = n
			}
			return withMigratePool(cmd.Context(), o, func(pool *pgxpool.Pool) error {
				if err := migrations.Down(cmd.Context(), pool, steps); err != nil {
					return err
				}
				return printVersion(cmd, pool)
			})
		},
	}, &cobra.Command{
		Use:   "version",
		Short: "Show the schema version of the database and of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMigratePool(cmd.Context(), o, func(pool *pgxpool.Pool) error { return printVersion(cmd, pool) })
		},
	})
	envflags.Annotate(pf, envPrefix)
	root.AddCommand(serve, migrate, newCredsCmd(&o))
	return root
}

func printVersion(cmd *cobra.Command, pool *pgxpool.Pool) error {
	st, err := migrations.Current(cmd.Context(), pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "database schema version %d (dirty: %v); this binary's: %d\n", st.Version, st.Dirty, migrations.Version)
	return nil
}

func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	case "console":
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl), zap.AddCaller()), nil
}

func serveCmd(ctx context.Context, o options, logw io.Writer, ready readyFunc) error {
	mode, err := manager.ParseMode(o.mode)
	if err != nil {
		return err
	}
	if o.floatingQuota == 0 || o.floatingQuota < rpc.QuotaUnlimited {
		return fmt.Errorf("--quota-floating-ips %d: want -1 (unlimited) or at least 1; give single projects 0 with netadm quota set", o.floatingQuota)
	}
	var embedded []natsembed.Option
	if o.natsURL == "" {
		if embedded, err = embeddedOptions(o); err != nil {
			return err
		}
	} else if o.cluster.Listen != "" || len(o.cluster.Routes) > 0 {
		return errors.New("--embedded-nats-cluster-listen and --embedded-nats-routes configure the embedded nats-server, which --nats-url turns off")
	}
	log, err := newLogger(o.logLevel, o.logFormat, logw)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	if o.migrate {
		err := withMigratePool(ctx, o, func(pool *pgxpool.Pool) error {
			return migrateUp(ctx, pool, o, func(msg string) { log.Info(msg) })
		})
		if err != nil {
			return err
		}
	}
	pool, err := openPool(ctx, o)
	if err != nil {
		return err
	}
	defer pool.Close()
	warnIfOwner(ctx, pool, log)
	st, err := migrations.Current(ctx, pool)
	if err != nil {
		return err
	}
	if st.Dirty || st.Version != migrations.Version {
		return fmt.Errorf("database schema is at version %d (dirty: %v), this binary needs %d: run \"network-manager migrate up\" or start with --migrate",
			st.Version, st.Dirty, migrations.Version)
	}

	natsURL := o.natsURL
	if natsURL == "" {
		store, seed, err := embeddedIdentities(o)
		if err != nil {
			return err
		}
		if o.nats.Anonymous() {
			o.nats.NKey = seed
		}
		ns, err := natsembed.Start(o.embeddedNATS, append(embedded, natsembed.WithAuthFile(store.ConfigPath()))...)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		stopReload := reloadOnHUP(ns, store, log)
		defer stopReload()
		natsURL = ns.ClientURL()
		fields := []zap.Field{zap.String("url", redact.URL(natsURL)), zap.String("name", ns.Name())}
		if r := ns.RouteURL(); r != "" {
			fields = append(fields, zap.String("cluster", o.cluster.Name), zap.String("routes_listen", r),
				zap.String("routes", redact.URL(strings.Join(o.cluster.Routes, ","))))
		}
		log.Info("embedded nats-server started", fields...)
	}
	nc, err := o.nats.Connect(natsURL, "network-manager", nats.MaxReconnects(-1), natsconn.LogErrors(log),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", zap.String("url", c.ConnectedUrlRedacted())) }))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redact.URL(natsURL), err)
	}
	defer nc.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.disassociate <= 0 || o.sweepEvery <= 0 || o.reqTimeout <= 0 || o.reqIDWindow <= 0 {
		return fmt.Errorf("--disassociate-timeout, --sweep-interval, --request-timeout and --request-id-window must be positive")
	}
	m, err := manager.New(pool, log, manager.Config{Mode: mode, Workers: o.workers, Queue: o.queue, Version: version,
		RequestTimeout: o.reqTimeout, RequestIDWindow: o.reqIDWindow,
		DisassociateTimeout: o.disassociate, AutoAssignFloatingIP: o.autoAssign,
		DefaultFloatingPool: o.floatingPool, FloatingIPQuota: o.floatingQuota}, reg)
	if err != nil {
		return err
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go m.RunSweeper(sweepCtx, o.sweepEvery)
	// Requests under way finish on shutdown: their context is not ctx.
	svc, err := m.Serve(context.WithoutCancel(ctx), nc)
	if err != nil {
		return err
	}

	var (
		httpAddr net.Addr
		httpDesc = "disabled"
		srv      *http.Server
	)
	if o.httpListen != "" {
		ln, err := net.Listen("tcp", o.httpListen)
		if err != nil {
			_ = svc.Stop()
			return fmt.Errorf("http listen %s: %w", o.httpListen, err)
		}
		httpAddr = ln.Addr()
		httpDesc = httpAddr.String()
		srv = &http.Server{Handler: httpHandler(m, nc, reg, log), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", zap.Error(err))
			}
		}()
	}
	log.Info("network-manager ready", zap.String("mode", string(mode)), zap.String("nats", redact.URL(natsURL)),
		zap.String("http", httpDesc), zap.String("version", version))
	if ready != nil {
		ready(httpAddr, natsURL)
	}

	<-ctx.Done()
	log.Info("shutting down")
	if err := svc.Stop(); err != nil {
		log.Warn("stop service", zap.Error(err))
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	if err := nc.Drain(); err != nil {
		log.Warn("drain NATS", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// embeddedOptions turns the --embedded-nats-* flags into natsembed's
// options: a lone server without --embedded-nats-cluster-listen, else a
// cluster node named after the host unless --embedded-nats-name says.
func embeddedOptions(o options) ([]natsembed.Option, error) {
	name := o.embeddedName
	if o.cluster.Listen == "" {
		if len(o.cluster.Routes) > 0 {
			return nil, errors.New("--embedded-nats-routes needs --embedded-nats-cluster-listen: a node that routes to others must accept their routes")
		}
		if name != "" {
			return []natsembed.Option{natsembed.WithServerName(name)}, nil
		}
		return nil, nil
	}
	for _, r := range o.cluster.Routes {
		if _, err := natsembed.ParseRoute(r); err != nil {
			return nil, err
		}
	}
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server name: %w; set --embedded-nats-name", err)
		}
		name = h
	}
	return []natsembed.Option{natsembed.WithServerName(name), natsembed.WithCluster(o.cluster)}, nil
}

// httpHandler serves /healthz, /readyz and /metrics. /readyz answers why it
// is not ready in generic words only: a database error names the user, the
// database and the host, and whoever can reach the port need not learn them;
// the detail goes to the log.
func httpHandler(m *manager.Manager, nc *nats.Conn, reg *prometheus.Registry, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := m.Ready(ctx); err != nil {
			log.Warn("not ready: database unreachable", zap.Error(err))
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		if !nc.IsConnected() {
			log.Warn("not ready: NATS not connected", zap.String("status", nc.Status().String()))
			http.Error(w, "nats unavailable: "+nc.Status().String(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
