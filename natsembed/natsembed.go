// Package natsembed runs a nats-server inside the current process, so that a
// single machine needs no separate NATS deployment. The embedded server stays
// alone by default; with WithCluster it listens for routes and joins a
// nats-server cluster like any other node.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned when the server does not accept connections in time.
var ErrNotReady = errors.New("embedded nats-server not ready")

// DefaultServerName names a server that stays alone.
const DefaultServerName = "novanet-embedded"

// Server is a running in-process nats-server.
type Server struct {
	srv *server.Server
	// options rebuilds the server's options, for Reload.
	options func() (*server.Options, error)
}

// Cluster is how an embedded server joins a nats-server cluster: it listens
// for routes from the other nodes on Listen and dials the nodes in Routes.
// Every node of a cluster has the same Name and its own server name (see
// WithServerName).
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Listen is host:port for routes from other nodes (port 0: any free
	// port, for tests).
	Listen string
	// Routes are the other nodes' route URLs, nats-route://host:port (or
	// nats://host:port). Listing this node itself is harmless: a server
	// does not route to itself.
	Routes []string
	// TLS, when its files are set, protects routes both ways: this node
	// presents Cert/Key and accepts only peers whose certificates CA signed.
	TLS RouteTLS
}

// RouteTLS names the PEM files of route TLS. All three or none.
type RouteTLS struct {
	Cert, Key, CA string
}

func (t RouteTLS) set() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

type config struct {
	name     string
	cluster  *Cluster
	authFile string
	// maxPayload: 0 for the default.
	maxPayload int32
}

// Option changes how Start configures the server.
type Option func(*config)

// WithServerName names the server (DefaultServerName without it). Nodes of
// one cluster need distinct names: a route to a server of the same name is
// refused.
func WithServerName(name string) Option { return func(c *config) { c.name = name } }

// WithAuthFile loads a nats-server configuration file, such as the
// authorization block that natsauth writes: its users and their
// permissions apply, and a client that is none of them is refused. Without
// it the server lets anyone in (tests and benchmarks only). Settings of
// the other options (listen address, name, cluster) win over the file's.
func WithAuthFile(path string) Option { return func(c *config) { c.authFile = path } }

// WithMaxPayload sets the largest message the server carries (8 MiB
// without it; an external nats-server's default is 1 MiB).
func WithMaxPayload(n int32) Option { return func(c *config) { c.maxPayload = n } }

// WithCluster makes the server a node of a cluster.
func WithCluster(cl Cluster) Option { return func(c *config) { c.cluster = &cl } }

// Start listens on listen ("host:port"; port 0 picks a free one) and returns
// once the server accepts client connections. Routes to the other nodes of a
// cluster are dialled in the background and redialled when they drop: Start
// does not wait for them.
func Start(listen string, options ...Option) (*Server, error) {
	cfg := config{name: DefaultServerName}
	for _, o := range options {
		o(&cfg)
	}
	build := func() (*server.Options, error) { return cfg.options(listen) }
	opts, err := build()
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w on %s", ErrNotReady, listen)
	}
	return &Server{srv: srv, options: build}, nil
}

func (cfg config) options(listen string) (*server.Options, error) {
	host, port, err := hostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen address %q: %w", listen, err)
	}
	opts := &server.Options{}
	if cfg.authFile != "" {
		if opts, err = server.ProcessConfigFile(cfg.authFile); err != nil {
			return nil, fmt.Errorf("embedded nats configuration: %w", err)
		}
	}
	opts.ServerName = cfg.name
	opts.Host, opts.Port = host, port
	opts.NoSigs, opts.NoLog = true, true
	opts.MaxPayload = 8 << 20
	if cfg.maxPayload > 0 {
		opts.MaxPayload = cfg.maxPayload
	}
	if cfg.cluster != nil {
		if err := clusterOptions(opts, *cfg.cluster); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// Reload re-reads the WithAuthFile file and applies it: clients whose user
// is gone are disconnected, new users may connect, and changed permissions
// apply.
func (s *Server) Reload() error {
	opts, err := s.options()
	if err != nil {
		return err
	}
	if err := s.srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("embedded nats reload: %w", err)
	}
	return nil
}

// hostPort splits a listen address; port 0 becomes nats-server's "any".
func hostPort(listen string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errors.New("bad port")
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

func clusterOptions(opts *server.Options, cl Cluster) error {
	if cl.Name == "" {
		return errors.New("embedded nats cluster: no cluster name")
	}
	if strings.ContainsAny(cl.Name, " \t\r\n") {
		return fmt.Errorf("embedded nats cluster name %q: no spaces", cl.Name)
	}
	if opts.ServerName == DefaultServerName {
		return fmt.Errorf("embedded nats cluster: give this node its own server name, not %q", DefaultServerName)
	}
	host, port, err := hostPort(cl.Listen)
	if err != nil {
		return fmt.Errorf("embedded nats cluster listen address %q: %w", cl.Listen, err)
	}
	opts.Cluster.Name = cl.Name
	opts.Cluster.Host = host
	opts.Cluster.Port = port
	for _, r := range cl.Routes {
		u, err := ParseRoute(r)
		if err != nil {
			return err
		}
		opts.Routes = append(opts.Routes, u)
	}
	if cl.TLS.set() {
		if cl.TLS.Cert == "" || cl.TLS.Key == "" || cl.TLS.CA == "" {
			return errors.New("embedded nats cluster TLS: give the certificate, its key and the CA, or none of them")
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cl.TLS.Cert, KeyFile: cl.TLS.Key, CaFile: cl.TLS.CA, Verify: true,
		})
		if err != nil {
			return fmt.Errorf("embedded nats cluster TLS: %w", err)
		}
		// A node is both the server and the client of its routes: the CA
		// checks peers either way, as nats-server's own config does.
		tc.RootCAs = tc.ClientCAs
		opts.Cluster.TLSConfig = tc
		opts.Cluster.TLSTimeout = 2
	}
	return nil
}

// ParseRoute checks one route URL: nats-route:// or nats://, a host and a
// port, nothing else (route TLS is the cluster's setting, not the URL's).
func ParseRoute(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("embedded nats route %q: %w", s, err)
	}
	switch u.Scheme {
	case "nats-route", "nats":
	default:
		return nil, fmt.Errorf("embedded nats route %q: want nats-route://host:port", s)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("embedded nats route %q: want nats-route://host:port", s)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("embedded nats route %q: bad port", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("embedded nats route %q: want nats-route://host:port, no path", s)
	}
	return u, nil
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// Name is the server's name.
func (s *Server) Name() string { return s.srv.Name() }

// RouteURL is the nats-route:// URL other nodes dial to reach this one;
// empty when the server is not a cluster node.
func (s *Server) RouteURL() string {
	a := s.srv.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats-route://" + net.JoinHostPort(a.IP.String(), strconv.Itoa(a.Port))
}

// Peers is how many other servers this one has a route to.
func (s *Server) Peers() int { return s.srv.NumRemotes() }

// Interest is how many subscriptions to subject this server knows of, its
// own clients' and those of the servers routed to it: each queue group
// member counts once.
func (s *Server) Interest(subject string) int {
	return s.srv.GlobalAccount().Interest(subject)
}

// Shutdown stops the server and waits for it to finish.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}
