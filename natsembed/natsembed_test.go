package natsembed

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"novanet/internal/poll"
	"novanet/internal/testcerts"
)

func start(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t *testing.T, s *Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// roundTrip subscribes on sub's server, waits until pub's server knows of
// the subscription and checks that a message published there arrives.
func roundTrip(t *testing.T, pubSrv, subSrv *Server, subject string) {
	t.Helper()
	sub, err := connect(t, subSrv).SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, pubSrv.Name()+" to see the subscription on "+subSrv.Name(), func() bool { return pubSrv.Interest(subject) > 0 })
	pub := connect(t, pubSrv)
	if err := pub.Publish(subject, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil || string(m.Data) != "hello" {
		t.Fatalf("message from %s to %s: %v, %v", pubSrv.Name(), subSrv.Name(), m, err)
	}
}

func TestAlone(t *testing.T) {
	s := start(t)
	if s.RouteURL() != "" || s.Peers() != 0 || s.Name() != DefaultServerName {
		t.Errorf("lone server: route URL %q, %d peers, name %q", s.RouteURL(), s.Peers(), s.Name())
	}
	roundTrip(t, s, s, "alone")
}

func node(t *testing.T, name string, tls RouteTLS, routes ...string) *Server {
	t.Helper()
	return start(t, WithServerName(name), WithCluster(Cluster{Name: "test", Listen: "127.0.0.1:0", Routes: routes, TLS: tls}))
}

func TestClusterOfThree(t *testing.T) {
	a := node(t, "a", RouteTLS{})
	if !strings.HasPrefix(a.RouteURL(), "nats-route://127.0.0.1:") {
		t.Fatalf("route URL %q", a.RouteURL())
	}
	// b and c know only a (and themselves, as every node's list would);
	// a tells them of each other.
	b := node(t, "b", RouteTLS{}, a.RouteURL())
	c := node(t, "c", RouteTLS{}, a.RouteURL())
	for _, s := range []*Server{a, b, c} {
		poll.Until(t, s.Name()+" routed to both others", func() bool { return s.Peers() == 2 })
	}
	roundTrip(t, a, c, "a.to.c")
	roundTrip(t, c, b, "c.to.b")

	// Without a, b and c still reach each other.
	a.Shutdown()
	poll.Until(t, "b and c to drop a", func() bool { return b.Peers() == 1 && c.Peers() == 1 })
	roundTrip(t, b, c, "b.to.c")
}

func TestClusterTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "routes")
	tlsFor := func(name string) RouteTLS {
		cert, key := ca.Issue(t, name)
		return RouteTLS{Cert: cert, Key: key, CA: ca.File}
	}
	a := node(t, "a", tlsFor("a"))
	b := node(t, "b", tlsFor("b"), a.RouteURL())
	poll.Until(t, "a and b routed over TLS", func() bool { return a.Peers() == 1 && b.Peers() == 1 })
	roundTrip(t, b, a, "over.tls")
}

func TestStartErrors(t *testing.T) {
	ca := testcerts.NewCA(t, "x")
	cert, key := ca.Issue(t, "x")
	for _, tc := range []struct {
		name   string
		listen string
		opts   []Option
		want   string
	}{
		{"listen", "127.0.0.1", nil, `listen address "127.0.0.1"`},
		{"port", "127.0.0.1:99999", nil, "bad port"},
		{"no cluster name", "127.0.0.1:0", []Option{WithServerName("n"), WithCluster(Cluster{Listen: "127.0.0.1:0"})}, "no cluster name"},
		{"default server name", "127.0.0.1:0", []Option{WithCluster(Cluster{Name: "c", Listen: "127.0.0.1:0"})}, "its own server name"},
		{"cluster listen", "127.0.0.1:0", []Option{WithServerName("n"), WithCluster(Cluster{Name: "c", Listen: "nowhere"})}, `cluster listen address "nowhere"`},
		{"route scheme", "127.0.0.1:0", []Option{WithServerName("n"), WithCluster(Cluster{Name: "c", Listen: "127.0.0.1:0",
			Routes: []string{"http://10.0.0.1:6222"}})}, `route "http://10.0.0.1:6222"`},
		{"route port", "127.0.0.1:0", []Option{WithServerName("n"), WithCluster(Cluster{Name: "c", Listen: "127.0.0.1:0",
			Routes: []string{"nats-route://10.0.0.1"}})}, `route "nats-route://10.0.0.1"`},
		{"half TLS", "127.0.0.1:0", []Option{WithServerName("n"), WithCluster(Cluster{Name: "c", Listen: "127.0.0.1:0",
			TLS: RouteTLS{Cert: cert, Key: key}})}, "or none of them"},
		{"TLS files", "127.0.0.1:0", []Option{WithServerName("n"), WithCluster(Cluster{Name: "c", Listen: "127.0.0.1:0",
			TLS: RouteTLS{Cert: cert, Key: key, CA: "/nonexistent/ca.pem"}})}, "/nonexistent/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(tc.listen, tc.opts...)
			if err == nil {
				s.Shutdown()
				t.Fatalf("started; want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"nats-route://10.0.0.1:6222", "nats://[::1]:6222", "nats-route://h", "x://y:1/z", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseRoute(s)
		if err != nil {
			return
		}
		if u.Hostname() == "" || u.Port() == "" || (u.Scheme != "nats-route" && u.Scheme != "nats") {
			t.Errorf("ParseRoute(%q) accepted %v", s, u)
		}
	})
}
