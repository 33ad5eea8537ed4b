package natsconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/spf13/pflag"
)

func writeSeed(t *testing.T, mode os.FileMode) (string, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	path := filepath.Join(t.TempDir(), "id.nk")
	if err := os.WriteFile(path, append(seed, '\n'), mode); err != nil {
		t.Fatal(err)
	}
	return path, pub
}

func TestConnectWithNKeyUsesItsInbox(t *testing.T) {
	seed, pub := writeSeed(t, 0o600)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if _, err := nats.Connect(srv.ClientURL()); err == nil {
		t.Fatal("anonymous connection accepted")
	}
	nc, err := Options{NKey: seed}.Connect(srv.ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if in := nc.NewRespInbox(); !strings.HasPrefix(in, "_INBOX."+pub+".") {
		t.Errorf("inbox %q: want it under _INBOX.%s", in, pub)
	}
}

func TestOptionsErrors(t *testing.T) {
	open, _ := writeSeed(t, 0o644)
	good, _ := writeSeed(t, 0o600)
	bad := filepath.Join(t.TempDir(), "bad.nk")
	if err := os.WriteFile(bad, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{NKey: good, Creds: good}, "give one or the other"},
		{Options{NKey: "/nonexistent/seed"}, "--nats-nkey: stat /nonexistent/seed"},
		{Options{NKey: open}, "readable by others"},
		{Options{NKey: bad}, "seed file " + bad},
		{Options{Creds: "/nonexistent/creds"}, "--nats-creds: open /nonexistent/creds"},
		{Options{Creds: bad}, "no user seed"},
		{Options{TLSCert: "/c.pem"}, "give both or neither"},
		{Options{TLSCA: "/nonexistent/ca.pem"}, "--nats-tls-ca: stat /nonexistent/ca.pem"},
	} {
		_, err := c.o.NATSOptions()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
	if opts, err := (Options{}).NATSOptions(); err != nil || len(opts) != 0 {
		t.Errorf("no options: %v %v", opts, err)
	}
}

func TestDefaultsFromEnv(t *testing.T) {
	var o Options
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	DefaultsFromEnv(fs, func(k string) string {
		if k == "NOVANET_NATS_NKEY" {
			return "/etc/novanet/netadm.nk"
		}
		return ""
	})
	if err := fs.Parse([]string{"--nats-tls-ca", "/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	if o.NKey != "/etc/novanet/netadm.nk" || o.TLSCA != "/ca.pem" {
		t.Errorf("options %+v", o)
	}
	if u := fs.Lookup("nats-creds").Usage; !strings.Contains(u, "(env NOVANET_NATS_CREDS)") {
		t.Errorf("usage %q names no variable", u)
	}
}
