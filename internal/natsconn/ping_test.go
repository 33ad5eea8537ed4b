package natsconn

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Connect pings the server every PingInterval, so that a node that died
// without a reset is noticed in about a minute, not nats.go's six.
func TestConnectPings(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := Options{}.Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Opts.PingInterval != PingInterval || nc.Opts.MaxPingsOut != MaxPingsOut {
		t.Errorf("ping every %v, give up after %d; want %v and %d", nc.Opts.PingInterval, nc.Opts.MaxPingsOut, PingInterval, MaxPingsOut)
	}
}
